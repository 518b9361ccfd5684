"""Extraction's inputs without a mask file: a slide's tiles read region by region, an image's tissue found on it.

:func:`read_slide_input` opens nothing itself: the caller's :class:`~pipeline.data.slides.Slide` is read tile by tile
(never whole), at the level closest to the target resolution, and resized with the encoder's Pillow filter.
:func:`coords_attributes` gives the attributes TRIDENT writes on its ``coords`` dataset, for slides and images alike.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.data import colour, slide_tiles
from pipeline.data.slide_tiles import SlideTilePlan, SlideTissue, find_slide_tissue, level0_tile_size, plan_slide_tiles
from pipeline.data.slides import Slide
from pipeline.data.tiling import TilingSettings
from pipeline.data.tissue import TissueSettings, detect_tissue
from pipeline.errors import ImageReadError

IMAGE_MASK_SIDE = 1024  # an image without a mask is searched for tissue on a copy at most this many pixels a side
# Raise it when tissue.py, colour.py's rules or slide_tiles.py's grid change what they find without a change of the
# settings and constants that :func:`tissue_detector` hashes.
TISSUE_DETECTOR_VERSION = 1


def tissue_detector(settings: TissueSettings | None = None) -> str:
    """The identity of the tissue detector and slide grid, e.g. ``"1-3f9a0c2b71de"``: a file's ``tissue_detector``.

    :data:`TISSUE_DETECTOR_VERSION` and a hash of everything that decides where tissue is and where a slide's
    tiles go: :class:`~pipeline.data.tissue.TissueSettings`, the colour module's thresholds (pen inks, glass), the
    thumbnail's scale and size, the slide grid's cells and :data:`IMAGE_MASK_SIDE`. A file whose tiles were placed
    on detected tissue is re-embedded when it changes (:func:`pipeline.cache.folder.stale_reason`); files of images
    with mask files never carry it.
    """
    constants = {name: value for name, value in vars(colour).items()
                 if name.isupper() and isinstance(value, (int, float, str, tuple))}
    values = {
        "settings": asdict(settings or TissueSettings()),
        "colour": constants,
        "slide_tiles": [slide_tiles.MASK_MPP, slide_tiles.MAX_MASK_SIDE, slide_tiles.MIN_CELLS],
        "image_mask_side": IMAGE_MASK_SIDE,
    }
    digest = hashlib.sha256(json.dumps(values, sort_keys=True).encode()).hexdigest()[:12]
    return f"{TISSUE_DETECTOR_VERSION}-{digest}"


@dataclass
class SlideInput:
    """One slide's tiles and how they were found.

    Attributes:
        tiles: (n, S, S, 3) uint8, S = the encoder's side (empty (0, S, S, 3) from :func:`plan_slide_input`).
        found: The thumbnail, its tissue and pen (:func:`~pipeline.data.slide_tiles.find_slide_tissue`).
        plan: Level-0 corners, their side ``size0`` and coverage.
        mpp: Micrometres per level-0 pixel used (metadata or ``--mpp``).
        target_mpp: Micrometres per tile pixel (None: tiles of ``--tile-size`` level-0 pixels).
    """

    tiles: np.ndarray
    found: SlideTissue
    plan: SlideTilePlan
    mpp: float
    target_mpp: float | None


def read_slide_mask(path: Path, level0: tuple[int, int], max_pixels: int) -> np.ndarray:
    """(h, w) bool of a mask file beside a slide (white or any value > 0: tissue), at any downsample of level 0.

    Raises:
        ImageReadError: Unreadable, more than ``max_pixels`` pixels, or not the slide's shape (aspect off by more
            than one mask pixel).
    """
    try:
        with Image.open(path) as image:
            width, height = image.size
            if width * height > max_pixels:
                raise ImageReadError(f"{path}: a mask of {width}x{height} px is over --max-pixels ({max_pixels}); "
                                     "save it at a downsample of the slide (e.g. 1/16 or 1/32 of level 0).")
            values = np.asarray(image.convert("L"))
    except (OSError, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot be read as a mask ({exc}). Save it as a 0/255 grayscale PNG.") from exc
    if abs(width * level0[1] / level0[0] - height) > 1:
        raise ImageReadError(f"{path}: a mask of {width}x{height} px is not the shape of its slide ({level0[0]}x"
                             f"{level0[1]} at level 0); save it at one downsample of the whole slide.")
    return values > 0


def plan_slide_input(
    slide: Slide, tissue: str, target_mpp: float | None, out_px: int, tiling: TilingSettings, slide_id: str,
    mask: np.ndarray | None = None,
) -> SlideInput:
    """Find the tissue of ``slide`` (``tissue="all"``: its whole area) and plan its tiles; read no tile.

    Args:
        slide: An open slide.
        tissue: "auto" (found on the thumbnail, pen left out) or "all".
        target_mpp: Micrometres per pixel of the tiles the encoder gets; None: ``tiling.tile_size`` level-0 pixels.
        out_px: Side of each tile given to the encoder.
        tiling: ``min_coverage``, ``step`` (in tile pixels), ``max_tiles``, ``seed``.
        slide_id: ``<split>/<stem>``, seeds the sampler.
        mask: (h, w) bool, the slide's mask file (:func:`read_slide_mask`): tiles are placed on it (pen not
            looked for) instead of the tissue found; ``found.tissue`` is then the mask on the thumbnail's grid.

    Raises:
        SlideMppError: No MPP in the metadata and none given.
        ImageReadError: No tissue found (an empty mask), or every tile touches a pen stroke.
    """
    found = find_slide_tissue(slide)
    if tissue == "all":
        found = SlideTissue(found.thumbnail, np.ones_like(found.tissue), np.zeros_like(found.pen), found.downsample)
    elif mask is not None:
        if not mask.any():
            raise ImageReadError(f"{slide.path}: its mask file marks no tissue; fix the mask, remove it (tissue is "
                                 "then found automatically) or pass --tissue all.")
        height, width = found.tissue.shape
        rows, cols = np.arange(height) * mask.shape[0] // height, np.arange(width) * mask.shape[1] // width
        found = SlideTissue(found.thumbnail, mask[np.ix_(rows, cols)], np.zeros_like(found.pen), found.downsample)
    if target_mpp is None:
        size0 = tiling.tile_size
    else:
        size0 = level0_tile_size(out_px, target_mpp, slide.mpp)
    step0 = None if tiling.step == tiling.tile_size else max(1, round(size0 * tiling.step / tiling.tile_size))
    plan = plan_slide_tiles(found.tissue if mask is None or tissue == "all" else mask, slide.dimensions, size0,
                            tiling.min_coverage, step0,
                            pen=found.pen if found.pen.any() else None, max_tiles=tiling.max_tiles, seed=tiling.seed,
                            slide_id=slide_id)
    if plan.fallback == "no_tissue":
        raise ImageReadError(f"{slide.path}: {plan.note}; or pass --tissue all to tile the whole slide.")
    return SlideInput(np.empty((0, out_px, out_px, 3), np.uint8), found, plan, slide.mpp, target_mpp)


def read_slide_tiles(slide: Slide, coords: np.ndarray, size0: int, out: np.ndarray, resample: str) -> np.ndarray:
    """Read the tiles of level-0 corners ``coords`` (k, 2) into ``out`` (k, S, S, 3) uint8, resized to S; ``out``.

    Raises:
        SlideReadError: A region fails to decode.
    """
    out_px = out.shape[1]
    for row, (x0, y0) in enumerate(coords):
        out[row] = slide.read_tile(int(x0), int(y0), size0, out_px, resample)
    return out


def read_slide_input(
    slide: Slide, tissue: str, target_mpp: float | None, out_px: int, resample: str, tiling: TilingSettings,
    slide_id: str, allocate: Callable[[int], np.ndarray] | None = None,
) -> SlideInput:
    """Find the tissue of ``slide``, plan its tiles and read them all (:func:`plan_slide_input` + tiles).

    Extraction reads a slide in chunks instead (:func:`read_slide_tiles`), so that memory is bounded by the chunk,
    not by the slide; this reads every tile at once, for tests and small slides.

    Args:
        slide, tissue, target_mpp, out_px, tiling, slide_id: As :func:`plan_slide_input`.
        resample: Pillow filter of the resize ("bilinear", "bicubic", ...).
        allocate: Gives the (n, out_px, out_px, 3) uint8 array to read n tiles into; a new array when None.

    Raises:
        SlideMppError, SlideReadError, ImageReadError: As :func:`plan_slide_input` and :func:`read_slide_tiles`.
    """
    read = plan_slide_input(slide, tissue, target_mpp, out_px, tiling, slide_id)
    n = len(read.plan.coords)
    tiles = allocate(n) if allocate is not None else np.empty((n, out_px, out_px, 3), np.uint8)
    read.tiles = read_slide_tiles(slide, read.plan.coords, read.plan.size0, tiles, resample)
    return read


def image_tissue(pixels: np.ndarray, mpp: float | None = None) -> np.ndarray:
    """(H, W) bool tissue of an image without a mask file, found on a copy at most :data:`IMAGE_MASK_SIDE` a side.

    Args:
        pixels: (H, W, 3) uint8 RGB.
        mpp: The image's micrometres per pixel (``--mpp``), for areas in um^2; None: shares of the picture.

    Raises:
        ImageReadError: not raised here; an empty mask is returned and the caller reports it.
    """
    height, width = pixels.shape[:2]
    factor = max(1, math.ceil(max(height, width) / IMAGE_MASK_SIDE))
    if factor == 1:
        return detect_tissue(pixels, mpp)
    small_size = (math.ceil(width / factor), math.ceil(height / factor))
    small = np.asarray(Image.fromarray(pixels).resize(small_size, Image.Resampling.BOX))
    mask = detect_tissue(small, None if mpp is None else mpp * factor)
    rows = np.arange(height) * small_size[1] // height
    cols = np.arange(width) * small_size[0] // width
    return mask[rows[:, None], cols[None, :]]


def coords_attributes(
    patch_size: int, size0: int, level0: tuple[int, int], mpp: float | None, target_mpp: float | None,
    objective_power: float | None = None, step0: int | None = None,
) -> dict:
    """TRIDENT's attributes of the ``coords`` dataset, plus the MPPs used (absent when unknown).

    Args:
        patch_size: Tile side given to the encoder (pixels at the target scale).
        size0: Tile side in level-0 pixels.
        level0: Level-0 (width, height).
        mpp: Micrometres per level-0 pixel, or None.
        target_mpp: Micrometres per tile pixel, or None.
        objective_power: The slide's objective (e.g. 40), else derived from ``mpp`` (10 / mpp).
        step0: Grid step in level-0 pixels (None: ``size0``, no overlap).
    """
    attrs = {
        "patch_size": int(patch_size),
        "patch_size_level0": int(size0),
        "level0_width": int(level0[0]),
        "level0_height": int(level0[1]),
        "overlap": int(size0 - step0) if step0 is not None and step0 < size0 else 0,
    }
    if objective_power is None and mpp is not None:
        objective_power = round(10 / mpp)
    if objective_power is not None:
        attrs["level0_magnification"] = int(round(objective_power))
    if mpp is not None:
        attrs["mpp_level0"] = float(mpp)
    if target_mpp is not None:
        attrs["target_mpp"] = float(target_mpp)
        attrs["target_magnification"] = int(round(10 / target_mpp))
    elif objective_power is not None:
        attrs["target_magnification"] = int(round(objective_power * patch_size / size0))
    return attrs
