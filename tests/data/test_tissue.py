"""Tissue on thumbnails of made slides (benchmarks/slide_maker.py: known tissue and pen masks, from glas15 when
present): precision and recall, no pen, scanner casts, faded tissue, glass only, holes and specks."""

import numpy as np
import pytest

from benchmarks import slide_maker
from benchmarks.colour_variants import cast
from benchmarks.stain_variants import fade
from pipeline.data import tissue as tissue_module
from pipeline.data.slides import Slide
from pipeline.data.tissue import TissueSettings, detect_tissue, otsu_threshold, tissue_and_pen
from tests.conftest import SHARED_DATA

DOWNSAMPLE = 16  # the thumbnails below are the made slides' 1/16 level: 4 um/px at 0.25 um/px
THUMB_MPP = 0.25 * DOWNSAMPLE



@pytest.fixture(scope="module")
def made(tmp_path_factory, patches):
    """A 4096 x 4096 Aperio slide with green, blue and black strokes across its first piece: (thumbnail, layout)."""
    layout = slide_maker.default_layout(4096, 4096, patches, pens=("green", "blue", "black"))
    path = slide_maker.write_slide(tmp_path_factory.mktemp("tissue") / "pens.svs", layout, "aperio")
    with Slide(path) as slide:
        thumbnail = slide.thumbnail(4096 // DOWNSAMPLE)
    return thumbnail, layout


def _scores(found, layout):
    """(precision, recall, pen pixels found as tissue) against the layout's truth at the thumbnail's scale."""
    truth, pen = layout.tissue_mask(DOWNSAMPLE), layout.pen_mask(DOWNSAMPLE)
    precision = (found & truth).sum() / max(found.sum(), 1)
    recall = (found & truth & ~pen).sum() / (truth & ~pen).sum()
    return precision, recall, int((found & pen).sum())


@pytest.mark.parametrize("variant", ["plain", "green cast", "yellow cast", "strong yellow cast"])
def test_tissue_of_a_made_slide_is_found_without_glass_casts_or_pen(made, variant):
    thumbnail, layout = made
    picture = {
        "plain": thumbnail, "green cast": cast(thumbnail, "green", 1.0), "yellow cast": cast(thumbnail, "yellow", 1.0),
        "strong yellow cast": cast(thumbnail, "yellow", 1.5),
    }[variant]
    precision, recall, on_pen = _scores(detect_tissue(picture, THUMB_MPP), layout)
    assert precision >= 0.95 and recall >= 0.85, (precision, recall)
    assert on_pen == 0


@pytest.mark.parametrize("colour", ["green", "yellow"])
def test_a_cast_gives_the_same_mask(made, colour):
    thumbnail, _ = made
    plain = detect_tissue(thumbnail, THUMB_MPP)
    tinted = detect_tissue(cast(thumbnail, colour, 1.0), THUMB_MPP)
    assert (plain & tinted).sum() / (plain | tinted).sum() >= 0.95


@pytest.mark.parametrize("amount", [0.5, 0.7])
def test_pale_faded_tissue_is_still_found(made, amount):
    thumbnail, layout = made
    faded = fade(thumbnail, amount)  # 70%: the stain (and ink) 70% of the way to white
    precision, recall, _ = _scores(detect_tissue(faded, THUMB_MPP), layout)
    assert precision >= 0.95 and recall >= 0.85, (precision, recall)


def test_blue_ink_over_tissue_needs_the_thumbnails_own_violet_floor(made):
    """Blue ink over tissue has haematoxylin's hue; the full-resolution floor (1.9) would call it tissue."""
    thumbnail, layout = made
    blue = np.zeros(layout.pen_mask(DOWNSAMPLE).shape, bool)
    x, y, w, h, ink = layout.pens[1]
    assert ink == slide_maker.PEN_INKS["blue"]
    blue[y // DOWNSAMPLE : (y + h) // DOWNSAMPLE, x // DOWNSAMPLE : (x + w) // DOWNSAMPLE] = True
    full_resolution_rule = TissueSettings(violet_factor=1e6)
    assert (detect_tissue(thumbnail, THUMB_MPP, full_resolution_rule) & blue).sum() > 0.5 * blue.sum()
    found, pen = tissue_and_pen(thumbnail, THUMB_MPP)
    assert not (found & blue).any() and pen[blue].mean() == 1.0
    assert not (found & pen).any()


def test_glass_alone_gives_an_empty_mask(rng):
    noise = rng.integers(-3, 4, size=(200, 300, 3))
    glass = np.clip(np.array(slide_maker.GLASS) + noise, 0, 255).astype(np.uint8)
    for picture in (glass, cast(glass, "green", 1.5), cast(glass, "yellow", 1.5)):
        assert not detect_tissue(picture, THUMB_MPP).any()
        assert not detect_tissue(picture).any()  # without an MPP: areas as fractions of the picture
    stroke = glass.copy()
    stroke[90:100, 20:280] = slide_maker.PEN_INKS["green"]  # pen on bare glass is not tissue
    assert not detect_tissue(stroke, THUMB_MPP).any()


def test_holes_are_filled_up_to_a_size_and_specks_dropped(patches):
    settings = TissueSettings()
    side = 240
    piece = np.tile(patches[0][::DOWNSAMPLE, ::DOWNSAMPLE], (10, 10, 1))[:side, :side]
    picture = np.empty((400, 400, 3), np.uint8)
    picture[:] = slide_maker.GLASS
    picture[80:320, 80:320] = piece
    small_hole = int(np.sqrt(settings.max_hole_um2) / THUMB_MPP / 2)  # a quarter of the largest hole filled
    picture[120 : 120 + small_hole, 120 : 120 + small_hole] = slide_maker.GLASS
    picture[200:300, 200:300] = slide_maker.GLASS  # 400 x 400 um = 160,000 um^2 of glass: filled (limit 250,000)
    speck = int(np.sqrt(settings.min_area_um2) / THUMB_MPP / 2)  # a quarter of the smallest piece kept
    picture[20 : 20 + speck, 20 : 20 + speck] = piece[:speck, :speck]
    found = detect_tissue(picture, THUMB_MPP, settings)
    assert found[120 + small_hole // 2, 120 + small_hole // 2] and found[250, 250]
    assert not found[20 : 20 + speck, 20 : 20 + speck].any()
    bigger = TissueSettings(max_hole_um2=100_000.0)  # the 160,000 um^2 hole now stays glass
    assert not detect_tissue(picture, THUMB_MPP, bigger)[250, 250]


def test_otsu_splits_a_bimodal_sample(rng):
    sample = np.concatenate([rng.normal(0.02, 0.01, 5000), rng.normal(0.8, 0.1, 3000)])
    assert 0.1 < otsu_threshold(sample) < 0.6
    assert otsu_threshold(np.full(10, 0.3)) == 0.3


def test_bad_input_and_settings_are_refused():
    with pytest.raises(ValueError, match=r"needs an \(H, W, 3\) uint8 RGB picture. Got \(4, 4\)"):
        detect_tissue(np.zeros((4, 4), np.uint8))
    with pytest.raises(ValueError, match="MPP must be a positive number"):
        detect_tissue(np.zeros((4, 4, 3), np.uint8), mpp=0.0)
    with pytest.raises(ValueError, match="min_od <= max_od"):
        detect_tissue(np.zeros((4, 4, 3), np.uint8), settings=TissueSettings(min_od=0.2, max_od=0.1))
    with pytest.raises(ValueError, match="pen_margin must be >= 0"):
        TissueSettings(pen_margin=-1).validate()
    assert tissue_module.MIN_VIOLET_CHROMA == 1.9  # the floor a thumbnail's own is capped at


@pytest.mark.parametrize("folder", ["glas15", "lc25000-lung"])
def test_real_he_images_keep_their_tissue_and_have_no_pen(folder):
    """Real H&E at high magnification (no glass, dark nuclei): the nuclei are no pen stroke, most is tissue."""
    from PIL import Image

    paths = sorted((SHARED_DATA / folder / "train_data").glob("img_*"))[::2][:30]
    if not paths:
        pytest.skip(f"shared data {folder} is absent")
    shares, with_pen = [], 0
    for path in paths:
        with Image.open(path) as opened:
            picture = opened.convert("RGB")
        picture.thumbnail((256, 256))
        found, pen = tissue_and_pen(np.asarray(picture))
        shares.append(found.mean())
        with_pen += bool(pen.any())
    assert with_pen <= 0.05 * len(paths)  # measured: 0 of 12 glas15, 1 of 60 lc25000-lung
    assert np.median(shares) >= 0.75  # lung keeps its alveolar air spaces out (median 0.84)


def test_a_pen_circle_on_glass_around_tissue_encloses_no_glass(patches):
    """Pathologists ring regions with a marker: the ring is pen, the glass inside it stays glass."""
    picture = np.empty((300, 300, 3), np.uint8)
    picture[:] = slide_maker.GLASS
    picture[110:190, 110:190] = np.tile(patches[0][::DOWNSAMPLE, ::DOWNSAMPLE], (4, 4, 1))[:80, :80]
    y, x = np.ogrid[:300, :300]
    ring = np.abs(np.hypot(y - 150, x - 150) - 110) <= 4
    picture[ring] = slide_maker.PEN_INKS["green"]
    found, pen = tissue_and_pen(picture, THUMB_MPP)
    assert pen[ring].mean() > 0.95 and not (found & ring).any()
    between = (np.hypot(y - 150, x - 150) < 100) & ~(
        (np.abs(y - 150) < 45) & (np.abs(x - 150) < 45)
    )  # glass inside the ring, away from the piece
    assert not found[between].any()
    assert found[120:180, 120:180].mean() > 0.9
