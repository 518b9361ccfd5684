"""Extraction's inputs without a mask file: TRIDENT's coords attributes, an image's tissue on a reduced copy."""

import numpy as np
import pytest

from benchmarks import slide_maker
from pipeline.data.slide_input import IMAGE_MASK_SIDE, coords_attributes, image_tissue, read_slide_input
from pipeline.data.slides import Slide
from pipeline.data.tiling import TilingSettings
from pipeline.errors import ImageReadError


def test_coords_attributes_of_a_40x_slide_at_20x_and_of_an_image_without_mpp():
    slide = coords_attributes(224, 448, (40960, 30720), 0.25, 0.5, objective_power=40.0)
    assert slide == {"patch_size": 224, "patch_size_level0": 448, "level0_width": 40960, "level0_height": 30720,
                     "overlap": 0, "level0_magnification": 40, "mpp_level0": 0.25, "target_mpp": 0.5,
                     "target_magnification": 20}
    assert coords_attributes(224, 448, (10, 10), 0.25, 0.5, step0=336)["overlap"] == 112
    image = coords_attributes(224, 512, (1024, 768), None, None)  # no scale known: no magnification is made up
    assert image == {"patch_size": 224, "patch_size_level0": 512, "level0_width": 1024, "level0_height": 768,
                     "overlap": 0}
    with_mpp = coords_attributes(224, 448, (1024, 768), 0.25, None)  # --mpp on a PNG: 40x, tiles at 20x
    assert with_mpp["level0_magnification"] == 40 and with_mpp["target_magnification"] == 20


def test_image_tissue_is_found_on_a_reduced_copy_and_given_back_at_full_size():
    layout = slide_maker.default_layout(2560, 1280, slide_maker.synthetic_patches())
    pixels = layout.render(0, 0, 2560, 1280, 1)
    mask = image_tissue(pixels)
    truth = layout.tissue_mask(1)
    assert mask.shape == (1280, 2560) and 2560 > IMAGE_MASK_SIDE
    assert (mask & truth).sum() / mask.sum() >= 0.95 and (mask & truth).sum() / truth.sum() >= 0.85
    glass = np.full((300, 200, 3), 240, np.uint8)
    assert not image_tissue(glass).any()  # small: found on the image itself; glass only: empty


def test_a_slide_without_tissue_is_one_line_naming_the_file_and_the_fixes(tmp_path):
    layout = slide_maker.SlideLayout(1024, 1024, (), slide_maker.synthetic_patches())
    path = slide_maker.write_slide(tmp_path / "glass.svs", layout, "aperio", mpp=0.5, app_mag=20)
    with Slide(path) as slide, pytest.raises(ImageReadError, match=r"glass.svs: no tissue .*--tissue all"):
        read_slide_input(slide, "auto", 0.5, 32, "bilinear", TilingSettings(32), "train/glass")
    with Slide(path) as slide:  # --tissue all: every tile of the scanned area
        read = read_slide_input(slide, "all", 4.0, 32, "bilinear", TilingSettings(32), "train/glass")
    assert read.plan.size0 == 256 and len(read.plan.coords) == 16 and read.tiles.shape == (16, 32, 32, 3)
