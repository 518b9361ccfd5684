"""A slide's vote map: drawn on its thumbnail, with its level-0 tiles where the coords say."""

import numpy as np
import pytest
from PIL import Image

from benchmarks import slide_maker
from pipeline import cache
from pipeline.cache import store
from pipeline.data.records import ImageRecord
from pipeline.data.slides import Slide
from pipeline.errors import ImageReadError
from pipeline.report.plots import class_colors, save_figure
from pipeline.report.slide_pictures import slide_picture
from pipeline.report.vote_maps import VoteMap, painted_picture, render_vote_map, tile_colors

pytest.importorskip("tifffile")

SIDE0, TILE0 = 2048, 256  # level-0 slide side and tile side
COORDS = np.array([[256, 256], [512, 256], [1024, 768], [1536, 1280]])  # level-0 corners, one tile per class
CLASSES = ["a", "b", "c", "d"]


@pytest.fixture(scope="module")
def made(tmp_path_factory):
    """A 2,048-px Aperio slide, its feature file (4 tiles, 256 level-0 px) and its saved tissue mask."""
    root = tmp_path_factory.mktemp("slide")
    path = root / "data" / "train_data" / "s.svs"
    path.parent.mkdir(parents=True)
    layout = slide_maker.default_layout(SIDE0, SIDE0, slide_maker.synthetic_patches())
    slide_maker.write_slide(path, layout, "aperio", mpp=0.5, app_mag=20)
    cache_dir = root / "cache"
    attrs = {"image_width": SIDE0, "image_height": SIDE0, "tile_size": 224}
    coords_attrs = {"patch_size": 32, "patch_size_level0": TILE0, "overlap": 0, "level0_width": SIDE0,
                    "level0_height": SIDE0}
    store.write_image_features(cache.feature_path(cache_dir, "train/s"), np.zeros((4, 8), np.float32), COORDS,
                               np.ones(4, np.float32), attrs, coords_attrs)
    tissue = layout.tissue_mask(16)  # 128 x 128, as extraction saves it at its own (thumbnail) resolution
    cache.write_tissue_mask(cache_dir / cache.TISSUE_DIR, "train/s", tissue)
    record = ImageRecord("train/s", "train", "s.svs", path, None, kind="slide")
    return record, cache_dir, attrs, layout


def test_the_picture_is_the_thumbnail_with_the_saved_tissue_and_the_files_tile_size(made):
    record, cache_dir, attrs, layout = made
    picture = slide_picture(record, cache_dir, attrs, max_side=512)
    with Slide(record.image_path) as slide:
        np.testing.assert_array_equal(picture.pixels, slide.thumbnail(512))
    assert picture.pixels.shape == (512, 512, 3) and picture.downsample == 4.0
    assert (picture.tile_size, picture.cell_size) == (TILE0, TILE0)
    truth = np.asarray(Image.fromarray(layout.tissue_mask(16)).resize((512, 512), Image.Resampling.NEAREST))
    np.testing.assert_array_equal(picture.inside, truth)


def test_tile_squares_land_where_the_level0_coords_say(made, tmp_path):
    record, cache_dir, attrs, _ = made
    picture = slide_picture(record, cache_dir, attrs, max_side=512)
    proba = np.eye(4)[[0, 1, 2, 3]] * 0.9 + 0.025  # each tile sure of another class: four colours
    vote_map = VoteMap("train/s", picture.pixels, picture.inside, COORDS, proba, proba.mean(0), 0, "note",
                       downsample=picture.downsample)
    painted, cells, scale = painted_picture(vote_map, 4, picture.tile_size, picture.cell_size)
    assert scale == 1.0 and painted.shape == picture.pixels.shape
    np.testing.assert_array_equal(cells, np.column_stack([COORDS // 4, (COORDS + TILE0) // 4]))
    rgba = tile_colors(proba, class_colors(4))
    for (x0, y0, x1, y1), colour in zip(cells, rgba, strict=True):
        expected = picture.pixels[y0:y1, x0:x1] * (1 - colour[3]) + 255 * colour[:3] * colour[3]
        assert np.abs(painted[y0:y1, x0:x1] - expected).max() <= 1  # the whole square, and only it, is tinted
    untouched = np.ones(painted.shape[:2], bool)
    for x0, y0, x1, y1 in cells:
        untouched[y0:y1, x0:x1] = False
    np.testing.assert_array_equal(painted[untouched], picture.pixels[untouched])
    figure = render_vote_map(vote_map, CLASSES, picture.tile_size, picture.cell_size)
    assert save_figure(figure, tmp_path / "map.png").is_file()


def test_a_slide_whose_level0_changed_is_refused(made):
    record, cache_dir, attrs, _ = made
    with pytest.raises(ImageReadError, match="not the 4096 x 2048 px it had at extraction"):
        slide_picture(record, cache_dir, {**attrs, "image_width": 4096}, max_side=512)


def test_without_its_tissue_mask_the_picture_has_no_outline(made, tmp_path, caplog):
    record, cache_dir, attrs, _ = made
    other = tmp_path / "cache"
    path = cache.feature_path(other, "train/s")
    path.parent.mkdir(parents=True)
    path.write_bytes(cache.feature_path(cache_dir, "train/s").read_bytes())
    picture = slide_picture(record, other, attrs, max_side=256)
    assert picture.inside is None and picture.downsample == 8.0 and "without its tissue outline" in caplog.text
