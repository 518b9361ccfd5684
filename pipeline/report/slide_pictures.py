"""What a slide's vote map is drawn on: its thumbnail, the tissue found at extraction and the tiles' level-0 size.

A slide is never decoded whole: the vote map shows its thumbnail (:meth:`pipeline.data.slides.Slide.thumbnail`, at
most :data:`pipeline.report.vote_maps.MAX_DISPLAY_SIDE` a side, from the coarsest level that has that size), and
its tiles, whose corners the cache keeps in level-0 pixels, are scaled by the thumbnail's downsample. The tile side
comes from the ``coords`` dataset's ``patch_size_level0`` (it differs from slide to slide with their MPP), the
painted square's from the grid step (``patch_size_level0 - overlap``). The outline is the tissue mask extraction
saved (``<cache>/tissue/<split>/<stem>.png``), brought to the thumbnail's size.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline import cache
from pipeline.cache import store
from pipeline.data.records import ImageRecord
from pipeline.data.slides import Slide
from pipeline.errors import ImageReadError

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class SlidePicture:
    """A slide as its vote map shows it.

    Attributes:
        pixels: (h, w, 3) uint8 thumbnail.
        inside: (h, w) bool tissue found at extraction, or None when its mask file is gone.
        downsample: Level-0 pixels per thumbnail pixel (the mean of x and y).
        tile_size: Tile side in level-0 pixels (``patch_size_level0``).
        cell_size: Side of the painted square in level-0 pixels: the grid step, at most ``tile_size``.
    """

    pixels: np.ndarray
    inside: np.ndarray | None
    downsample: float
    tile_size: int
    cell_size: int


def slide_picture(record: ImageRecord, cache_dir: Path, attrs: dict, max_side: int) -> SlidePicture:
    """Read a slide's thumbnail and what its vote map needs from the cache.

    Args:
        record: The slide. cache_dir: The cache that holds its feature file and tissue mask.
        attrs: Its feature file's attributes (``image_width`` and ``image_height``: level 0 at extraction).
        max_side: The thumbnail's longest side at most.

    Raises:
        ImageReadError: The slide cannot be read, or its level 0 no longer has the size it had at extraction.
    """
    coords_attrs = store.read_image_features(cache.feature_path(cache_dir, record.image_id)).coords_attrs
    with Slide(record.image_path) as slide:
        size = slide.dimensions
        if (attrs.get("image_width"), attrs.get("image_height")) not in ((None, None), size):
            raise ImageReadError(f"{record.image_path}: its level 0 is {size[0]} x {size[1]} px, not the "
                                 f"{attrs['image_width']} x {attrs['image_height']} px it had at extraction, so its "
                                 "tiles would not match. Run extract.py again.")
        pixels = slide.thumbnail(max_side)
    height, width = pixels.shape[:2]
    downsample = (size[0] / width + size[1] / height) / 2
    tile_size = int(coords_attrs.get("patch_size_level0") or attrs["tile_size"])
    cell_size = tile_size - int(coords_attrs.get("overlap") or 0)
    return SlidePicture(pixels, _tissue(cache_dir, record.image_id, (width, height)), downsample, tile_size, cell_size)


def _tissue(cache_dir: Path, image_id: str, size: tuple[int, int]) -> np.ndarray | None:
    """The tissue mask saved at extraction, resized (nearest) to ``size`` (w, h); None when it is gone."""
    path = Path(cache_dir) / cache.TISSUE_DIR / f"{image_id}.png"
    try:
        with Image.open(path) as mask:
            return np.asarray(mask.convert("L").resize(size, Image.Resampling.NEAREST)) > 0
    except OSError as exc:  # a missing or unreadable mask costs the outline only
        logger.warning("Vote map of %s drawn without its tissue outline: %s", image_id, exc)
        return None
