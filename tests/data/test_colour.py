import numpy as np
import pytest
from PIL import Image

from benchmarks.colour_variants import cast, pen_stroke, stroke_coverage
from pipeline.data import colour
from tests.hygiene.test_stain import h_and_e


def _image(folder, name="img_0000.png", split="train_data"):
    return np.asarray(Image.open(folder / split / name).convert("RGB"))


def test_white_balance_neutralises_a_cast_of_a_real_image(glas15):
    pixels = _image(glas15)
    plain = colour.white_balance(pixels, colour.glass_white(pixels))
    for tint in ("green", "cyan", "yellow", "pink"):
        tinted = cast(pixels, tint, 1.0)
        white = colour.glass_white(tinted)
        assert white.max() - white.min() > 15, tint  # the glass is visibly tinted ...
        balanced = colour.white_balance(tinted, white)
        glass = colour.glass_white(balanced)
        assert glass.max() - glass.min() <= 3, (tint, glass)  # ... and neutral after
        # the tissue's colours come back too: the mean OD colour of the balanced image is that of the plain one
        hue_plain = colour.od_hue_and_chroma(colour.optical_density(plain).mean(axis=(0, 1)))
        hue_balanced = colour.od_hue_and_chroma(colour.optical_density(balanced).mean(axis=(0, 1)))
        assert abs(hue_balanced[0] - hue_plain[0]) < 5 and abs(hue_balanced[1] - hue_plain[1]) < 0.02, tint


