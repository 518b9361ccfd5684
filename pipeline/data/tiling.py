"""Mask -> tile coordinates and coverage, and cutting tiles out of an image. Pure numpy.

Tiles are squares of ``tile_size`` pixels on a grid of ``stride`` anchored at the image's top-left corner; a tile
must lie fully inside the image, so a last partial row or column is not tiled. A tile is kept when the fraction of
its pixels inside the mask is at least ``min_coverage``. An image whose mask yields no tile gets the one tile of
highest coverage anywhere in the image (padded with white when the image is smaller than a tile).
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

from pipeline.errors import ConfigError

PAD_VALUE = 255  # white, the colour of an empty slide


@dataclass(frozen=True)
class TilingSettings:
    """How tiles are laid out and chosen.

    Attributes:
        tile_size: Side of a square tile in original image pixels.
        stride: Grid step in pixels; None means ``tile_size`` (no overlap).
        min_coverage: Smallest fraction of a tile's pixels inside the mask for the tile to be kept, in [0, 1].
        max_tiles: Keep at most this many tiles per image, chosen at random with ``seed``; 0 keeps all.
        seed: Seed of the tile sampler (combined with the image id, so each image's choice is independent of order).
    """

    tile_size: int = 224
    stride: int | None = None
    min_coverage: float = 0.5
    max_tiles: int = 0
    seed: int = 0

    @property
    def step(self) -> int:
        """The grid step actually used."""
        return self.stride if self.stride is not None else self.tile_size

    def validate(self) -> TilingSettings:
        """Raise :class:`ConfigError` on values outside their range; return self."""
        if not isinstance(self.tile_size, int) or self.tile_size <= 0:
            raise ConfigError(f"--tile-size must be a positive number of pixels. Got {self.tile_size} instead.")
        if not isinstance(self.step, int) or self.step <= 0:
            raise ConfigError(f"--stride must be a positive number of pixels. Got {self.stride} instead.")
        if not 0.0 <= float(self.min_coverage) <= 1.0:
            raise ConfigError(f"--min-coverage must be a fraction in [0, 1]. Got {self.min_coverage} instead.")
        if not isinstance(self.max_tiles, int) or self.max_tiles < 0:
            raise ConfigError(f"--max-tiles must be 0 (all tiles) or a positive count. Got {self.max_tiles} instead.")
        return self


@dataclass(frozen=True)
class TilePlan:
    """The tiles chosen for one image.

    Attributes:
        coords: (n, 2) int32, (x, y) of each tile's top-left corner in original image pixels, raster order.
        coverage: (n,) float32, fraction of each tile's pixels inside the mask.
        fallback: "" for grid tiles, "best_coverage" when no grid tile passed the threshold, "empty_mask" when the
            mask has no pixel inside (the centre tile is used).
    """

    coords: np.ndarray
    coverage: np.ndarray
    fallback: str = ""


def _grid_counts(inside: np.ndarray, tile_size: int, step: int) -> np.ndarray:
    """Count mask pixels in the grid tiles only: (rows, cols) int64, rows at y = 0, step, ... <= H - T (same for x).

    Sums one band of T rows per grid row (the image once when step = T), about ten times cheaper than the full
    summed-area table, which only the rare fallback needs.
    """
    height, width = inside.shape
    t = tile_size
    ys, xs = np.arange(0, height - t + 1, step), np.arange(0, width - t + 1, step)
    counts = np.empty((len(ys), len(xs)), dtype=np.int64)
    for row, y in enumerate(ys):
        columns = np.zeros(width + 1, dtype=np.int64)
        np.cumsum(np.count_nonzero(inside[y : y + t], axis=0), out=columns[1:])
        counts[row] = columns[xs + t] - columns[xs]
    return counts


def _inside_counts(inside: np.ndarray, tile_size: int) -> np.ndarray:
    """Count mask pixels in every tile_size window: (H - T + 1, W - T + 1) int64, via a summed-area table."""
    table = np.zeros((inside.shape[0] + 1, inside.shape[1] + 1), dtype=np.int64)
    np.cumsum(np.cumsum(inside, axis=0, dtype=np.int64), axis=1, out=table[1:, 1:])
    t = tile_size
    return table[t:, t:] - table[:-t, t:] - table[t:, :-t] + table[:-t, :-t]


def _pad_to_tile(inside: np.ndarray, tile_size: int) -> np.ndarray:
    height, width = inside.shape
    if height >= tile_size and width >= tile_size:
        return inside
    padded = np.zeros((max(height, tile_size), max(width, tile_size)), dtype=bool)
    padded[:height, :width] = inside
    return padded


def plan_tiles(inside: np.ndarray, settings: TilingSettings, image_id: str = "") -> TilePlan:
    """Choose the tiles of one image from its mask.

    Args:
        inside: (H, W) bool mask, True inside the region that matters.
        settings: Tiling settings.
        image_id: Mixed into the sampler seed so that ``max_tiles`` picks the same tiles in any processing order.

    Returns:
        The kept tiles, at least one.
    """
    t, step = settings.tile_size, settings.step
    padded = _pad_to_tile(inside, t)
    area = float(t * t)
    height, width = inside.shape
    if height >= t and width >= t:
        grid = _grid_counts(inside, t, step)
        ys, xs = np.nonzero(grid / area >= settings.min_coverage)
        coords = np.stack([xs * step, ys * step], axis=1).astype(np.int32)
        coverage = (grid[ys, xs] / area).astype(np.float32)
        if len(coords):
            return _sample(TilePlan(coords, coverage), settings, image_id)
    if not inside.any():
        y, x = max(0, (padded.shape[0] - t) // 2), max(0, (padded.shape[1] - t) // 2)
        return TilePlan(np.array([[x, y]], np.int32), np.zeros(1, np.float32), "empty_mask")
    counts = _inside_counts(padded, t)
    y, x = np.unravel_index(int(np.argmax(counts)), counts.shape)  # first maximum in raster order
    return TilePlan(np.array([[x, y]], np.int32), np.array([counts[y, x] / area], np.float32), "best_coverage")


def _sample(plan: TilePlan, settings: TilingSettings, image_id: str) -> TilePlan:
    if settings.max_tiles == 0 or len(plan.coords) <= settings.max_tiles:
        return plan
    rng = np.random.default_rng([settings.seed, zlib.crc32(image_id.encode())])
    keep = np.sort(rng.choice(len(plan.coords), size=settings.max_tiles, replace=False))
    return TilePlan(plan.coords[keep], plan.coverage[keep], plan.fallback)


def cut_tiles(pixels: np.ndarray, coords: np.ndarray, tile_size: int) -> np.ndarray:
    """Cut square tiles out of an image.

    Args:
        pixels: (H, W, 3) uint8 image.
        coords: (n, 2) int, (x, y) top-left corners.
        tile_size: Tile side T.

    Returns:
        (n, T, T, 3) uint8; parts of a tile beyond the image are white.
    """
    coords = np.asarray(coords, dtype=np.int64).reshape(-1, 2)
    height, width, channels = pixels.shape
    if not len(coords):
        return np.empty((0, tile_size, tile_size, channels), dtype=np.uint8)
    bottom = max(height, int(coords[:, 1].max()) + tile_size)
    right = max(width, int(coords[:, 0].max()) + tile_size)
    if (bottom, right) != (height, width):  # only a fallback tile of a small image reaches past the edge
        padded = np.full((bottom, right, channels), PAD_VALUE, dtype=np.uint8)
        padded[:height, :width] = pixels
        pixels = padded
    # One gather over a view of every T x T window, instead of a Python loop over tiles.
    windows = sliding_window_view(pixels, (tile_size, tile_size), axis=(0, 1))  # (H-T+1, W-T+1, C, T, T)
    return np.ascontiguousarray(windows[coords[:, 1], coords[:, 0]].transpose(0, 2, 3, 1), dtype=np.uint8)


def tile_coverage(inside: np.ndarray, coords: np.ndarray, tile_size: int) -> np.ndarray:
    """Recompute the coverage of given tiles directly from the mask: (n,) float32 (used to check plans)."""
    padded = _pad_to_tile(inside, tile_size)
    return np.array([padded[y : y + tile_size, x : x + tile_size].mean() for x, y in coords], dtype=np.float32).reshape(
        len(coords)
    )
