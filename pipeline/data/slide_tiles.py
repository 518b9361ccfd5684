"""Tiles of a physical size on a slide's detected tissue: level-0 corners from a low-resolution mask.

A tile covers ``size0 = round(input_px * target_mpp / slide_mpp)`` level-0 pixels a side (:func:`level0_tile_size`),
so a 40x slide (0.25 um/px) and a 20x one (0.5 um/px) get tiles of the same size in micrometres. The grid is
:mod:`pipeline.data.tiling`'s rule (anchored on the mask's bounding box, an edge-aligned last row and column, a
minimum coverage, ``max_tiles`` sampling), applied by :func:`tiling.plan_tiles` itself to the mask resampled onto
*cells*: squares of ``size0 / cells`` level-0 pixels, ``cells`` a whole number per tile side and no coarser than
the mask. The cells are fixed in micrometres, so two scans of the same tissue at two MPPs get the same tiles at the
same physical positions. A tile that touches a pen stroke (with its margin, :func:`tissue.tissue_and_pen`) is
dropped, whatever its coverage.
"""

from __future__ import annotations

import math
import zlib
from dataclasses import dataclass

import numpy as np
from scipy.ndimage import find_objects, label

from pipeline.data.slides import Slide
from pipeline.data.tiling import TilingSettings, plan_tiles, tile_coverage
from pipeline.data.tissue import TissueSettings, tissue_and_pen

MIN_CELLS = 8  # cells per tile side at least: coverage is then read to 1/64 of a tile
MASK_MPP = 8.0  # tissue is found on a thumbnail at about this many um/px (a 25-mm slide: ~3,100 px a side)
MAX_MASK_SIDE = 4096  # ... never larger than this a side (bounded memory and time for very large slides)


@dataclass(frozen=True)
class SlideTissue:
    """A slide's thumbnail and what was found on it.

    Attributes:
        thumbnail: (h, w, 3) uint8 RGB.
        tissue: (h, w) bool, True on tissue.
        pen: (h, w) bool, pen strokes with their margin.
        downsample: (x, y) level-0 pixels per thumbnail pixel.
    """

    thumbnail: np.ndarray
    tissue: np.ndarray
    pen: np.ndarray
    downsample: tuple[float, float]


@dataclass(frozen=True)
class SlideTilePlan:
    """The tiles of one slide.

    Attributes:
        coords: (n, 2) int64 level-0 (x, y) top-left corners, raster order.
        size0: Tile side in level-0 pixels.
        coverage: (n,) float32 share of each tile on the tissue mask.
        fallback: "" for grid tiles, "best_coverage" when no grid tile reached ``min_coverage`` (one tile kept),
            "no_tissue" when the mask is empty (no tile: the caller reports the slide).
        note: For a fallback, one sentence for the user; else "".
    """

    coords: np.ndarray
    size0: int
    coverage: np.ndarray
    fallback: str = ""
    note: str = ""


def level0_tile_size(input_px: int, target_mpp: float, slide_mpp: float) -> int:
    """Level-0 pixels per tile side: ``round(input_px * target_mpp / slide_mpp)``, at least 1."""
    if not (input_px > 0 and target_mpp > 0 and slide_mpp > 0 and math.isfinite(target_mpp * slide_mpp)):
        raise ValueError(
            f"Tile sizes need a positive input size and MPPs. Got input_px={input_px}, target_mpp={target_mpp}, "
            f"slide_mpp={slide_mpp} instead."
        )
    return max(1, round(input_px * target_mpp / slide_mpp))


