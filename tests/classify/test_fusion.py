"""Several caches of the same images in one run: each cache alone on the same folds, and the fusion."""

import numpy as np
import pytest
from sklearn.metrics import f1_score

from pipeline import cache
from pipeline.cache import store
from pipeline.classify.classifier import FusedClassifier, load_classifier
from pipeline.classify.evaluation import Scheme, cross_validate
from pipeline.classify.fusion import cache_labels, fused_run_name
from pipeline.classify.run import run_classification
from pipeline.classify.settings import ClassificationSettings
from pipeline.errors import CacheError, ConfigError
from pipeline.heads.registry import make_head
from tests.conftest import write_fake_cache

LABELS = ["a"] * 8 + ["b"] * 8 + ["c"] * 6


def two_caches(root, n_test=4, **kwargs):
    """Two caches of the same images: "encoder" A (16-d) and "encoder" B (24-d, other seed and checksum)."""
    first, _ = write_fake_cache(root, LABELS, n_test=n_test, separation=0.8, name="encA_t224_s224_fp32", **kwargs)
    second, _ = write_fake_cache(root, LABELS, n_test=n_test, separation=0.8, seed=1, dim=24, model_checksum="def",
                                 name="encB_t224_s224_fp32", **kwargs)
    return first, second


def _settings(features, **kwargs):
    return ClassificationSettings(**{"features": features, "head": "logreg", "folds": 3, **kwargs})


def _rewrite(path, **attrs):
    item = store.read_image_features(path)
    store.write_image_features(path, item.features, item.coords, item.coverage, {**item.attrs, **attrs})


def test_late_fusion_averages_members_that_equal_single_cache_runs(tmp_path):
    first, second = two_caches(tmp_path)
    result = run_classification(_settings((first, second), repeats=2))
    fused = result.heads[0]
    assert result.fusion.mode == "late" and result.fusion.cache_dirs == [first, second]
    assert result.fusion.labels == ["encA_t224_s224_fp32", "encB_t224_s224_fp32"]
    for member, cache_dir in zip(fused.members, (first, second), strict=True):
        alone = run_classification(_settings(cache_dir, repeats=2)).heads[0]
        assert member.metrics == alone.metrics  # the same folds, the same head, the same scores
        np.testing.assert_array_equal(member.oof_proba, alone.oof_proba)
        np.testing.assert_array_equal(member.test_proba, alone.test_proba)
    np.testing.assert_array_equal(fused.folds, fused.members[0].folds)
    np.testing.assert_allclose(fused.oof_proba, (fused.members[0].oof_proba + fused.members[1].oof_proba) / 2)
    np.testing.assert_allclose(fused.test_proba, (fused.members[0].test_proba + fused.members[1].test_proba) / 2)
    # the fused scores are those of the averaged probabilities, repeats included
    labels = result.labels
    assert fused.metrics["weighted_f1"] == pytest.approx(f1_score(labels, fused.oof_proba.argmax(1),
                                                                  average="weighted"))
    repeat = (fused.members[0].repeat_proba[0] + fused.members[1].repeat_proba[0]) / 2
    assert fused.metrics["weighted_f1_repeats"] == pytest.approx(
        [fused.metrics["weighted_f1"], f1_score(labels, repeat.argmax(1), average="weighted")])
    assert len(fused.metrics["weighted_f1_ci95"]) == 2 and len(fused.metrics["weighted_f1_folds"]) == 3
    # the fused model predicts the test images of both caches as the run did
    classifier = fused.classifier
    assert isinstance(classifier, FusedClassifier) and classifier.mode == "late"
    tests = [cache.load_split(folder, "test") for folder in (first, second)]
    np.testing.assert_array_equal(classifier.predict_proba(tests), fused.test_proba)
    assert result.run_name == "data_fused-late_logreg_encA+encB"


