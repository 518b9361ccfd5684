"""Made whole-slide images for tests and benchmarks: pyramidal tiled-JPEG TIFFs with known tissue and pen strokes.

``write_slide(path, layout, kind)`` writes 256 x 256 JPEG tiles at downsamples 1, 4 and 16 with ``tifffile``, tile
by tile from a generator, so a 40,960 x 40,960 slide never exists whole in memory. Two kinds:

- ``"aperio"``: levels as separate top-level pages, a stripped thumbnail as the second page, and an ImageDescription
  that starts with "Aperio Image Library" and holds ``|AppMag = 40|MPP = 0.25`` (OpenSlide reports vendor "aperio";
  tiffslide reads it as SVS). No resolution tags, as in real SVS files.
- ``"generic"``: the same pages without a description, with X/YResolution tags in centimetres (ResolutionUnit 3),
  or inches, or none (then the slide has no MPP at all).

A :class:`SlideLayout` says what is where, in level-0 pixels: tissue rectangles (filled with H&E patches repeated,
e.g. glas15 crops) on a glass-coloured background, and pen strokes (bands multiplied by an ink colour, as ink
absorbs light). All rectangles and patch sides are multiples of 16, so every level's pixels are exact box means of
level 0's (before JPEG) and the known tissue mask holds at every level.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import tifffile
from PIL import Image

TILE = 256
DOWNSAMPLES = (1, 4, 16)
GRAIN = 16  # every rectangle and patch side is a multiple of this: the largest downsample
GLASS = (242, 240, 238)  # empty glass under a slightly warm scanner white balance
APERIO_HEADER = "Aperio Image Library v12.0.15"
PEN_INKS = {"green": (60, 160, 80), "blue": (50, 70, 170), "black": (40, 40, 45)}
_UNITS = {"cm": ("CENTIMETER", 1e4), "inch": ("INCH", 25_400.0)}


@dataclass(frozen=True)
class SlideLayout:
    """What a made slide shows, in level-0 pixels.

    Attributes:
        width, height: Level-0 size (multiples of 16).
        tissue: (x, y, w, h) rectangles holding tissue (multiples of 16).
        patches: (h, w, 3) uint8 H&E images (sides multiples of 16); rectangle i repeats ``patches[i % n]``.
        pens: (x, y, w, h, ink) pen strokes over anything (multiples of 16); ink is an (r, g, b) multiplier.
        glass: RGB of the background.
    """

    width: int
    height: int
    tissue: tuple[tuple[int, int, int, int], ...]
    patches: tuple[np.ndarray, ...]
    pens: tuple[tuple[int, int, int, int, tuple[int, int, int]], ...] = ()
    glass: tuple[int, int, int] = GLASS
    _reduced: dict = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        sides = [self.width, self.height, *(v for r in self.tissue for v in r), *(v for p in self.pens for v in p[:4])]
        sides += [s for patch in self.patches for s in patch.shape[:2]]
        if any(int(s) % GRAIN for s in sides):
            raise ValueError(f"sizes, rectangles and patch sides of a SlideLayout must be multiples of {GRAIN}")

    def _patch(self, index: int, downsample: int) -> np.ndarray:
        """Patch ``index`` box-averaged by ``downsample`` (cached): (h / d, w / d, 3) uint8."""
        key = (index, downsample)
        if key not in self._reduced:
            patch = self.patches[index].astype(np.float64)
            h, w = patch.shape[:2]
            boxes = patch.reshape(h // downsample, downsample, w // downsample, downsample, 3).mean(axis=(1, 3))
            self._reduced[key] = np.round(boxes).astype(np.uint8)
        return self._reduced[key]

    def render(self, x: int, y: int, width: int, height: int, downsample: int = 1) -> np.ndarray:
        """The region at ``(x, y)`` of size ``width x height`` in level pixels at ``downsample``: (h, w, 3) uint8.

        Pixels past the slide's edge are glass.
        """
        out = np.empty((height, width, 3), np.uint8)
        out[:] = self.glass
        for i, (bx, by, bw, bh) in enumerate(self.tissue):
            x0, y0, x1, y1 = _overlap((x, y, width, height), (bx, by, bw, bh), downsample)
            if x0 >= x1 or y0 >= y1:
                continue
            patch = self._patch(i % len(self.patches), downsample)
            rows = (np.arange(y0, y1) - by // downsample) % patch.shape[0]
            cols = (np.arange(x0, x1) - bx // downsample) % patch.shape[1]
            out[y0 - y : y1 - y, x0 - x : x1 - x] = patch[rows[:, None], cols[None, :]]
        for px, py, pw, ph, ink in self.pens:
            x0, y0, x1, y1 = _overlap((x, y, width, height), (px, py, pw, ph), downsample)
            if x0 < x1 and y0 < y1:
                band = out[y0 - y : y1 - y, x0 - x : x1 - x].astype(np.uint16)
                out[y0 - y : y1 - y, x0 - x : x1 - x] = (band * np.array(ink, np.uint16) // 255).astype(np.uint8)
        return out

    def tissue_mask(self, downsample: int = 16) -> np.ndarray:
        """(H / d, W / d) bool: True on tissue, pen strokes included (pen over glass is not tissue)."""
        mask = np.zeros((self.height // downsample, self.width // downsample), bool)
        for bx, by, bw, bh in self.tissue:
            mask[by // downsample : (by + bh) // downsample, bx // downsample : (bx + bw) // downsample] = True
        return mask

    def pen_mask(self, downsample: int = 16) -> np.ndarray:
        """(H / d, W / d) bool: True under a pen stroke."""
        mask = np.zeros((self.height // downsample, self.width // downsample), bool)
        for px, py, pw, ph, _ in self.pens:
            mask[py // downsample : (py + ph) // downsample, px // downsample : (px + pw) // downsample] = True
        return mask


def _overlap(region: tuple[int, int, int, int], rect: tuple[int, int, int, int], downsample: int) -> tuple[int, ...]:
    """The overlap of a level-pixel region and a level-0 rectangle, in level pixels: (x0, y0, x1, y1)."""
    x, y, width, height = region
    rx, ry, rw, rh = (v // downsample for v in rect)
    return max(x, rx), max(y, ry), min(x + width, rx + rw), min(y + height, ry + rh)


def he_patches(folder: Path | str, count: int = 4, side: int = 384) -> tuple[np.ndarray, ...]:
    """Centre crops (side x side, uint8 RGB) of the first ``count`` images of an H&E data folder's train_data."""
    paths = sorted((Path(folder) / "train_data").glob("img_*"))[:count]
    if not paths:
        raise FileNotFoundError(f"no img_* files in {Path(folder) / 'train_data'}")
    crops = []
    for path in paths:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        top, left = (pixels.shape[0] - side) // 2, (pixels.shape[1] - side) // 2
        crops.append(np.ascontiguousarray(pixels[top : top + side, left : left + side]))
    return tuple(crops)


