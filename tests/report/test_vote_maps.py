import numpy as np
import pytest
from PIL import Image

from pipeline.report.plots import DPI, class_colors, save_figure
from pipeline.report.vote_maps import (
    MAX_ALPHA,
    MIN_ALPHA,
    VoteMap,
    display_scale,
    paint_tiles,
    render_vote_map,
    tile_cells,
    tile_colors,
)

CLASSES = ["Luminal A", "Luminal B", "HER2(+)", "Triple negative"]
GREY = 128


def test_tile_colors_take_the_top_class_colour_and_shade_by_confidence():
    colors = class_colors(4)
    proba = np.array([[0.25, 0.25, 0.25, 0.25], [0.0, 0.0, 1.0, 0.0], [0.1, 0.625, 0.2, 0.075]])
    rgba = tile_colors(proba, colors)
    assert rgba.shape == (3, 4)
    np.testing.assert_allclose(rgba[:, :3], colors[[0, 2, 1]])
    # 1/C is the least confident a top class can be, 1 the most; 0.625 is half way between 0.25 and 1
    np.testing.assert_allclose(rgba[:, 3], [MIN_ALPHA, MAX_ALPHA, (MIN_ALPHA + MAX_ALPHA) / 2])


def test_tile_cells_scale_and_do_not_overlap_when_tiles_do():
    coords = np.array([[0, 0], [50, 0], [100, 0]])
    # tiles of 100 px every 50 px: each paints the 50 px square at its centre, so neighbours touch without overlap
    cells = tile_cells(coords, tile_size=100, cell_size=50, scale=1.0, shape=(200, 300))
    np.testing.assert_array_equal(cells, [[25, 25, 75, 75], [75, 25, 125, 75], [125, 25, 175, 75]])
    half = tile_cells(coords, tile_size=100, cell_size=100, scale=0.5, shape=(100, 150))
    np.testing.assert_array_equal(half[0], [0, 0, 50, 50])
    assert display_scale(6000, 3000) == pytest.approx(1600 / 6000) and display_scale(600, 400) == 1.0


def test_paint_tiles_blends_each_cell_and_leaves_the_rest():
    pixels = np.full((40, 60, 3), GREY, dtype=np.uint8)
    cells = np.array([[0, 0, 20, 20], [20, 20, 40, 40]])
    rgba = np.array([[1.0, 0.0, 0.0, 0.5], [0.0, 0.0, 1.0, 0.25]])
    painted = paint_tiles(pixels, cells, rgba)
    np.testing.assert_array_equal(painted[10, 10], [192, 64, 64])  # round(128 * 0.5 + 255 * 0.5) = 192
    np.testing.assert_array_equal(painted[30, 30], [96, 96, 160])
    np.testing.assert_array_equal(painted[10, 50], [GREY] * 3)
    assert painted.dtype == np.uint8 and pixels[10, 10, 0] == GREY  # the input is untouched


def _hand_made_map(width=300, height=200, tile=50):
    """A grey image with six tiles along the top two rows; tile k votes for class k % 4 with rising confidence."""
    coords = np.array([[x, y] for y in (0, 50) for x in (0, 100, 200)])
    proba = np.zeros((6, 4))
    for k in range(6):
        confidence = 0.3 + 0.14 * k
        proba[k] = (1 - confidence) / 3
        proba[k, k % 4] = confidence
    inside = np.zeros((height, width), dtype=bool)
    inside[:100, :250] = True
    return VoteMap("train/img_0007", np.full((height, width, 3), GREY, dtype=np.uint8), inside, coords, proba,
                   proba.mean(axis=0), label=0, note="most confidently wrong · out-of-fold, fold 0"), tile


def test_rendered_tile_colours_match_the_tile_predictions(tmp_path):
    vote_map, tile = _hand_made_map()
    figure = render_vote_map(vote_map, CLASSES, tile, tile)
    figure.canvas.draw()
    image_ax = figure.axes[0]
    rgba = tile_colors(vote_map.tile_proba, class_colors(4))
    expected = np.round(GREY * (1 - rgba[:, 3:]) + 255 * rgba[:, :3] * rgba[:, 3:])
    assert len(np.unique(expected, axis=0)) == 6  # six different colours, so a swapped tile would be caught
    centres = vote_map.coords + tile / 2
    # where each tile centre lands in the picture (display y grows upwards, rows of the PNG downwards)
    points = image_ax.transData.transform(centres)
    untiled = image_ax.transData.transform((150, 175))  # a point of the image that no tile covers
    path = save_figure(figure, tmp_path / "map.png")
    with Image.open(path) as png:
        rendered = np.asarray(png.convert("RGB")).astype(int)
    height = rendered.shape[0]
    for (x, y), colour in zip(points, expected, strict=True):
        assert np.abs(rendered[int(height - y), int(x)] - colour).max() <= 2
    x, y = untiled
    assert np.abs(rendered[int(height - y), int(x)] - GREY).max() <= 2