def test_concat_fits_one_head_on_the_pooled_features_side_by_side(tmp_path):
    first, second = two_caches(tmp_path)
    result = run_classification(_settings((first, second), fusion="concat", level="image", pool=("mean", "max")))
    fused = result.heads[0]
    assert fused.classifier.mode == "concat" and fused.classifier.scheme == Scheme("image", "mean", ("mean", "max"))
    for member, cache_dir in zip(fused.members, (first, second), strict=True):  # each alone, at image level
        alone = run_classification(_settings(cache_dir, level="image", pool=("mean", "max"))).heads[0]
        assert member.metrics == alone.metrics
    sets = [cache.load_split(folder, "train") for folder in (first, second)]
    joined = cache.concat_image_features(sets, ("mean", "max"))
    assert joined.embeddings.shape == (len(LABELS), (16 + 24) * 2)
    cv = cross_validate(lambda: make_head("logreg", class_weight="balanced", seed=0), joined, result.labels,
                        np.arange(len(LABELS)), fused.folds, Scheme("image"), 3)
    np.testing.assert_allclose(fused.oof_proba, cv.proba)
    tests = [cache.load_split(folder, "test") for folder in (first, second)]
    np.testing.assert_array_equal(fused.classifier.predict_proba(tests), fused.test_proba)
    # the vote maps' tile arrays are the first cache's
    assert len(fused.oof_tile_proba) == len(result.train.embeddings)


def test_a_fused_model_saves_and_loads(tmp_path):
    first, second = two_caches(tmp_path)
    for kwargs in ({}, {"fusion": "concat", "level": "image"}):
        fused = run_classification(_settings((first, second), **kwargs)).heads[0]
        folder = tmp_path / f"model_{kwargs.get('fusion', 'late')}"
        fused.classifier.save(folder)
        loaded = load_classifier(folder)
        assert isinstance(loaded, FusedClassifier) and loaded.mode == fused.classifier.mode
        assert loaded.scheme == fused.classifier.scheme and loaded.classes == ["a", "b", "c"]
        tests = [cache.load_split(f, "test") for f in (first, second)]
        np.testing.assert_array_equal(loaded.predict_proba(tests), fused.test_proba)
        assert loaded.predict(tests) == [loaded.classes[i] for i in fused.test_proba.argmax(1)]
        with pytest.raises(CacheError, match="Cache 1 of 2 was made with other settings than the model's cache 1"):
            loaded.predict_proba(tests[::-1])
        with pytest.raises(CacheError, match="This model fuses 2 caches; got 1"):
            loaded.predict_proba(tests[:1])


@pytest.mark.slow  # abmil on two caches
def test_a_bag_head_fuses_late(tmp_path):
    first, second = two_caches(tmp_path, tiles_per_image=3)
    fused = run_classification(_settings((first, second), head="abmil")).heads[0]
    assert [m.classifier.scheme.level for m in fused.members] == ["bag", "bag"]
    np.testing.assert_allclose(fused.oof_proba, np.mean([m.oof_proba for m in fused.members], axis=0))
    assert fused.oof_tile_attention is fused.members[0].oof_tile_attention


def test_an_image_missing_from_one_cache_is_named(tmp_path):
    first, second = two_caches(tmp_path)
    (second / "train" / "img_0005.h5").unlink()
    with pytest.raises(CacheError) as caught:
        run_classification(_settings((first, second)))
    message = str(caught.value)
    assert f"train/img_0005 is in '{first}' but missing from '{second}'" in message and "\n" not in message
    # an extra image in the second cache is named too, and a missing test image
    first, second = two_caches(tmp_path / "again")
    (first / "test" / "img_0002.h5").unlink()
    with pytest.raises(CacheError, match=f"test/img_0002 is in '{second}' but missing from '{first}'"):
        run_classification(_settings((first, second)))


def test_an_image_skipped_by_one_extraction_says_so(tmp_path):
    first, second = two_caches(tmp_path)
    (second / "train" / "img_0003.h5").unlink()
    cache.write_json(second / cache.SKIPPED_FILE, {"train/img_0003": {"sample_index": "img_0003.png",
                                                                      "reason": "unreadable"}})
    with pytest.raises(CacheError, match=r"missing from .*\(extraction skipped it there: unreadable\)"):
        run_classification(_settings((first, second)))


