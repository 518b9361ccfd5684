"""The stain variants the hygiene tests and the calibration are built on: seeded, in range, invertible."""

import numpy as np
import pytest

from benchmarks import stain_variants as variants
from tests.hygiene.test_stain import h_and_e


def test_variants_are_seeded_sized_and_checked():
    tissue = h_and_e(np.random.default_rng(0))
    mask = np.full(tissue.shape[:2], 255, np.uint8)
    for kind in variants.VARIANT_KINDS + variants.STRESS_KINDS:
        first = variants.stain_variant(kind, tissue, mask, np.random.default_rng(3))
        second = variants.stain_variant(kind, tissue, mask, np.random.default_rng(3))
        assert np.array_equal(first[0], second[0]) and first[2] == second[2], kind
        assert max(first[0].shape[:2]) in variants.SIZES and first[0].shape[:2] == first[1].shape
    with pytest.raises(ValueError, match="'kind' parameter of stain_variant must be one of"):
        variants.stain_variant("sepia", tissue, mask, np.random.default_rng(0))


def test_parameters_stay_in_the_issues_ranges():
    tissue = h_and_e(np.random.default_rng(0))
    mask = np.full(tissue.shape[:2], 255, np.uint8)
    rng = np.random.default_rng(1)
    for _ in range(20):
        assert 0.3 <= variants.stain_variant("desaturated", tissue, mask, rng)[2]["saturation"] <= 0.6
        assert 0.3 <= variants.stain_variant("faded", tissue, mask, rng)[2]["amount"] <= 0.5
        assert all(0.6 <= s <= 1.4 for s in variants.stain_variant("hed_jitter", tissue, mask, rng)[2]["scales"])
        assert 40 <= variants.stain_variant("jpeg", tissue, mask, rng)[2]["quality"] <= 50


def test_colour_conversions():
    tissue = h_and_e(np.random.default_rng(0))
    assert np.array_equal(variants.hed_to_rgb(variants.rgb_to_hed(tissue, clip=False)), tissue)
    assert np.array_equal(variants.hsv_to_rgb(variants.rgb_to_hsv(tissue)), tissue)
    # haematoxylin alone: the first Ruifrok-Johnston vector, so only the H concentration is non-zero
    hed = variants.rgb_to_hed(variants.hed_to_rgb(np.array([[[0.5, 0.0, 0.0]]])))
    assert hed[0, 0, 0] == pytest.approx(0.5, abs=0.02) and abs(hed[0, 0, 1:]).max() < 0.02
    assert (variants.fade(tissue, 1.0) == 255).all() and np.array_equal(variants.fade(tissue, 0.0), tissue)
