"""Thin pen lines (pipeline/data/ink_lines.py): found by their shape through JPEG, named by their summed colour."""

import numpy as np
import pytest
from PIL import Image
from scipy.ndimage import binary_dilation

from benchmarks.colour_variants import cast, pen_stroke, stroke_coverage
from pipeline.data import colour
from pipeline.data import ink_lines as lines_module
from tests.data.test_colour import _image, _lung


@pytest.mark.parametrize("pen", ["green", "blue", "black"])
def test_ink_lines_find_a_thin_stroke_through_jpeg_and_name_its_colour(glas15, pen):
    from benchmarks.stain_variants import jpeg

    pixels = _image(glas15, "img_0001.png")
    inked = jpeg(pen_stroke(pixels, pen, 3, np.random.default_rng(0)), 80)
    view = np.asarray(Image.fromarray(inked).reduce(2))  # as hygiene judges lines: 2x2 blocks, JPEG's colour blocks
    coverage = np.asarray(Image.fromarray(
        (stroke_coverage(pixels.shape[:2], 3, np.random.default_rng(0)) * 255).astype(np.uint8)).reduce(2)) > 128
    lines = lines_module.ink_lines(view)
    assert (lines[pen] & coverage).sum() > 0.5 * coverage.sum(), (lines[pen] & coverage).sum()
    near = binary_dilation(coverage, iterations=2)
    assert (lines[pen] & near).sum() >= 0.9 * lines[pen].sum()  # little of the tissue beside it
    assert all(not lines[other].any() for other in colour.PEN_COLOURS if other != pen)
    # per pixel, JPEG has turned the stroke's colour: the thin black stroke reads as no pen at all
    if pen == "black":
        assert not colour.pen_mask(view)["black"][coverage].mean() > 0.5


def test_ink_lines_see_no_line_in_real_tissue_under_casts(glas15, lung):
    from benchmarks.stain_variants import jpeg

    images = [_image(glas15, f"img_{i:04d}.png") for i in range(4)] + [_lung(lung, k) for k in range(4)]
    for pixels in images:
        for tint in ("green", "cyan", "yellow", "pink"):
            view = np.asarray(Image.fromarray(jpeg(cast(pixels, tint, 1.5), 80)).reduce(2))
            assert not any(m.any() for m in lines_module.ink_lines(view).values()), tint


@pytest.mark.parametrize("name, seed", [("img_0075.jpg", 2), ("img_0300.jpg", 2)])
def test_a_long_thin_blue_line_whose_jpeg_sum_reads_haematoxylin_blue_is_still_blue(lung, name, seed):
    from benchmarks.stain_variants import jpeg

    pixels = _image(lung, name)
    view = np.asarray(Image.fromarray(jpeg(pen_stroke(pixels, "blue", 3, np.random.default_rng(seed)), 80)).reduce(2))
    coverage = np.asarray(Image.fromarray(
        (stroke_coverage(pixels.shape[:2], 3, np.random.default_rng(seed)) * 255).astype(np.uint8)).reduce(2)) > 128
    # the stroke's line: JPEG has moved its summed colour past the short lines' blue sector, towards haematoxylin
    hues = [float(colour.od_hue_and_chroma(od)[0]) for _, pixels_, od, _ in lines_module.line_colours(view)
            if pixels_.sum() >= lines_module.LONG_LINE * max(view.shape[:2])]
    assert hues and all(lines_module.LINE_BLUE_HUE[1] < hue < lines_module.LONG_LINE_BLUE_HUE[1] for hue in hues), hues
    lines = lines_module.ink_lines(view)
    assert (lines["blue"] & coverage).sum() > 0.5 * coverage.sum()
    assert not lines["green"].any() and not lines["black"].any()