def test_no_glass_means_no_correction_unless_the_colour_is_no_stain(rng):
    tissue = h_and_e(rng)  # pink everywhere, no glass
    assert colour.glass_white(tissue).tolist() == [255.0, 255.0, 255.0]
    assert colour.white_balance(tissue, colour.glass_white(tissue)) is tissue
    # pale, grainy tissue (no flat glass) under a green tint: its brightest pixels are green, which H&E never is,
    # so the tint goes (and only the tint: the brightest channel stays)
    pale = np.clip(tissue.astype(np.int16) // 4 + 170 + rng.integers(-20, 20, tissue.shape), 0, 255).astype(np.uint8)
    assert colour.glass_white(pale).tolist() == [255.0, 255.0, 255.0]
    tinted = cast(pale, "green", 1.0)
    white = colour.glass_white(tinted)
    assert white.max() == pytest.approx(255.0) and white[0] < 230
    hue, _ = colour.od_hue_and_chroma(colour.optical_density(colour.white_balance(tinted, white)).mean(axis=(0, 1)))
    assert colour.in_sector(hue, colour.HE_HUE)


def test_white_balance_refuses_a_bad_white():
    with pytest.raises(ValueError, match="white of white_balance must be 3 positive levels. Got"):
        colour.white_balance(np.zeros((2, 2, 3), np.uint8), np.array([0.0, 255.0, 255.0]))


@pytest.mark.parametrize("pen", ["green", "blue", "black"])
def test_pen_mask_finds_ink_on_glass_by_its_colour(pen):
    glass = np.full((60, 200, 3), 245, np.uint8)
    inked = pen_stroke(glass, pen, 8, np.random.default_rng(0))
    coverage = stroke_coverage(glass.shape[:2], 8, np.random.default_rng(0))  # the same stroke
    masks = colour.pen_mask(colour.white_balance(inked, colour.glass_white(inked)))
    assert masks[pen][coverage > 0.99].all()  # its core, where the ink is as dense as the pen makes it
    assert all(not masks[other].any() for other in colour.PEN_COLOURS if other != pen)
    assert not any(m[coverage == 0].any() for m in masks.values())


def test_pen_mask_leaves_real_nuclei_and_dark_tissue_alone(glas15, lung):
    images = [_image(glas15, f"img_{i:04d}.png") for i in range(4)]
    images += [_image(lung, f"img_{i:04d}.jpg") for i in range(8)]
    for pixels in images:
        masks = colour.pen_mask(colour.white_balance(pixels, colour.glass_white(pixels)))
        # single pixels at most (JPEG noise at dark nuclei): hygiene keeps only strokes of them
        assert all(m.mean() < 0.01 for m in masks.values()), {k: m.mean() for k, m in masks.items()}


def _lung(lung, k=0):
    return _image(lung, sorted(p.name for p in (lung / "train_data").iterdir())[k])


def test_glass_is_found_on_a_slide_but_not_on_tissue_everywhere_nor_on_a_drawings_fill(glas15, lung):
    assert colour.find_glass(_image(glas15)) is not None
    assert colour.find_glass(_lung(lung, 9)[::2, ::2]) is None  # tile 9: tissue everywhere
    sky = np.zeros((60, 80, 3), np.uint8) + np.array([140, 200, 250], np.uint8)  # a drawing's flat sky-blue fill
    assert colour.find_glass(sky) is None  # bright and flat, but no colour a cast gives glass


@pytest.mark.parametrize("pen", ["green", "blue", "black"])
def test_ink_contrast_names_a_stroke_over_stained_tissue_whatever_the_cast(lung, pen):
    # a lung tile is tissue everywhere: the stroke's own colour is the tissue's plus the ink's (blue over eosin has
    # haematoxylin's hue); the OD it adds to its surroundings is the ink's, and a cast adds the same OD everywhere
    pixels = _lung(lung)[::5, ::5]  # the scale of a hygiene thumbnail
    coverage = stroke_coverage(pixels.shape[:2], 4, np.random.default_rng(1)) > 0.99
    for tinted in (pixels, cast(pixels, "green", 1.0), cast(pixels, "yellow", 1.5)):
        inked = pen_stroke(tinted, pen, 4, np.random.default_rng(1))
        masks = colour.ink_contrast(colour.optical_density(inked))
        assert masks[pen][coverage].mean() > 0.6, (pen, masks[pen][coverage].mean())
        others = sum(int(masks[other][coverage].sum()) for other in colour.PEN_COLOURS if other != pen)
        assert others < 0.2 * coverage.sum()
        plain = colour.ink_contrast(colour.optical_density(tinted))  # the tissue alone: nuclei add haematoxylin
        assert all(m.mean() < 0.01 for m in plain.values())


def test_a_thumbnails_blue_ink_over_tissue_is_ink_only_when_asked_and_bluer_than_haematoxylin():
    ink_over_tissue = np.array([[(45, 56, 153)]], np.uint8)  # OD hue 80, chroma 0.40: a made slide's blue band
    nuclei = np.array([[(100, 40, 140)]], np.uint8)  # OD hue 135, chroma 0.39: purple, haematoxylin's side
    hues = [float(colour.od_hue_and_chroma(colour.optical_density(p))[0][0, 0]) for p in (ink_over_tissue, nuclei)]
    assert colour.THUMBNAIL_VIOLET_HUE[0] <= hues[0] <= colour.THUMBNAIL_VIOLET_HUE[1] < hues[1]
    assert not colour.pen_mask(ink_over_tissue)["blue"].any()  # hygiene's rule (full resolution) is unchanged
    assert colour.pen_mask(ink_over_tissue, thumbnail_violet_chroma=0.3)["blue"].all()
    assert not colour.pen_mask(ink_over_tissue, thumbnail_violet_chroma=0.5)["blue"].any()
    assert not colour.pen_mask(nuclei, thumbnail_violet_chroma=0.1)["blue"].any()


@pytest.mark.parametrize("size", [3, 7])
def test_dilated_gives_scipys_binary_dilation_by_a_square(rng, size):
    from scipy.ndimage import binary_dilation

    for density in (0.01, 0.2, 0.7):
        mask = rng.random((37, 53)) < density
        mask[0, :3] = mask[-1, -2:] = True  # strokes at the edges: a border of 0, as scipy's
        expected = binary_dilation(mask, np.ones((3, 3), bool), iterations=(size - 1) // 2)
        np.testing.assert_array_equal(colour.dilated(mask, size), expected)


def test_optical_density_is_the_table_of_every_level():
    levels = np.arange(256, dtype=np.uint8).reshape(16, 16)
    expected = (-np.log10((levels + 1.0) / 256.0)).astype(np.float32)
    np.testing.assert_array_equal(colour.optical_density(levels), expected)
