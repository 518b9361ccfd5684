"""The colour variants of benchmarks/colour_variants.py: casts scale channels, strokes add ink in optical density."""

import numpy as np
import pytest

from benchmarks import colour_variants as variants
from benchmarks import stain_variants
from benchmarks.calibrate_quality import attributes
from pipeline.hygiene.settings import QualitySettings
from tests.hygiene.test_stain import h_and_e


def test_cast_scales_each_channel_by_its_gain():
    white = np.full((4, 4, 3), 250, np.uint8)
    assert variants.cast(white, "green", 1.0)[0, 0].tolist() == [200, 250, 212]
    assert variants.cast(white, "grey", 0.0)[0, 0].tolist() == [250, 250, 250]
    with pytest.raises(ValueError, match="'colour' parameter of cast must be one of"):
        variants.cast(white, "purple", 1.0)


def test_strokes_are_seeded_and_darken_only_along_the_curve():
    tissue = h_and_e(np.random.default_rng(0))
    first = variants.pen_stroke(tissue, "blue", 8, np.random.default_rng(4))
    assert np.array_equal(first, variants.pen_stroke(tissue, "blue", 8, np.random.default_rng(4)))
    coverage = variants.stroke_coverage(tissue.shape[:2], 8, np.random.default_rng(4))
    assert coverage.min() == 0.0 and coverage.max() == pytest.approx(1.0)
    # about 8 px wide across the 300 px image (longer when it waves)
    assert 8 * 300 * 0.9 < coverage.sum() < 8 * 300 * 1.6
    assert np.array_equal(first[coverage == 0], tissue[coverage == 0])
    assert (first[coverage > 0.5].astype(int) <= tissue[coverage > 0.5]).all()  # ink absorbs: never brighter
    with pytest.raises(ValueError, match="'colour' parameter of pen_stroke must be one of"):
        variants.pen_stroke(tissue, "red", 8, np.random.default_rng(0))


def test_every_variant_is_named_once():
    names = [name for name, *_ in variants.make_variants()]
    assert len(names) == len(set(names)) == 5 * 3 + 2 + 3 * 3


def test_a_stroke_given_a_mask_crosses_its_tissue_for_a_real_length():
    # a mask on the top-left corner only: the first curves (centred at 30-70% of the height) mostly miss it
    mask = np.zeros((200, 300), dtype=bool)
    mask[:70, :120] = True
    masked = []
    for seed in range(5):
        plain = variants.stroke_coverage(mask.shape, 3, np.random.default_rng(seed))
        crossing = variants.stroke_coverage(mask.shape, 3, np.random.default_rng(seed), mask)
        assert np.array_equal(crossing, variants.stroke_coverage(mask.shape, 3, np.random.default_rng(seed), mask))
        assert crossing[mask].sum() / mask.sum() >= 0.8 * variants.MIN_MASKED_INK  # anti-aliasing thins its edges
        masked.append(plain[mask].sum() / mask.sum())
    assert min(masked) < variants.MIN_MASKED_INK  # without the mask some strokes graze it
    # a mask no curve can cross enough of still gets the draw that crosses the most, not an error
    corner = np.zeros((200, 300), dtype=bool)
    corner[:3, :3] = True
    assert variants.stroke_coverage(corner.shape, 3, np.random.default_rng(0), corner).max() > 0


def test_the_clean_sweep_starts_with_the_originals_and_names_each_false_flag_with_its_score():
    names = [name for name, *_ in variants.make_variants(originals=True)]
    assert names[0] == "original" and names[1:] == [name for name, *_ in variants.make_variants()]
    mask = np.full((200, 300), 255, np.uint8)
    originals = [attributes(h_and_e(np.random.default_rng(seed)), mask) for seed in range(3)]
    inked = stain_variants.green_blob(h_and_e(np.random.default_rng(3)), mask, radius_fraction=0.1)
    row = variants.evaluate("a clean variant", None, originals, [attributes(inked, mask)], QualitySettings())
    assert row["false_flags"] == 1 and [i for i, _ in row["false_images"]] == [3]
    assert row["false_images"][0][1] == {"green_ink": round(row["worst_clean"]["q_green_ink_fraction"], 4)}
