import numpy as np
import pytest

from pipeline.data.tiling import TilingSettings, _grid_counts, _inside_counts, cut_tiles, plan_tiles, tile_coverage
from pipeline.errors import ConfigError


def _l_shaped_mask() -> np.ndarray:
    inside = np.zeros((64, 96), dtype=bool)
    inside[:, :48] = True
    inside[:16, 48:] = True  # a strip along the top reaches the right edge: the bounding box is the whole image
    return inside


def test_grid_counts_coords_and_coverage_on_known_mask():
    plan = plan_tiles(_l_shaped_mask(), TilingSettings(tile_size=32, min_coverage=0.5))
    assert plan.coords.dtype == np.int32 and plan.coverage.dtype == np.float32
    np.testing.assert_array_equal(plan.coords, [[0, 0], [32, 0], [64, 0], [0, 32], [32, 32]])
    np.testing.assert_allclose(plan.coverage, [1.0, 0.75, 0.5, 1.0, 0.5])
    assert plan.fallback == ""


def test_threshold_is_inclusive_and_zero_keeps_every_grid_tile():
    assert len(plan_tiles(_l_shaped_mask(), TilingSettings(tile_size=32, min_coverage=0.51)).coords) == 3
    assert len(plan_tiles(_l_shaped_mask(), TilingSettings(tile_size=32, min_coverage=0.0)).coords) == 6


def test_last_row_and_column_end_at_the_image_edge():
    inside = np.ones((70, 100), dtype=bool)  # regular columns 0, 32, 64 and rows 0, 32, then column 68 and row 38
    plan = plan_tiles(inside, TilingSettings(tile_size=32))
    assert len(plan.coords) == 12
    assert sorted(set(plan.coords[:, 0].tolist())) == [0, 32, 64, 68]
    assert sorted(set(plan.coords[:, 1].tolist())) == [0, 32, 38]
    assert (plan.coords[:, 0] + 32 <= 100).all() and (plan.coords[:, 1] + 32 <= 70).all()


def test_grid_starts_at_the_mask_bounding_box():
    inside = np.zeros((200, 200), dtype=bool)
    inside[50:150, 70:170] = True
    plan = plan_tiles(inside, TilingSettings(tile_size=32))
    assert sorted(set(plan.coords[:, 0].tolist())) == [70, 102, 134, 138]
    assert sorted(set(plan.coords[:, 1].tolist())) == [50, 82, 114, 118]
    np.testing.assert_allclose(plan.coverage, 1.0)


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
    ys, xs = np.arange(0, shape[0] - tile + 1, step), np.arange(0, shape[1] - tile + 1, step)
    np.testing.assert_array_equal(_grid_counts(inside, tile, ys, xs), _inside_counts(inside, tile)[::step, ::step])


def _covered_fraction(inside: np.ndarray, coords: np.ndarray, tile_size: int) -> float:
    """Fraction of the mask's pixels that lie in at least one of the tiles."""
    covered = np.zeros(inside.shape, dtype=bool)
    for x, y in coords:
        covered[y : y + tile_size, x : x + tile_size] = True
    return float((covered & inside).sum() / inside.sum())


@pytest.mark.parametrize(("tile", "stride"), [(224, None), (224, 160), (448, None)])  # 448: --mpp 0.25 for 20x
def test_tiles_cover_a_full_mask_on_every_image_size(tile, stride):
    # Each width from one tile to 1,100 px, paired with a spread of heights; --max-tiles unset.
    settings = TilingSettings(tile_size=tile, stride=stride)
    for width in range(tile, 1101, 3):
        height = tile + (width * 37) % (1101 - tile)
        inside = np.ones((height, width), dtype=bool)
        plan = plan_tiles(inside, settings)
        assert plan.fallback == ""
        assert (plan.coords[:, 0] + tile <= width).all() and (plan.coords[:, 1] + tile <= height).all()
        assert _covered_fraction(inside, plan.coords, tile) >= 0.9, (width, height, len(plan.coords))


def test_600_by_400_full_mask_is_covered_by_an_edge_aligned_row_and_column():
    plan = plan_tiles(np.ones((400, 600), dtype=bool), TilingSettings(tile_size=224))
    # the regular grid (0, 224) plus a last column ending at the right edge and a last row ending at the bottom
    assert sorted(set(plan.coords[:, 0].tolist())) == [0, 224, 376]
    assert sorted(set(plan.coords[:, 1].tolist())) == [0, 176]
    assert len(plan.coords) == 6 and _covered_fraction(np.ones((400, 600), bool), plan.coords, 224) == 1.0