def synthetic_patches(seed: int = 0, count: int = 2, side: int = 128) -> tuple[np.ndarray, ...]:
    """Pink-purple noise patches standing in for H&E where the shared data is absent."""
    rng = np.random.default_rng(seed)
    base = np.array([190, 110, 170], np.int16)
    return tuple(
        np.clip(base + rng.integers(-60, 60, size=(side, side, 3)), 0, 255).astype(np.uint8) for _ in range(count)
    )


def default_layout(width: int, height: int, patches: Sequence[np.ndarray], pens: Sequence[str] = ()) -> SlideLayout:
    """Two tissue pieces (a large one upper left, a smaller one lower right) and pen strokes across the first.

    Pieces cover about 30% of the slide; ``pens`` names inks of ``PEN_INKS`` drawn as horizontal bands, 1/64 of the
    height thick, over the first piece.
    """

    def snap(value: float) -> int:
        return int(value) // GRAIN * GRAIN

    tissue = (
        (snap(width * 0.10), snap(height * 0.10), snap(width * 0.45), snap(height * 0.40)),
        (snap(width * 0.60), snap(height * 0.60), snap(width * 0.30), snap(height * 0.30)),
    )
    x, y, w, h = tissue[0]
    thickness = max(GRAIN, snap(height / 64))
    strokes = tuple(
        (x, snap(y + h * (i + 1) / (len(pens) + 1)), w, thickness, PEN_INKS[ink]) for i, ink in enumerate(pens)
    )
    return SlideLayout(width, height, tissue, tuple(patches), strokes)


