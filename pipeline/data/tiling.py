"""Mask -> tile coordinates and coverage, cutting tiles out of an image and resizing them. numpy and Pillow.

Tiles are squares of ``tile_size`` pixels on a regular grid of ``stride`` that starts at the top-left corner of the
mask's bounding box (as CLAM anchors its grid on each tissue contour's box); where the regular steps stop short of the
box's far edge, one more row (column) ends exactly there, overlapping the one before it, so the candidate tiles cover
every mask pixel (layout :data:`GRID_LAYOUT`). Tiles lie inside the image; an image less than one tile high (wide) is
padded with white below (right of) it. A tile is kept when the fraction of its pixels inside the mask is at least
``min_coverage``. An image whose mask yields no tile gets the one tile of highest coverage anywhere in the image.

Tiles whose size differs from the encoder's input are resized here, in uint8 with Pillow's filters, because the
encoders' authors resize PIL images (transformers' image processors, torchvision transforms on PIL): a float resize
on the device differs from theirs by up to a few levels of 255.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view
from PIL import Image

from pipeline.defaults import DEFAULT_TILE_SIZE
from pipeline.errors import ConfigError
from pipeline.flags import setting

PAD_VALUE = 255  # white, the colour of an empty slide
# Pillow's filters by the names the preprocessing records (its "interpolation")
PIL_FILTERS = {"nearest": Image.Resampling.NEAREST, "bilinear": Image.Resampling.BILINEAR,
               "bicubic": Image.Resampling.BICUBIC}
# The tile layout, part of a cache's identity: change it whenever the same settings would give other tile positions.
# "cover-v1": the grid anchored on the mask's bounding box with an edge-aligned last row and column. Caches made
# before it (no such attribute) used a grid anchored at (0, 0) that left up to tile - 1 px of each edge untiled.
GRID_LAYOUT = "cover-v1"


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

    tile_size: int = setting(
        DEFAULT_TILE_SIZE, optional=True,
        help="tile side in original image pixels, resized to the encoder's input",
    )
    stride: int | None = setting(None, type=int, help="grid step in pixels (default: the tile size)")
    min_coverage: float = setting(0.5, help="keep a tile when at least this fraction of its pixels is inside the mask")
    max_tiles: int = setting(0, help="keep at most N tiles per image (0: all)")
    seed: int = setting(0, help="seed of the --max-tiles sampler")

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
        note: For a fallback, one sentence for the user saying what happened and what to change; else "".
    """

    coords: np.ndarray
    coverage: np.ndarray
    fallback: str = ""
    note: str = ""


def axis_starts(first: int, end: int, size: int, tile_size: int, step: int) -> np.ndarray:
    """Tile starts along one axis of the mask's bounding box ``[first, end)``: (k,) int64, sorted, unique.

    Every ``step`` from ``first``, then one start at ``end - tile_size`` when the last regular tile ends before
    ``end``; a box shorter than a tile gets one tile centred on it. Starts are clipped to ``[0, size - tile_size]``
    (0 when the image is shorter than a tile: the tile is padded).
    """
    last = max(size - tile_size, 0)
    if end - first <= tile_size:
        starts = np.array([first - (tile_size - (end - first)) // 2])
    else:
        starts = np.arange(first, end - tile_size + 1, step)
        if starts[-1] + tile_size < end:
            starts = np.append(starts, end - tile_size)
    return np.unique(np.clip(starts, 0, last)).astype(np.int64)


def _grid_counts(inside: np.ndarray, tile_size: int, ys: np.ndarray, xs: np.ndarray) -> np.ndarray:
    """Count mask pixels in the grid tiles only: (len(ys), len(xs)) int64, tiles at (x, y) for y in ys, x in xs.

    Sums one band of T rows per grid row (the image once when step = T), about ten times cheaper than the full
    summed-area table, which only the rare fallback needs. ``inside`` must be at least one tile high and wide.
    """
    t = tile_size
    counts = np.empty((len(ys), len(xs)), dtype=np.int64)
    for row, y in enumerate(ys):
        columns = np.zeros(inside.shape[1] + 1, dtype=np.int64)
        # the band's bytes added row by row (3.5x cheaper than count_nonzero along an axis, which casts each value)
        np.cumsum(inside[y : y + t].view(np.uint8).sum(axis=0, dtype=np.int32), out=columns[1:])
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
    inside = np.asarray(inside, dtype=bool)  # counted as bytes below: a 0/255 array must not count 255 per pixel
    padded = _pad_to_tile(inside, t)
    area = float(t * t)
    rows, cols = np.flatnonzero(inside.any(axis=1)), np.flatnonzero(inside.any(axis=0))
    if not len(rows):
        y, x = max(0, (padded.shape[0] - t) // 2), max(0, (padded.shape[1] - t) // 2)
        note = "the mask is empty, so the centre tile was kept to give the image a prediction; check its mask"
        return TilePlan(np.array([[x, y]], np.int32), np.zeros(1, np.float32), "empty_mask", note)
    ys = axis_starts(int(rows[0]), int(rows[-1]) + 1, inside.shape[0], t, step)
    xs = axis_starts(int(cols[0]), int(cols[-1]) + 1, inside.shape[1], t, step)
    grid = _grid_counts(padded, t, ys, xs)
    row, col = np.nonzero(grid / area >= settings.min_coverage)
    if len(row):
        coords = np.stack([xs[col], ys[row]], axis=1).astype(np.int32)
        return _sample(TilePlan(coords, (grid[row, col] / area).astype(np.float32)), settings, image_id)
    counts = _inside_counts(padded, t)
    y, x = np.unravel_index(int(np.argmax(counts)), counts.shape)  # first maximum in raster order
    coverage = counts[y, x] / area
    note = (
        f"no grid tile has {settings.min_coverage:.0%} of its pixels inside the mask (the best has "
        f"{grid.max() / area:.0%}), so the one {t}-px tile holding the most mask was kept instead ({coverage:.0%} "
        "inside); lower --min-coverage or --tile-size to keep more of such images"
    )
    return TilePlan(np.array([[x, y]], np.int32), np.array([coverage], np.float32), "best_coverage", note)


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
    if (bottom, right) != (height, width):  # only tiles of an image shorter or narrower than a tile reach past it
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


def resize_tiles(tiles: np.ndarray, size: int, interpolation: str) -> np.ndarray:
    """Resize tiles as the authors' PIL pipelines do: Pillow's antialiased filter, rounded to uint8.

    Args:
        tiles: (n, T, T, 3) uint8.
        size: Side S of the result.
        interpolation: "bilinear", "bicubic" or "nearest" (:data:`PIL_FILTERS`).

    Returns:
        (n, S, S, 3) uint8; ``tiles`` itself when T == S.
    """
    if tiles.shape[1:3] == (size, size):
        return tiles
    if interpolation not in PIL_FILTERS:
        raise ConfigError(f"interpolation must be one of {', '.join(PIL_FILTERS)}. Got '{interpolation}' instead.")
    out = np.empty((len(tiles), size, size, tiles.shape[3]), dtype=np.uint8)
    for index, tile in enumerate(tiles):
        out[index] = np.asarray(Image.fromarray(tile).resize((size, size), PIL_FILTERS[interpolation]))
    return out