def test_grid_starts_at_the_mask_and_reaches_its_far_edge(rng):
    for _ in range(30):
        inside = np.zeros((300, 420), dtype=bool)
        y0, x0 = rng.integers(0, 150), rng.integers(0, 250)
        inside[y0 : y0 + rng.integers(60, 150), x0 : x0 + rng.integers(60, 170)] = True
        settings = TilingSettings(tile_size=40, stride=30, min_coverage=0.0)
        plan = plan_tiles(inside, settings)  # min coverage 0: every grid position is kept
        assert _covered_fraction(inside, plan.coords, 40) == 1.0
        np.testing.assert_allclose(plan.coverage, tile_coverage(inside, plan.coords, 40), atol=1e-6)
        kept = plan_tiles(inside, TilingSettings(tile_size=40, stride=30, min_coverage=0.5))
        assert (kept.coverage >= 0.5).all() and _covered_fraction(inside, kept.coords, 40) >= 0.9


def test_thin_image_is_tiled_along_its_length_with_white_padding():
    inside = np.ones((200, 1000), dtype=bool)  # less than one 224-px tile high
    plan = plan_tiles(inside, TilingSettings(tile_size=224))
    assert plan.fallback == ""
    assert plan.coords[:, 1].tolist() == [0] * 5 and plan.coords[:, 0].tolist() == [0, 224, 448, 672, 776]
    np.testing.assert_allclose(plan.coverage, 200 / 224)


def test_fallback_note_says_what_happened_and_what_to_do():
    inside = np.zeros((128, 128), dtype=bool)
    inside[20:40, 20:40] = True  # a blob across grid lines: 12 x 12 of it in the best grid tile
    inside[0, 0] = inside[127, 127] = True  # stretch the bounding box over the image
    plan = plan_tiles(inside, TilingSettings(tile_size=32, min_coverage=0.5))
    assert plan.fallback == "best_coverage" and plan.coverage[0] == pytest.approx(400 / 1024)
    assert plan.note == (
        "no grid tile has 50% of its pixels inside the mask (the best has 14%), so the one 32-px tile holding the "
        "most mask was kept instead (39% inside); lower --min-coverage or --tile-size to keep more of such images"
    )
    empty = plan_tiles(np.zeros((100, 200), dtype=bool), TilingSettings(tile_size=32))
    assert empty.note == "the mask is empty, so the centre tile was kept to give the image a prediction; check its mask"
    assert plan_tiles(np.ones((64, 64), dtype=bool), TilingSettings(tile_size=32)).note == ""


@pytest.mark.parametrize("interpolation", ["bilinear", "bicubic", "nearest"])
def test_resize_tiles_is_pillows_resize_of_each_tile(interpolation):
    from PIL import Image

    from pipeline.data.tiling import PIL_FILTERS, resize_tiles

    tiles = np.random.default_rng(0).integers(0, 256, size=(3, 40, 40, 3), dtype=np.uint8)
    out = resize_tiles(tiles, 24, interpolation)
    assert out.shape == (3, 24, 24, 3) and out.dtype == np.uint8
    for tile, resized in zip(tiles, out, strict=True):
        expected = np.asarray(Image.fromarray(tile).resize((24, 24), PIL_FILTERS[interpolation]))
        np.testing.assert_array_equal(resized, expected)
    assert resize_tiles(tiles, 40, interpolation) is tiles  # already the size: no copy


def test_resize_tiles_names_an_unknown_filter():
    from pipeline.data.tiling import resize_tiles

    with pytest.raises(ConfigError, match="interpolation must be one of nearest, bilinear, bicubic. Got 'lanczos'"):
        resize_tiles(np.zeros((1, 8, 8, 3), np.uint8), 4, "lanczos")


def test_grid_counts_equal_a_direct_count_and_a_0_255_mask_plans_as_its_bool(rng):
    inside = rng.random((300, 410)) < 0.6
    ys, xs = np.array([0, 37, 76]), np.array([0, 100, 186])
    expected = [[np.count_nonzero(inside[y : y + 224, x : x + 224]) for x in xs] for y in ys]
    np.testing.assert_array_equal(_grid_counts(inside, 224, ys, xs), expected)
    settings = TilingSettings(tile_size=64, min_coverage=0.5)
    as_bool, as_bytes = plan_tiles(inside, settings), plan_tiles(inside.astype(np.uint8) * 255, settings)
    np.testing.assert_array_equal(as_bytes.coords, as_bool.coords)
    np.testing.assert_array_equal(as_bytes.coverage, as_bool.coverage)
