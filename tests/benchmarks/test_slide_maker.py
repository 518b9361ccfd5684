"""The made slides the slide tests and benchmarks stand on: exact levels, known tissue and pens, checked sizes."""

import numpy as np
import pytest

from benchmarks import slide_maker
from benchmarks.bench_slide_read import tissue_grid


@pytest.fixture
def layout():
    return slide_maker.default_layout(1024, 512, slide_maker.synthetic_patches(seed=1), pens=("green", "black"))


def test_every_level_is_the_box_mean_of_level_0(layout):
    level0 = layout.render(0, 0, 1024, 512).astype(np.float64)
    for downsample in (4, 16):
        boxes = level0.reshape(512 // downsample, downsample, 1024 // downsample, downsample, 3).mean(axis=(1, 3))
        rendered = layout.render(0, 0, 1024 // downsample, 512 // downsample, downsample)
        assert np.abs(rendered - boxes).max() <= 1.0  # rounding only (pens multiply after the mean)


def test_tissue_pens_and_glass_where_the_layout_says(layout):
    pixels = layout.render(0, 0, 1024 // 16, 512 // 16, 16)
    tissue, pens = layout.tissue_mask(16), layout.pen_mask(16)
    assert tissue.shape == pens.shape == (32, 64)
    assert (pixels[~tissue & ~pens] == slide_maker.GLASS).all()
    assert not (pixels[tissue & ~pens] == slide_maker.GLASS).all(axis=1).any()
    assert 0.2 < tissue.mean() < 0.4 and pens.any() and (pens <= tissue).all()  # strokes lie across the first piece
    # under a stroke: the tissue multiplied by the ink (green, then black)
    plain = slide_maker.SlideLayout(1024, 512, layout.tissue, layout.patches).render(0, 0, 64, 32, 16).astype(int)
    for (x, y, w, h, ink), name in zip(layout.pens, ("green", "black"), strict=True):
        assert ink == slide_maker.PEN_INKS[name]
        window = np.s_[y // 16 : (y + h) // 16, x // 16 : (x + w) // 16]
        assert np.array_equal(pixels[window], plain[window] * np.array(ink) // 255)
    # a region past the edge is glass
    assert (layout.render(1024, 0, 16, 16) == slide_maker.GLASS).all()


def test_sizes_and_kinds_are_checked(tmp_path, layout):
    with pytest.raises(ValueError, match="multiples of 16"):
        slide_maker.SlideLayout(1000, 512, (), layout.patches)
    with pytest.raises(ValueError, match="'kind' parameter of write_slide must be"):
        slide_maker.write_slide(tmp_path / "x.tif", layout, kind="ndpi")
    with pytest.raises(ValueError, match="'unit' parameter of write_slide must be"):
        slide_maker.write_slide(tmp_path / "x.tif", layout, kind="generic", unit="mm")


def test_the_benchmark_grid_lies_on_tissue(layout):
    corners = tissue_grid(layout, 64, 10)
    mask = layout.tissue_mask(16)
    assert 0 < len(corners) <= 10 and len(set(corners)) == len(corners)
    for x, y in corners:
        assert x % 64 == 0 and y % 64 == 0 and mask[y // 16 : (y + 64) // 16, x // 16 : (x + 64) // 16].all()
