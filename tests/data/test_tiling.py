import numpy as np
import pytest

from pipeline.data.tiling import TilingSettings, _grid_counts, _inside_counts, cut_tiles, plan_tiles, tile_coverage
from pipeline.errors import ConfigError


def test_grid_counts_coords_and_coverage_on_known_mask():
    inside = np.zeros((64, 96), dtype=bool)
    inside[:, :48] = True
    plan = plan_tiles(inside, TilingSettings(tile_size=32, min_coverage=0.5))
    assert plan.coords.dtype == np.int32 and plan.coverage.dtype == np.float32
    np.testing.assert_array_equal(plan.coords, [[0, 0], [32, 0], [0, 32], [32, 32]])
    np.testing.assert_allclose(plan.coverage, [1.0, 0.5, 1.0, 0.5])
    assert plan.fallback == ""


def test_threshold_is_inclusive_and_zero_keeps_every_grid_tile():
    inside = np.zeros((64, 96), dtype=bool)
    inside[:, :48] = True
    assert len(plan_tiles(inside, TilingSettings(tile_size=32, min_coverage=0.51)).coords) == 2
    assert len(plan_tiles(inside, TilingSettings(tile_size=32, min_coverage=0.0)).coords) == 6


def test_partial_last_row_and_column_are_not_tiled():
    inside = np.ones((70, 100), dtype=bool)  # 3 full columns (0, 32, 64) and 2 full rows (0, 32)
    plan = plan_tiles(inside, TilingSettings(tile_size=32))
    assert len(plan.coords) == 6
    assert (plan.coords[:, 0] + 32 <= 100).all() and (plan.coords[:, 1] + 32 <= 70).all()


def test_overlapping_stride():
    inside = np.ones((64, 64), dtype=bool)
    plan = plan_tiles(inside, TilingSettings(tile_size=32, stride=16))
    assert len(plan.coords) == 9  # x, y in {0, 16, 32}
    np.testing.assert_array_equal(np.unique(plan.coords[:, 0]), [0, 16, 32])


def test_coverage_matches_the_mask_on_random_masks(rng):
    inside = rng.random((200, 300)) < 0.6
    settings = TilingSettings(tile_size=40, stride=30, min_coverage=0.55)
    plan = plan_tiles(inside, settings)
    np.testing.assert_allclose(plan.coverage, tile_coverage(inside, plan.coords, 40), atol=1e-6)
    assert (plan.coverage >= 0.55).all()


def test_no_tile_passes_gives_best_coverage_tile():
    inside = np.zeros((128, 128), dtype=bool)
    inside[40:60, 70:90] = True  # a small blob between grid positions
    plan = plan_tiles(inside, TilingSettings(tile_size=32, min_coverage=0.5))
    assert plan.fallback == "best_coverage"
    assert len(plan.coords) == 1
    x, y = plan.coords[0]
    assert 0 <= x <= 96 and 0 <= y <= 96
    assert plan.coverage[0] == pytest.approx(400 / 1024)  # the whole 20x20 blob fits in one tile
    assert tile_coverage(inside, plan.coords, 32)[0] == pytest.approx(plan.coverage[0])


def test_empty_mask_gives_centre_tile_with_zero_coverage():
    plan = plan_tiles(np.zeros((100, 200), dtype=bool), TilingSettings(tile_size=32))
    assert plan.fallback == "empty_mask"
    np.testing.assert_array_equal(plan.coords, [[84, 34]])
    assert plan.coverage[0] == 0.0


def test_image_smaller_than_a_tile_is_padded_with_white():
    inside = np.ones((20, 10), dtype=bool)
    pixels = np.zeros((20, 10, 3), dtype=np.uint8)
    plan = plan_tiles(inside, TilingSettings(tile_size=32))
    assert plan.fallback == "best_coverage"
    np.testing.assert_array_equal(plan.coords, [[0, 0]])
    assert plan.coverage[0] == pytest.approx(200 / 1024)
    tiles = cut_tiles(pixels, plan.coords, 32)
    assert tiles.shape == (1, 32, 32, 3)
    assert (tiles[0, :20, :10] == 0).all() and (tiles[0, 20:] == 255).all() and (tiles[0, :, 10:] == 255).all()


def test_cut_tiles_returns_the_pixels_at_coords(rng):
    pixels = rng.integers(0, 256, size=(64, 96, 3), dtype=np.uint8)
    tiles = cut_tiles(pixels, np.array([[32, 0], [64, 32]]), 32)
    np.testing.assert_array_equal(tiles[0], pixels[0:32, 32:64])
    np.testing.assert_array_equal(tiles[1], pixels[32:64, 64:96])


def test_max_tiles_is_seeded_and_independent_of_order():
    inside = np.ones((320, 320), dtype=bool)  # 100 tiles
    settings = TilingSettings(tile_size=32, max_tiles=7, seed=3)
    first = plan_tiles(inside, settings, "train/img_0001")
    again = plan_tiles(inside, settings, "train/img_0001")
    other_seed = plan_tiles(inside, TilingSettings(tile_size=32, max_tiles=7, seed=4), "train/img_0001")
    assert len(first.coords) == 7
    np.testing.assert_array_equal(first.coords, again.coords)
    assert not np.array_equal(first.coords, other_seed.coords)
    order = first.coords[:, 1] * 1000 + first.coords[:, 0]
    assert (np.diff(order) > 0).all()  # raster order is kept


@pytest.mark.parametrize(
    ("settings", "message"),
    [
        (TilingSettings(tile_size=0), "--tile-size must be a positive number of pixels. Got 0 instead."),
        (TilingSettings(tile_size=-5), "--tile-size must be a positive number of pixels. Got -5 instead."),
        (TilingSettings(stride=0), "--stride must be a positive number of pixels. Got 0 instead."),
        (TilingSettings(min_coverage=1.5), "--min-coverage must be a fraction in [0, 1]. Got 1.5 instead."),
        (TilingSettings(min_coverage=-0.1), "--min-coverage must be a fraction in [0, 1]. Got -0.1 instead."),
        (TilingSettings(max_tiles=-1), "--max-tiles must be 0 (all tiles) or a positive count. Got -1 instead."),
    ],
)
def test_invalid_settings_are_named(settings, message):
    with pytest.raises(ConfigError) as info:
        settings.validate()
    assert str(info.value) == message


@pytest.mark.parametrize(
    "shape, tile, step",
    [
        ((1024, 1280), 224, 224),
        ((1000, 777), 224, 100),
        ((300, 300), 64, 17),
        ((224, 224), 224, 224),
        ((500, 230), 224, 7),
    ],
)
def test_grid_counts_equal_the_summed_area_table(shape, tile, step):
    inside = np.random.default_rng(tile + step).random(shape) < 0.6
    np.testing.assert_array_equal(_grid_counts(inside, tile, step), _inside_counts(inside, tile)[::step, ::step])
