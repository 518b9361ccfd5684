"""Tiles of a physical size on detected tissue: tiling's rule on cells, a 40x and a 20x scan of the same made slide,
no tile on a pen stroke, tiles on tissue and tissue covered."""

import numpy as np
import pytest

from benchmarks import slide_maker
from pipeline.data.slide_tiles import (
    find_slide_tissue,
    level0_tile_size,
    plan_slide_tiles,
    tiles_for_slide,
)
from pipeline.data.slides import Slide
from pipeline.data.tiling import TilingSettings, plan_tiles


@pytest.fixture(scope="module")
def scans(tmp_path_factory, patches):
    """One made slide (green, blue and black strokes) at 20x (0.5 um/px, 4096 px) and 40x (0.25 um/px, 8192 px)."""
    folder = tmp_path_factory.mktemp("slide_tiles")
    at20 = slide_maker.default_layout(4096, 4096, patches, pens=("green", "blue", "black"))
    at40 = slide_maker.doubled(at20)
    return {
        20: (slide_maker.write_slide(folder / "x20.svs", at20, "aperio", mpp=0.5, app_mag=20), at20),
        40: (slide_maker.write_slide(folder / "x40.svs", at40, "aperio", mpp=0.25, app_mag=40), at40),
    }


def _plan(path, target_mpp=0.5, input_px=224):
    with Slide(path) as slide:
        found = find_slide_tissue(slide)
        return tiles_for_slide(slide, found, target_mpp, input_px, slide_id=path.name), found, slide.mpp


def _truth_scores(plan, layout, downsample):
    """(share of tiles with >= half their area on true tissue, share of true tissue covered, tiles touching pen)."""
    truth, pen = layout.tissue_mask(downsample), layout.pen_mask(downsample)
    covered = np.zeros_like(truth)
    on_tissue, on_pen = [], 0
    for x, y in plan.coords:
        box = slice(y // downsample, -(-(y + plan.size0) // downsample)), slice(
            x // downsample, -(-(x + plan.size0) // downsample)
        )
        on_tissue.append(truth[box].mean() >= 0.5)
        on_pen += bool(pen[box].any())
        covered[box] = True
    return np.mean(on_tissue), (covered & truth & ~pen).sum() / (truth & ~pen).sum(), on_pen


def test_level0_tile_size_is_physical():
    assert level0_tile_size(224, 0.5, 0.25) == 448 and level0_tile_size(224, 0.5, 0.5) == 224
    assert level0_tile_size(224, 0.5, 0.2527) == 443  # round(224 * 0.5 / 0.2527)
    with pytest.raises(ValueError, match="Tile sizes need a positive input size and MPPs. Got input_px=224, "):
        level0_tile_size(224, 0.5, 0.0)


@pytest.mark.parametrize("scan", [20, 40])
def test_tiles_lie_on_tissue_cover_it_and_never_touch_pen(scans, scan):
    path, layout = scans[scan]
    plan, _, _ = _plan(path)
    assert plan.size0 == {20: 224, 40: 448}[scan] and not plan.fallback
    on_tissue, covered, on_pen = _truth_scores(plan, layout, {20: 16, 40: 32}[scan])
    assert on_tissue >= 0.95 and covered >= 0.85, (on_tissue, covered)
    assert on_pen == 0
    width0, height0 = layout.width, layout.height
    assert plan.coords.min() >= 0 and (plan.coords + plan.size0).max(axis=0).tolist() <= [width0, height0]


def test_a_40x_scan_gets_tiles_of_the_physical_size_and_place_of_a_20x_one(scans):
    (plan20, found20, mpp20), (plan40, _, mpp40) = _plan(scans[20][0]), _plan(scans[40][0])
    assert plan20.size0 * mpp20 == plan40.size0 * mpp40 == 112.0  # micrometres
    # Same mask, two scales: exactly the same tiles in micrometres.
    on40 = plan_slide_tiles(found20.tissue, (8192, 8192), plan40.size0, pen=found20.pen)
    assert np.array_equal(on40.coords * mpp40, plan20.coords * mpp20)
    # Each scan's own thumbnail (other JPEG pixels, so a few mask pixels differ at pen edges): nearly the same tiles.
    assert abs(len(plan40.coords) - len(plan20.coords)) <= 0.1 * len(plan20.coords)
    microns20, microns40 = plan20.coords * mpp20, plan40.coords * mpp40
    nearest = np.abs(microns20[:, None, :] - microns40[None, :, :]).max(axis=2).min(axis=1)
    assert np.mean(nearest <= 112.0 / 8) >= 0.85  # within one cell (1/8 of a tile)


def test_one_piece_gets_tilings_grid_on_cells():
    """When cells are the mask's pixels, the tiles are tiling.plan_tiles' own, scaled to level 0."""
    mask = np.zeros((64, 80), bool)
    mask[5:50, 7:70] = True
    plan = plan_slide_tiles(mask, (80 * 16, 64 * 16), size0=8 * 16, min_coverage=0.5)
    reference = plan_tiles(mask, TilingSettings(tile_size=8, min_coverage=0.5))
    assert np.array_equal(plan.coords, reference.coords.astype(np.int64) * 16)
    assert np.allclose(plan.coverage, reference.coverage)


def test_each_piece_is_tiled_on_its_own_box():
    mask = np.zeros((64, 64), bool)
    mask[4:20, 4:60] = True  # two strips 16 px tall, 20 px apart: one grid on both would miss one strip's rows
    mask[40:56, 4:60] = True
    plan = plan_slide_tiles(mask, (64, 64), size0=16, min_coverage=0.9)
    assert sorted(set(plan.coords[:, 1].tolist())) == [4, 40] and (plan.coverage == 1.0).all()


def test_no_tissue_gives_no_tile_and_a_tiny_piece_one():
    empty = plan_slide_tiles(np.zeros((32, 32), bool), (3200, 3200), 448)
    assert empty.fallback == "no_tissue" and empty.coords.shape == (0, 2) and "no tissue" in empty.note
    speck = np.zeros((32, 32), bool)
    speck[10:12, 10:12] = True
    plan = plan_slide_tiles(speck, (3200, 3200), 448)
    assert plan.fallback == "best_coverage" and len(plan.coords) == 1


def test_pen_removes_the_tiles_it_touches_and_max_tiles_samples_the_rest():
    mask = np.ones((64, 64), bool)
    pen = np.zeros_like(mask)
    pen[30:32, :] = True
    plan = plan_slide_tiles(mask, (640, 640), 80, pen=pen)
    rows = (plan.coords[:, 1] // 10, (plan.coords[:, 1] + 80) // 10)
    assert len(plan.coords) and not np.any((rows[0] < 32) & (rows[1] > 30))
    first = plan_slide_tiles(mask, (640, 640), 80, pen=pen, max_tiles=5, seed=3, slide_id="a.svs")
    again = plan_slide_tiles(mask, (640, 640), 80, pen=pen, max_tiles=5, seed=3, slide_id="a.svs")
    assert len(first.coords) == 5 and np.array_equal(first.coords, again.coords)
    assert {tuple(c) for c in first.coords} <= {tuple(c) for c in plan.coords}