def test_vote_map_title_figure_size_and_no_text_cut_off(tmp_path):
    vote_map, tile = _hand_made_map()
    figure = render_vote_map(vote_map, CLASSES, tile, tile)
    title = figure.texts[0].get_text().replace("\n", " ")
    assert "train/img_0007: true Luminal A · predicted Luminal B (0.33)" in title
    assert figure.texts[0].get_color() == "#b22222"  # wrong predictions get a red title
    assert "6 tiles voted: 2 Luminal A, 2 Luminal B, 1 HER2(+), 1 Triple negative" in title
    figure.canvas.draw()
    box = figure.get_tightbbox(figure.canvas.get_renderer())
    width, height = figure.get_size_inches()
    assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width + 0.01 and box.y1 <= height + 0.01
    path = save_figure(figure, tmp_path / "map.png")
    with Image.open(path) as png:
        assert png.format == "PNG" and png.size[0] == round(8.0 * DPI) and 400 < png.size[1] < 1100


def test_large_and_tall_images_are_downscaled_and_fit_a_screen(tmp_path):
    height, width = 3000, 2000
    coords = np.array([[0, 0], [1000, 2000]])
    proba = np.array([[0.9, 0.1], [0.2, 0.8]])
    vote_map = VoteMap("test/img_0001", np.full((height, width, 3), 200, dtype=np.uint8), None, coords, proba,
                       proba.mean(axis=0), None, "requested")
    figure = render_vote_map(vote_map, ["benign", "malignant"], 1000, 1000)
    assert figure.axes[0].images[0].get_array().shape[:2] == (1600, 1067)
    assert "test/img_0001: test image, no label · predicted benign" in figure.texts[0].get_text()
    path = save_figure(figure, tmp_path / "tall.png")
    with Image.open(path) as png:
        assert png.size[0] <= 9 * DPI and png.size[1] <= 9 * DPI


def test_an_image_of_one_tile_keeps_its_pixels_and_shows_the_probabilities(tmp_path):
    pixels = np.full((224, 224, 3), GREY, dtype=np.uint8)
    proba = np.array([[0.1, 0.7, 0.15, 0.05]])
    vote_map = VoteMap("train/img_0001", pixels, np.ones((224, 224), bool), np.array([[0, 0]]), proba, proba[0],
                       label=1, note="confidently correct")
    figure = render_vote_map(vote_map, CLASSES, 224, 224)
    image_ax, key_ax = figure.axes
    np.testing.assert_array_equal(image_ax.images[0].get_array(), pixels)  # no tint over the whole image
    outline = image_ax.collections[0].get_edgecolor()
    np.testing.assert_allclose(outline[0, :3], class_colors(4)[1])  # outlined in the voted class's colour
    np.testing.assert_allclose([bar.get_width() for bar in key_ax.patches], proba[0])
    assert "class probabilities" in key_ax.get_xlabel()
    assert "1 tile voted: 1 Luminal B" in figure.texts[0].get_text()
    path = save_figure(figure, tmp_path / "one.png")
    with Image.open(path) as png:
        centre = np.asarray(png.convert("RGB"))[png.size[1] // 3, png.size[0] // 2]
    assert np.abs(centre.astype(int) - GREY).max() <= 2


def test_attention_maps_colour_tiles_by_their_own_class_and_fade_the_ignored_ones(tmp_path):
    from pipeline.report.vote_maps import attention_colors

    colors = class_colors(4)
    proba = np.array([[0.1, 0.7, 0.1, 0.1], [0.6, 0.2, 0.1, 0.1], [0.1, 0.1, 0.1, 0.7]])
    rgba = attention_colors(proba, np.array([0.8, 0.0, 0.2]), colors)
    np.testing.assert_allclose(rgba[:, :3], colors[[1, 0, 3]])
    assert rgba[0, 3] == pytest.approx(MAX_ALPHA) and rgba[1, 3] == pytest.approx(MIN_ALPHA / 4)
    assert rgba[1, 3] < rgba[2, 3] < rgba[0, 3]
    vote_map, tile = _hand_made_map()
    attention = np.array([0.05, 0.05, 0.6, 0.1, 0.1, 0.1])
    vote_map.attention = attention
    figure = render_vote_map(vote_map, CLASSES, tile, tile)
    title = figure.texts[0].get_text().replace("\n", " ")
    assert "attention: largest 0.60 (even spread: 0.17) on a HER2(+) tile" in title
    assert "attention weight" in figure.axes[1].get_xlabel()
    figure.canvas.draw()
    box = figure.get_tightbbox(figure.canvas.get_renderer())
    width, height = figure.get_size_inches()
    assert box.x0 >= 0 and box.y0 >= 0 and box.x1 <= width + 0.01 and box.y1 <= height + 0.01  # no text cut off
    points = figure.axes[0].transData.transform(vote_map.coords + tile / 2)
    path = save_figure(figure, tmp_path / "attention.png")
    with Image.open(path) as png:
        rendered = np.asarray(png.convert("RGB")).astype(int)
    painted = attention_colors(vote_map.tile_proba, attention, colors)
    expected = np.round(GREY * (1 - painted[:, 3:]) + 255 * painted[:, :3] * painted[:, 3:])
    for (x, y), colour in zip(points, expected, strict=True):
        assert np.abs(rendered[int(rendered.shape[0] - y), int(x)] - colour).max() <= 2

