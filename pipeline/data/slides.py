"""Whole-slide images read region by region: pyramid levels, physical scale, tiles and thumbnails. No torch.

OpenSlide reads the slide, or tiffslide where OpenSlide is not installed (see ``slide_backends``). Coordinates are
level-0 pixels, as in OpenSlide, TRIDENT and CLAM; regions are (h, w, 3) uint8 RGB with anything outside the
slide's scanned area (OpenSlide's transparent pixels, tiffslide's padding) made white, the colour of glass.
Regions are read as asked and thumbnails block by block: nothing holds a whole level 0.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.data.slide_backends import (
    BACKENDS,
    SLIDE_EXTENSIONS,
    TIFF_EXTENSIONS,
    check_complete,
    open_library,
    read_openslide,
    read_tiffslide,
)
from pipeline.data.slide_properties import mpp_from_properties, objective_power
from pipeline.errors import SlideMppError, SlideReadError

logger = logging.getLogger(__name__)

# Pyramids store downsamples like 4.0009 (level sizes are rounded): a level at most this much coarser than the
# target still counts as the target, and the resize it then needs (under 1%) loses nothing visible.
LEVEL_TOLERANCE = 0.01
THUMBNAIL_BLOCK = 4096  # thumbnails are read in blocks of at most this many level pixels a side
RESAMPLING = {
    "nearest": Image.Resampling.NEAREST, "box": Image.Resampling.BOX, "bilinear": Image.Resampling.BILINEAR,
    "bicubic": Image.Resampling.BICUBIC, "lanczos": Image.Resampling.LANCZOS,
}


class Slide:
    """An open whole-slide image.

    Attributes:
        path: The file.
        backend: "openslide" or "tiffslide".
        dimensions: Level-0 (width, height).
        level_dimensions: (width, height) of each level, finest first.
        level_downsamples: Each level's downsample from level 0 (1.0 first).
        properties: The library's metadata as strings.
        mpp_source: Where the MPP came from ("--mpp", "openslide.mpp-x", "Aperio MPP", "TIFF resolution tags"), or
            "" when there is none.
        objective_power: The scanner's objective (e.g. 40.0), or None when the metadata do not say.
    """

    def __init__(self, path: Path | str, mpp: float | None = None, backend: str = "auto") -> None:
        """Open ``path``; ``mpp`` (the user's ``--mpp``) overrides the metadata's.

        Raises:
            SlideReadError: Missing file, unsupported format, corrupt or truncated file.
            SlideLibraryError: Neither OpenSlide nor tiffslide is installed.
        """
        if backend not in BACKENDS:
            raise ValueError(f"The 'backend' parameter of Slide must be one of {BACKENDS}. Got {backend!r} instead.")
        if mpp is not None and not (mpp > 0 and math.isfinite(mpp)):
            raise ValueError(f"--mpp must be a positive number of micrometres per pixel. Got {mpp} instead.")
        self.path = Path(path)
        if not self.path.is_file():
            raise SlideReadError(f"{self.path}: file not found. Restore it or remove it from the data folder.")
        suffix = self.path.suffix.lower()
        if suffix not in SLIDE_EXTENSIONS:
            raise SlideReadError(
                f"{self.path}: {suffix or 'no extension'} is not a whole-slide format (OpenSlide reads "
                f"{', '.join(SLIDE_EXTENSIONS)}). Give PNG/JPEG images as images, or convert the slide to a pyramidal "
                "TIFF (e.g. vips tiffsave IN OUT.tif --tile --pyramid --compression jpeg)."
            )
        self.backend, opener = open_library(backend)
        if suffix in TIFF_EXTENSIONS:
            check_complete(self.path)
        try:  # tiffslide reads the metadata lazily: a corrupt file can fail on the first attribute, not on open
            self._slide = opener(str(self.path))
            self.level_dimensions = tuple((int(w), int(h)) for w, h in self._slide.level_dimensions)
            self.level_downsamples = tuple(float(d) for d in self._slide.level_downsamples)
            self.properties = {str(k): str(v) for k, v in dict(self._slide.properties).items() if v is not None}
        except Exception as exc:  # noqa: BLE001 - each library raises its own types (and IndexError, ...) here
            raise SlideReadError(
                f"{self.path}: {self.backend} cannot open it as a slide ({type(exc).__name__}: {exc}); the file is "
                "corrupt or not a slide format it reads. Re-export or download it again, or convert it to a pyramidal "
                "TIFF."
            ) from exc
        self.dimensions = self.level_dimensions[0]
        self.objective_power = objective_power(self.properties)
        self._mpp_xy, self.mpp_source = self._resolve_mpp(mpp)

    def _resolve_mpp(self, override: float | None) -> tuple[tuple[float, float] | None, str]:
        found = mpp_from_properties(self.properties)
        if override is not None:
            if found and abs(found[0] / override - 1) > LEVEL_TOLERANCE:
                logger.warning("%s: --mpp %g overrides %g um/px from %s.", self.path, override, found[0], found[2])
            return (override, override), "--mpp"
        if found is None:
            return None, ""
        mpp_x, mpp_y, source = found
        if abs(mpp_x / mpp_y - 1) > LEVEL_TOLERANCE:
            logger.warning("%s: pixels are not square (%g x %g um); using their mean.", self.path, mpp_x, mpp_y)
        return (mpp_x, mpp_y), source

    @property
    def level_count(self) -> int:
        """The number of pyramid levels."""
        return len(self.level_dimensions)

    @property
    def mpp(self) -> float:
        """Level-0 micrometres per pixel (the mean of x and y).

        Raises:
            SlideMppError: Neither the metadata nor ``--mpp`` give it.
        """
        if self._mpp_xy is None:
            raise SlideMppError(
                f"{self.path}: has no MPP in its metadata (no openslide.mpp-x, Aperio MPP or TIFF resolution in cm or "
                "inch); pass --mpp UM with the scanner's micrometres per pixel (e.g. --mpp 0.25 for 40x, 0.5 for 20x)."
            )
        return (self._mpp_xy[0] + self._mpp_xy[1]) / 2

    def best_level_for_downsample(self, downsample: float) -> int:
        """The coarsest level whose downsample is at most ``downsample`` (within ``LEVEL_TOLERANCE``).

        Never coarser than asked, so tiles are only ever made smaller.
        """
        fits = [i for i, d in enumerate(self.level_downsamples) if d <= downsample * (1 + LEVEL_TOLERANCE)]
        return max(fits, key=lambda i: self.level_downsamples[i]) if fits else 0

    def best_level_for(self, target_mpp: float) -> int:
        """The level closest to ``target_mpp`` micrometres per pixel but never coarser (see ``LEVEL_TOLERANCE``).

        Raises:
            SlideMppError: The slide's MPP is unknown.
        """
        return self.best_level_for_downsample(target_mpp / self.mpp)

    def read_region(self, x0: int, y0: int, level: int, width: int, height: int) -> np.ndarray:
        """The ``width x height`` pixels of ``level`` whose top-left corner is level-0 pixel (x0, y0).

        Returns:
            (height, width, 3) uint8 RGB; pixels outside the scanned area are white.

        Raises:
            SlideReadError: The library fails on the region (a damaged tile).
        """
        try:
            if self.backend == "openslide":
                return read_openslide(self._slide, x0, y0, level, width, height)
            return read_tiffslide(self._slide, x0, y0, level, width, height)
        except Exception as exc:  # noqa: BLE001 - a damaged tile raises the library's or the codec's own type
            raise SlideReadError(
                f"{self.path}: reading {width}x{height} px of level {level} at ({x0}, {y0}) failed "
                f"({type(exc).__name__}: {exc}); the file is damaged. Download or export it again."
            ) from exc

    def read_tile(self, x0: int, y0: int, size0: int, out_px: int, resample: str = "bilinear") -> np.ndarray:
        """The level-0 square (x0, y0, size0) at ``out_px`` pixels a side: read from the best level, then resized.

        The level is the coarsest one that is not coarser than ``size0 / out_px``; when it holds the square in
        exactly ``out_px`` pixels (a level at the tiles' resolution) there is no resize. Tiles are enlarged only when
        level 0 itself is coarser than asked (``size0 < out_px``).

        Args:
            resample: "bilinear" (default), "bicubic", "lanczos", "box" or "nearest" (Pillow's filters, which
                antialias when they shrink).

        Returns:
            (out_px, out_px, 3) uint8 RGB.
        """
        if resample not in RESAMPLING:
            raise ValueError(f"The 'resample' parameter must be one of {tuple(RESAMPLING)}. Got {resample!r} instead.")
        if size0 < 1 or out_px < 1:
            raise ValueError(f"Tile sizes must be positive pixel counts. Got size0={size0}, out_px={out_px} instead.")
        level = self.best_level_for_downsample(size0 / out_px)
        side = max(1, round(size0 / self.level_downsamples[level]))
        region = self.read_region(x0, y0, level, side, side)
        if side == out_px:
            return region
        return np.asarray(Image.fromarray(region).resize((out_px, out_px), RESAMPLING[resample]))

    def thumbnail(self, max_side: int = 1024) -> np.ndarray:
        """The whole slide at most ``max_side`` pixels a side (never enlarged), aspect kept: (h, w, 3) uint8 RGB.

        Read from the coarsest level that still has at least the thumbnail's size, in blocks of at most
        ``THUMBNAIL_BLOCK`` pixels a side that are box-averaged as they come, so memory stays bounded even for a
        slide without a pyramid.
        """
        width0, height0 = self.dimensions
        scale = min(1.0, max_side / max(width0, height0))
        out_size = (max(1, round(width0 * scale)), max(1, round(height0 * scale)))
        level = self.best_level_for_downsample(1 / scale)
        level_width, level_height = self.level_dimensions[level]
        downsample = self.level_downsamples[level]
        factor = max(1, int(min(level_width / out_size[0], level_height / out_size[1])))
        step = factor * max(1, THUMBNAIL_BLOCK // factor)
        reduced = np.empty((-(-level_height // factor), -(-level_width // factor), 3), np.uint8)
        for top in range(0, level_height, step):
            for left in range(0, level_width, step):
                block = self.read_region(
                    # ceil: the level-0 corner that maps back to this level pixel (not the one before) when the
                    # downsample is not a whole number
                    math.ceil(left * downsample), math.ceil(top * downsample), level,
                    min(step, level_width - left), min(step, level_height - top),
                )
                small = np.asarray(Image.fromarray(block).reduce(factor)) if factor > 1 else block
                row, col = top // factor, left // factor
                reduced[row : row + small.shape[0], col : col + small.shape[1]] = small
        if reduced.shape[1::-1] == out_size:
            return reduced
        return np.asarray(Image.fromarray(reduced).resize(out_size, Image.Resampling.BOX))

    def close(self) -> None:
        """Release the file."""
        self._slide.close()

    def __enter__(self) -> Slide:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Slide({os.fspath(self.path)!r}, {self.dimensions[0]}x{self.dimensions[1]}, backend={self.backend!r})"
