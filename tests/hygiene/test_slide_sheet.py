"""The slides' contact sheet: panel shape, the outline exactly on the mask's edge, tiles where they are, the PNG."""

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_erosion

from pipeline.data.slide_tiles import SlideTilePlan, SlideTissue
from pipeline.hygiene.slide_sheet import (
    OUTLINE,
    PANEL,
    TILE_EDGE,
    SlideView,
    draw_slide,
    mask_edge,
    slide_view,
    small_view,
    write_slide_sheet,
)


def _view(name="a.svs", note=""):
    thumbnail = np.full((100, 160, 3), 128, np.uint8)  # grey: neither the outline's nor the tiles' colour
    tissue = np.zeros((100, 160), bool)
    tissue[20:70, 30:120] = True
    tissue[40:50, 60:80] = False  # a hole: its rim is an edge too
    coords = np.array([[30 * 16, 20 * 16], [62 * 16, 20 * 16]])  # level 0 = 16 x the thumbnail
    return SlideView(name, thumbnail, tissue, coords, size0=32 * 16, downsample=(16.0, 16.0), note=note)


def test_the_outline_is_exactly_the_mask_edge():
    view = _view()
    drawn = draw_slide(view)
    assert drawn.shape == (100, 160, 3) and drawn.dtype == np.uint8
    outline = np.all(drawn == OUTLINE, axis=-1)
    expected = view.tissue & ~binary_erosion(view.tissue, border_value=0)  # scipy's 4-neighbour erosion
    assert np.array_equal(outline, expected) and np.array_equal(mask_edge(view.tissue), expected)
    assert outline[20, 30:120].all() and outline[39, 60:80].all() and not outline[30, 50]  # the rim above the hole


def test_tiles_are_drawn_where_they_are():
    drawn = draw_slide(_view())
    tile = np.all(drawn == TILE_EDGE, axis=-1)
    assert tile[51, 30 + 1 : 30 + 31].all() and tile[51, 62 + 1 : 62 + 31].all()  # bottom edges: row 20 + 32 - 1
    assert tile[25:50, 93].all()  # the second tile's right edge: column 62 + 32 - 1
    assert not tile[:, 100:].any() and not tile[60:, :].any()


def test_a_large_thumbnail_is_shrunk_and_the_sheet_written(tmp_path):
    view = _view()
    big = SlideView("big.svs", np.repeat(np.repeat(view.thumbnail, 8, 0), 8, 1),
                    np.repeat(np.repeat(view.tissue, 8, 0), 8, 1), view.coords, view.size0, (2.0, 2.0))
    panel = draw_slide(big, PANEL)
    assert panel.shape == (200, 320, 3)
    assert np.array_equal(np.all(panel == OUTLINE, axis=-1), mask_edge(view.tissue.repeat(2, 0).repeat(2, 1)))
    path = tmp_path / "slides.png"
    write_slide_sheet(path, [view, big, _view("c.svs", "no tissue found"), view, view])
    sheet = np.asarray(Image.open(path))
    assert sheet.shape[1] == 4 * (PANEL + 8) and sheet.shape[0] == 2 * (PANEL + 30 + 8)
    assert np.all(sheet == OUTLINE, axis=-1).any() and not list(tmp_path.glob(".*.tmp.png"))
    with pytest.raises(ValueError, match="needs at least one slide"):
        write_slide_sheet(path, [])
    with pytest.raises(ValueError, match="the tissue mask"):
        draw_slide(SlideView("x", view.thumbnail, view.tissue[:10], view.coords, 1, (1.0, 1.0)))


def test_a_view_comes_from_the_found_tissue_and_the_plan():
    view = _view()
    found = SlideTissue(view.thumbnail, view.tissue, np.zeros_like(view.tissue), view.downsample)
    plan = SlideTilePlan(view.coords, view.size0, np.ones(2, np.float32), "", "")
    assert np.array_equal(draw_slide(slide_view("a.svs", found, plan)), draw_slide(view))


def test_a_small_view_keeps_the_tiles_where_they_are_on_a_shrunk_thumbnail():
    view = _view()
    found = SlideTissue(np.repeat(np.repeat(view.thumbnail, 4, 0), 4, 1), np.repeat(np.repeat(view.tissue, 4, 0), 4, 1),
                        np.zeros((400, 640), bool), (4.0, 4.0))
    plan = SlideTilePlan(view.coords, view.size0, np.ones(2, np.float32), "", "")
    small = small_view("a.svs", found, plan, max_side=160)
    assert small.thumbnail.shape == (100, 160, 3) and small.downsample == (16.0, 16.0)
    assert np.array_equal(small.tissue, view.tissue) and np.array_equal(draw_slide(small), draw_slide(view))
    assert small_view("a.svs", found, plan, max_side=1000).thumbnail.shape == (400, 640, 3)  # never enlarged