def test_oriented_means_are_the_same_bits_as_a_loop_over_each_segment(rng):
    grey = rng.random((40, 50)).astype(np.float32)
    where = rng.random((40, 50)) < 0.3
    along, across = lines_module._oriented_means(grey, where)
    half = lines_module.LINE_LENGTH // 2
    padded = np.pad(grey, half, mode="edge")
    for row, column in zip(*np.nonzero(where), strict=True):
        means = []
        for angle in np.linspace(0.0, np.pi, 8, endpoint=False):
            total = np.float32(0.0)
            for k in range(-half, half + 1):
                dy, dx = int(round(k * np.sin(angle))), int(round(k * np.cos(angle)))
                total += padded[row + half + dy, column + half + dx]
            means.append(total / np.float32(2 * half + 1))
        best = int(np.argmax(means))
        assert along[row, column] == means[best] and across[row, column] == means[(best + 4) % 8]
    assert not along[~where].any() and not across[~where].any()


@pytest.mark.parametrize("pen, name, seed", [("black", "img_0045.jpg", 1), ("blue", "img_0045.jpg", 2),
                                             ("black", "img_0495.jpg", 0)])
def test_a_long_line_over_crowded_tissue_is_named_against_the_tissues_own_structures(lung, pen, name, seed):
    from benchmarks.stain_variants import jpeg

    pixels = _image(lung, name)
    view = np.asarray(Image.fromarray(jpeg(pen_stroke(pixels, pen, 3, np.random.default_rng(seed)), 80)).reduce(2))
    coverage = np.asarray(Image.fromarray(
        (stroke_coverage(pixels.shape[:2], 3, np.random.default_rng(seed)) * 255).astype(np.uint8)).reduce(2)) > 128
    # JPEG has moved the stroke's summed colour to the crowded tissue's (blue past 100, black more chromatic than
    # 0.4 x its mean OD): by its colour alone the line is none (q_version 6 named none of the three) ...
    stroke = [(od, structures) for _, pixels_, od, structures in lines_module.line_colours(view)
              if pixels_.sum() >= lines_module.LONG_LINE * max(view.shape[:2])]
    assert stroke and all(structures is not None for _, structures in stroke)
    assert all(lines_module._line_colour(od, True, None) is None for od, _ in stroke)
    # ... but it is bluer, or less chromatic, than the nuclei around it
    lines = lines_module.ink_lines(view)
    assert (lines[pen] & coverage).sum() > 0.5 * coverage.sum(), (lines[pen] & coverage).sum()
    assert all(not lines[other].any() for other in colour.PEN_COLOURS if other != pen)


def test_a_long_line_as_blue_as_the_tissues_own_structures_is_tissue(lung):
    # unclipped HED jitter, more haematoxylin and less eosin: a lung tile's long cell border sums to OD hue 98.5, inside
    # the long lines' old blue sector (up to 100, q_version 6 flagged it blue ink), but its nuclei are as blue
    from benchmarks.stain_variants import hed_jitter

    jittered = hed_jitter(_image(lung, "img_0170.jpg"), (1.4, 0.6, 1.0), clip=False)
    view = np.asarray(Image.fromarray(jittered).reduce(2))
    long_lines = [(od, structures) for _, pixels_, od, structures in lines_module.line_colours(view)
                  if pixels_.sum() >= lines_module.LONG_LINE * max(view.shape[:2])]
    assert any(lines_module._line_colour(od, True, None) == "blue" for od, _ in long_lines)
    assert all(structures is not None for _, structures in long_lines)
    assert not any(m.any() for m in lines_module.ink_lines(view).values())


def test_a_short_line_no_bluer_than_the_tissues_own_structures_is_tissue(lung):
    # a x1.5 green cast through JPEG turns a short cell border at a lung tile's edge to OD hue 81, inside the blue
    # sector of short lines, but only 21 degrees bluer than the nuclei and fibres beside it (strokes: 31 and more)
    from benchmarks.stain_variants import jpeg

    view = np.asarray(Image.fromarray(jpeg(cast(_image(lung, "img_0170.jpg"), "green", 1.5), 80)).reduce(2))
    short = [(od, structures) for _, pixels_, od, structures in lines_module.line_colours(view)
             if pixels_.sum() < lines_module.LONG_LINE * max(view.shape[:2])]
    assert any(lines_module._line_colour(od, False, None) == "blue" for od, _ in short)  # by its hue alone
    assert not lines_module.ink_lines(view)["blue"].any()