def _cell_grid(mask: np.ndarray, level0_size: tuple[int, int], cell0: float) -> np.ndarray:
    """``mask`` sampled at the centre of each cell of ``cell0`` level-0 pixels: (ny, nx) bool, whole cells only."""
    width0, height0 = level0_size
    height, width = mask.shape
    nx, ny = max(1, int(width0 // cell0)), max(1, int(height0 // cell0))
    cols = np.minimum(((np.arange(nx) + 0.5) * cell0 * width / width0).astype(np.int64), width - 1)
    rows = np.minimum(((np.arange(ny) + 0.5) * cell0 * height / height0).astype(np.int64), height - 1)
    return mask[np.ix_(rows, cols)]


def _component_tiles(grid: np.ndarray, settings: TilingSettings, slide_id: str) -> tuple[np.ndarray, np.ndarray]:
    """Grid tiles of each piece of tissue (8-connected) on its own box: (n, 2) int64 cell corners, (n,) coverage.

    Each piece gets :func:`tiling.plan_tiles`' grid anchored on its own bounding box (as CLAM anchors one on each
    contour), so a piece cut by a pen stroke is tiled up to the stroke on both sides; a piece that holds no tile of
    ``min_coverage`` gets none (no fallback tile per speck). Tiles two pieces share are kept once.
    """
    labels, _ = label(grid, structure=np.ones((3, 3), bool))
    t = settings.tile_size
    coords, coverage = [np.empty((0, 2), np.int64)], [np.empty(0, np.float32)]
    for index, box in enumerate(find_objects(labels), start=1):
        top, left = max(0, box[0].start - t), max(0, box[1].start - t)  # room for the edge-aligned row and column
        piece = labels[top : box[0].stop + t, left : box[1].stop + t] == index
        plan = plan_tiles(piece, settings, slide_id)
        if not plan.fallback:
            coords.append(plan.coords.astype(np.int64) + (left, top))
            coverage.append(plan.coverage)
    coords_all, first = np.unique(np.concatenate(coords), axis=0, return_index=True)
    order = np.lexsort((coords_all[:, 0], coords_all[:, 1]))  # raster order: rows, then columns
    return coords_all[order], np.concatenate(coverage)[first][order]


def plan_slide_tiles(
    tissue: np.ndarray,
    level0_size: tuple[int, int],
    size0: int,
    min_coverage: float = 0.5,
    step0: int | None = None,
    pen: np.ndarray | None = None,
    max_tiles: int = 0,
    seed: int = 0,
    slide_id: str = "",
) -> SlideTilePlan:
    """Place tiles of ``size0`` level-0 pixels on a low-resolution tissue mask; see the module docstring.

    Args:
        tissue: (h, w) bool mask covering the whole slide (any resolution, e.g. a thumbnail's).
        level0_size: The slide's level-0 (width, height).
        size0: Tile side in level-0 pixels (:func:`level0_tile_size`).
        min_coverage: Smallest share of a tile on the mask for it to be kept.
        step0: Grid step in level-0 pixels; None means ``size0`` (no overlap).
        pen: (h, w) bool pen strokes on the same grid as ``tissue``; a tile touching one is dropped.
        max_tiles, seed, slide_id: :class:`tiling.TilingSettings`' sampler (0 keeps every tile).
    """
    if tissue.ndim != 2 or (pen is not None and pen.shape != tissue.shape):
        raise ValueError(f"The tissue and pen masks must be (h, w) alike. Got {tissue.shape} and "
                         f"{None if pen is None else pen.shape} instead.")
    width0, height0 = level0_size
    mask_scale = min(width0 / tissue.shape[1], height0 / tissue.shape[0])  # level-0 pixels per mask pixel
    cells = max(MIN_CELLS, math.ceil(size0 / mask_scale))
    cell0 = size0 / cells
    if not tissue.any():
        note = "no tissue was found on its thumbnail; check it on the contact sheet, or give a mask file"
        return SlideTilePlan(np.empty((0, 2), np.int64), size0, np.empty(0, np.float32), "no_tissue", note)
    step = cells if step0 is None else max(1, round(step0 / cell0))
    settings = TilingSettings(cells, step, min_coverage, 0, seed).validate()
    grid = _cell_grid(tissue, level0_size, cell0)
    coords, coverage = _component_tiles(grid, settings, slide_id)
    fallback, note = "", ""
    if not len(coords):  # no piece holds a grid tile: tiling's fallback on the whole mask (one tile)
        plan = plan_tiles(grid, settings, slide_id)
        coords, coverage, fallback, note = plan.coords.astype(np.int64), plan.coverage, plan.fallback, plan.note
    if pen is not None and pen.any() and len(coords):
        clear = tile_coverage(_cell_grid(pen, level0_size, cell0), coords, cells) == 0
        coords, coverage = coords[clear], coverage[clear]
    if max_tiles and len(coords) > max_tiles:  # after the pen: the sample is drawn from the tiles that stay
        rng = np.random.default_rng([seed, zlib.crc32(slide_id.encode())])  # as tiling's sampler
        keep = np.sort(rng.choice(len(coords), size=max_tiles, replace=False))
        coords, coverage = coords[keep], coverage[keep]
    if not len(coords):
        fallback, note = "no_tissue", "every tile on its tissue touches a pen stroke; check it on the contact sheet"
    return SlideTilePlan(np.rint(coords * cell0).astype(np.int64), size0, coverage, fallback, note)


def find_slide_tissue(
    slide: Slide, mask_mpp: float = MASK_MPP, settings: TissueSettings | None = None
) -> SlideTissue:
    """The slide's thumbnail at about ``mask_mpp`` um/px (at most :data:`MAX_MASK_SIDE` a side) and its tissue.

    Raises:
        SlideMppError: The slide's MPP is unknown (areas and the thumbnail's scale need it).
    """
    width0, height0 = slide.dimensions
    side = min(MAX_MASK_SIDE, max(1, math.ceil(max(width0, height0) * slide.mpp / mask_mpp)))
    thumbnail = slide.thumbnail(side)
    downsample = (width0 / thumbnail.shape[1], height0 / thumbnail.shape[0])
    tissue, pen = tissue_and_pen(thumbnail, slide.mpp * (downsample[0] + downsample[1]) / 2, settings)
    return SlideTissue(thumbnail, tissue, pen, downsample)


def tiles_for_slide(
    slide: Slide, found: SlideTissue, target_mpp: float, input_px: int, min_coverage: float = 0.5, **options
) -> SlideTilePlan:
    """Tiles of ``input_px`` pixels at ``target_mpp`` um/px on the tissue ``found`` on ``slide``.

    ``options`` go to :func:`plan_slide_tiles` (``step0``, ``max_tiles``, ``seed``, ``slide_id``).
    """
    size0 = level0_tile_size(input_px, target_mpp, slide.mpp)
    return plan_slide_tiles(found.tissue, slide.dimensions, size0, min_coverage, pen=found.pen, **options)