def doubled(layout: SlideLayout) -> SlideLayout:
    """The same tissue scanned at twice the resolution (a 40x scan of a 20x layout): every side and patch doubled."""
    return SlideLayout(
        layout.width * 2, layout.height * 2, tuple(tuple(v * 2 for v in r) for r in layout.tissue),
        tuple(np.repeat(np.repeat(p, 2, axis=0), 2, axis=1) for p in layout.patches),
        tuple((*(v * 2 for v in p[:4]), p[4]) for p in layout.pens),
    )


def _tiles(layout: SlideLayout, downsample: int) -> Iterator[np.ndarray]:
    """(256, 256, 3) tiles of one level in raster order, the edge ones completed with glass."""
    width, height = layout.width // downsample, layout.height // downsample
    for y in range(0, height, TILE):
        for x in range(0, width, TILE):
            yield layout.render(x, y, TILE, TILE, downsample)


def write_slide(
    path: Path | str,
    layout: SlideLayout,
    kind: str = "aperio",
    mpp: float = 0.25,
    app_mag: int = 40,
    unit: str = "cm",
    quality: int = 90,
    downsamples: Sequence[int] = DOWNSAMPLES,
) -> Path:
    """Write ``layout`` as a pyramidal tiled-JPEG TIFF; return the path.

    Args:
        path: Output file (``.svs`` for an Aperio one is the convention; any name works).
        layout: What the slide shows.
        kind: "aperio" (MPP and AppMag in the description) or "generic" (resolution tags in ``unit``).
        mpp: Micrometres per level-0 pixel.
        app_mag: Objective power written as Aperio's AppMag.
        unit: "cm", "inch" or "none" (generic only; "none" writes no usable resolution: a slide without MPP).
        quality: JPEG quality of the tiles.
        downsamples: Pyramid levels; each must divide the layout's sides.
    """
    if kind not in ("aperio", "generic"):
        raise ValueError(f"The 'kind' parameter of write_slide must be 'aperio' or 'generic'. Got {kind!r} instead.")
    if unit not in ("cm", "inch", "none"):
        raise ValueError(f"The 'unit' parameter of write_slide must be 'cm', 'inch' or 'none'. Got {unit!r} instead.")
    path = Path(path)
    options = dict(tile=(TILE, TILE), compression="jpeg", compressionargs={"level": quality}, photometric="rgb",
                   dtype=np.uint8, metadata=None)
    with tifffile.TiffWriter(path, bigtiff=layout.width * layout.height > 2**31) as writer:
        for index, downsample in enumerate(downsamples):
            shape = (layout.height // downsample, layout.width // downsample, 3)
            extra: dict = {"subfiletype": 0 if index == 0 or kind == "aperio" else 1}
            if kind == "aperio":
                extra["description"] = (
                    f"{APERIO_HEADER}\r\n{shape[1]}x{shape[0]} [0,0 {shape[1]}x{shape[0]}] ({TILE}x{TILE}) "
                    f"JPEG/RGB Q={quality}" + (f"|AppMag = {app_mag}|MPP = {mpp:g}" if index == 0 else "")
                )
            elif unit != "none":
                name, per_unit = _UNITS[unit]
                pixels_per_unit = per_unit / (mpp * downsample)
                extra.update(resolution=(pixels_per_unit, pixels_per_unit), resolutionunit=name)
            writer.write(_tiles(layout, downsample), shape=shape, **options, **extra)
            if kind == "aperio" and index == 0:
                _write_aperio_thumbnail(writer, layout, max(downsamples), quality)
    return path


def _write_aperio_thumbnail(writer: tifffile.TiffWriter, layout: SlideLayout, downsample: int, quality: int) -> None:
    """Aperio's second page: a stripped (untiled) thumbnail of at most 1024 px a side, which OpenSlide and tiffslide
    expect there and do not count as a level."""
    coarse = layout.render(0, 0, layout.width // downsample, layout.height // downsample, downsample)
    thumb = Image.fromarray(coarse)
    thumb.thumbnail((1024, 1024), Image.Resampling.BOX)
    writer.write(np.asarray(thumb), compression="jpeg", compressionargs={"level": quality}, photometric="rgb",
                 rowsperstrip=16, metadata=None, description=f"{APERIO_HEADER}\r\n{thumb.width}x{thumb.height}")