@pytest.mark.parametrize("key", ["image_sha256", "pixels_xxh3"])
def test_another_image_under_the_same_id_is_refused(tmp_path, key):
    first, second = two_caches(tmp_path)
    _rewrite(second / "train" / "img_0007.h5", **{key: "something else"})
    with pytest.raises(CacheError, match=f"train/img_0007 is a different image in '{first}' and '{second}' "
                                         rf"\({key} differs\)"):
        run_classification(_settings((first, second)))


def test_concat_refuses_tiles_and_bags_and_fusion_names_are_checked(tmp_path):
    first, second = two_caches(tmp_path)
    cases = [
        ({"fusion": "concat"}, "--fusion concat joins image-level features (each cache's tiles pooled per image); "
                               "--level tile trains on tiles"),
        ({"fusion": "concat", "level": "image", "head": "abmil"}, "--head abmil takes each image as a bag of tiles"),
        ({"fusion": "early"}, "--fusion must be one of late, concat. Got 'early' instead."),
    ]
    for kwargs, expected in cases:
        with pytest.raises(ConfigError) as caught:
            run_classification(_settings((first, second), **kwargs))
        assert expected in str(caught.value) and "\n" not in str(caught.value)


def test_concat_leaves_bag_heads_out_of_head_all(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr("pipeline.classify.settings.HEAD_NAMES", ("logreg", "abmil"))  # the others add time only
    first, second = two_caches(tmp_path)
    result = run_classification(_settings((first, second), fusion="concat", level="image", head="all"))
    assert [run.name for run in result.heads] == ["logreg"]
    assert "--fusion concat joins image-level features: abmil (bags of tiles) left out" in caplog.text


def test_fusion_with_one_cache_is_a_plain_run_with_a_warning(tmp_path, caplog):
    first, _ = two_caches(tmp_path)
    result = run_classification(_settings(first, fusion="concat"))
    assert result.fusion is None and result.heads[0].members == []
    assert "--fusion concat is ignored: it combines several --features caches, and one was given." in caplog.text


def test_the_same_cache_twice_is_refused(tmp_path):
    first, _ = two_caches(tmp_path)
    with pytest.raises(ConfigError, match="hold embeddings of the same encoder and tiling settings"):
        run_classification(_settings((first, first)))


def test_names_of_caches_and_runs():
    assert fused_run_name("glas15", ["x/eff_t224_s224_c0.50_n0_fp32", "x/eff_t448_s448_c0.50_n0_fp32"], "late",
                          "mlp") == "glas15_fused-late_mlp_t224_s224+t448_s448"
    assert fused_run_name("d", ["a/m_t224", "a/other_model_t224"], "concat", "lgbm") == \
        "d_fused-concat_lgbm_m_t224+other_model_t224"
    assert cache_labels(["r/a/m", "r/b/m"]) == ["a/m", "b/m"]
    assert cache_labels(["r/a/m", "r/a/n"]) == ["m", "n"]


def test_a_cache_from_before_xxh3_fuses_with_a_newer_one_and_its_own_kind_is_compared(tmp_path):
    first, second = two_caches(tmp_path)
    for path in sorted((first / "train").glob("*.h5")):  # the first cache written before pixels_xxh3
        item = store.read_image_features(path)
        attrs = {key: value for key, value in item.attrs.items() if key != "pixels_xxh3"}
        store.write_image_features(path, item.features, item.coords, item.coverage,
                                   {**attrs, "pixels_sha256": "s" + attrs["image_id"]})
    assert run_classification(_settings((first, second))).fusion.mode == "late"
    _rewrite(second / "train" / "img_0007.h5", pixels_sha256="something else")
    with pytest.raises(CacheError, match=r"train/img_0007 is a different image .*\(pixels_sha256 differs\)"):
        run_classification(_settings((first, second)))
