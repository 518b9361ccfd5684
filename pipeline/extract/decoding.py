"""The data side of extraction: decode one image, read its mask, plan and cut its tiles (in DataLoader workers)."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch
from torch.utils.data import Dataset

from pipeline.data.images import read_image, read_mask
from pipeline.data.records import ImageRecord
from pipeline.data.tiling import TilingSettings, cut_tiles, plan_tiles
from pipeline.errors import ImageReadError
from pipeline.hygiene.checks import image_quality

logger = logging.getLogger(__name__)


@dataclass
class ImageTiles:
    """One image's tiles, ready for the model.

    Attributes:
        position: Index of the image in the dataset's record list.
        tiles: (n, T, T, 3) uint8, kept as uint8 until the one normalisation step on the device.
        coords: (n, 2) int32 (x, y).
        coverage: (n,) float32.
        image_attrs: Per-image attributes for the cache file (size, checksums, mask fraction, fallback).
        note: For a fallback tile, what happened and what to change (:attr:`pipeline.data.tiling.TilePlan.note`).
    """

    position: int
    tiles: torch.Tensor
    coords: np.ndarray
    coverage: np.ndarray
    image_attrs: dict
    note: str = ""


@dataclass
class ImageFailure:
    """An image that cannot be used, with the reason (file, problem, fix)."""

    position: int
    reason: str


def keep_as_is(item: object) -> object:
    """DataLoader collate function: one image per item, no collation (module level so workers can pickle it)."""
    return item


class TileDataset(Dataset):
    """Map an index to an :class:`ImageTiles` (or an :class:`ImageFailure`, never an exception)."""

    def __init__(
        self, records: Sequence[ImageRecord], tiling: TilingSettings, max_pixels: int, quality: bool = True
    ) -> None:
        self.records = list(records)
        self.tiling = tiling
        self.max_pixels = max_pixels
        self.quality = quality  # the cheap hygiene checks (stain scores, perceptual hashes)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, position: int) -> ImageTiles | ImageFailure:
        record = self.records[position]
        try:
            return self._load(position, record)
        except ImageReadError as exc:
            return ImageFailure(position, str(exc))
        except (MemoryError, RuntimeError, ValueError, OSError) as exc:
            # One broken image must not end a long run; the reason carries the exception for a bug report.
            logger.debug("unexpected failure on %s", record.image_path, exc_info=True)
            return ImageFailure(position, f"{record.image_path}: unexpected {type(exc).__name__}: {exc}")

    def _load(self, position: int, record: ImageRecord) -> ImageTiles:
        if record.mask_path is None:
            expected = record.image_path.name.replace("img_", "mask_", 1)
            # A test image must stay: removing it would drop it from the submission.
            fix = (
                "Add the mask; until then the image gets no features and the submission gives it the majority class."
                if record.split == "test"
                else "Add the mask, or remove the image from the folder."
            )
            raise ImageReadError(
                f"{record.image_path}: no mask found (expected {expected} or another image extension next to it). {fix}"
            )
        image = read_image(record.image_path, self.max_pixels)
        height, width = image.pixels.shape[:2]
        mask = read_mask(record.mask_path, (width, height), self.max_pixels)
        plan = plan_tiles(mask.inside, self.tiling, record.image_id)
        tiles = cut_tiles(image.pixels, plan.coords, self.tiling.tile_size)
        attrs = {
            "image_width": width,
            "image_height": height,
            "image_sha256": image.file_sha256,
            "pixels_sha256": image.pixels_sha256,
            "mask_sha256": mask.file_sha256,
            "mask_fraction": float(mask.inside.mean()),
            "fallback": plan.fallback,
        }
        if self.quality:
            attrs.update(image_quality(image.pixels, mask.inside))
        return ImageTiles(position, torch.from_numpy(tiles), plan.coords, plan.coverage, attrs, plan.note)
