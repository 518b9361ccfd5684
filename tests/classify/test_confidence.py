import json

import numpy as np
import pytest
from sklearn.metrics import f1_score

from pipeline.classify.confidence import _f1, bootstrap_ci, confidence_intervals, repeat_scores
from pipeline.classify.run import run_classification
from pipeline.classify.settings import ClassificationSettings
from pipeline.errors import ConfigError
from pipeline.report.run import classify_and_write
from pipeline.report.summary import format_summary
from tests.conftest import write_fake_cache


def test_vectorised_f1_matches_sklearn_with_a_class_that_is_only_predicted():
    rng = np.random.default_rng(0)
    y, p = rng.integers(0, 4, 300), rng.integers(0, 4, 300)
    y[y == 3] = 0  # class 3 only predicted, never true
    for metric, average in (("weighted_f1", "weighted"), ("macro_f1", "macro")):
        confusion = np.zeros((1, 4, 4))
        np.add.at(confusion, (0, y, p), 1)
        expected = f1_score(y, p, labels=[0, 1, 2, 3], average=average, zero_division=0)
        assert _f1(confusion, metric)[0] == pytest.approx(expected, abs=1e-12)


def test_each_replicate_is_the_sklearn_score_of_the_resampled_images():
    rng = np.random.default_rng(1)
    y, p, groups = rng.integers(0, 3, 60), rng.integers(0, 3, 60), rng.permutation(np.arange(60) % 20)
    # one replicate: the quantiles of a single score are that score
    low, high = bootstrap_ci(y, p, groups, n_boot=1, seed=5)
    draw = np.random.default_rng(5).integers(0, 20, size=20)  # the groups the replicate drew (ids are 0..19)
    images = np.concatenate([np.flatnonzero(groups == g) for g in draw])
    expected = f1_score(y[images], p[images], labels=[0, 1, 2], average="weighted", zero_division=0)
    assert low == pytest.approx(expected, abs=1e-12) and high == pytest.approx(expected, abs=1e-12)


def test_interval_is_seeded_and_wider_when_duplicates_are_resampled_together():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 3, 500)
    p = np.where(rng.random(500) < 0.8, y, rng.integers(0, 3, 500))
    low, high = bootstrap_ci(y, p, None, n_boot=500)
    assert low < f1_score(y, p, average="weighted") < high and high - low < 0.15
    assert bootstrap_ci(y, p, None, n_boot=500) == (low, high)
    # 50 images copied 10 times are 50 pieces of evidence, not 500
    y10, p10 = np.repeat(y[:50], 10), np.repeat(p[:50], 10)
    grouped = bootstrap_ci(y10, p10, np.repeat(np.arange(50), 10), n_boot=500)
    naive = bootstrap_ci(y10, p10, None, n_boot=500)
    assert grouped[1] - grouped[0] > 2 * (naive[1] - naive[0])
    with pytest.raises(ValueError, match="metric must be one of"):
        bootstrap_ci(y, p, None, metric="accuracy")
    out = confidence_intervals(y, p, np.arange(500), seed=0)
    assert set(out) == {"weighted_f1_ci95", "macro_f1_ci95"} and out["macro_f1_ci95"][0] < out["macro_f1_ci95"][1]


def test_repeat_scores_give_mean_and_sd():
    y = np.array([0, 1, 0, 1])
    out = repeat_scores(y, [y, 1 - y], [3, 4])
    assert out["repeats"] == 2 and out["repeat_seeds"] == [3, 4]
    assert out["weighted_f1_repeats"] == [1.0, 0.0] and out["weighted_f1_repeats_mean"] == 0.5
    assert out["weighted_f1_repeats_std"] == 0.5 and out["macro_f1_repeats_mean"] == 0.5


LABELS = ["a"] * 8 + ["b"] * 8 + ["c"] * 6


def test_metrics_json_and_summary_show_intervals_and_repeats(tmp_path):
    cache_dir, _ = write_fake_cache(tmp_path, LABELS, separation=0.6)  # overlapping classes: scores below 1
    settings = ClassificationSettings(features=cache_dir, head="logreg", folds=3, repeats=3, pictures=False,
                                      runs_root=tmp_path / "runs")
    result, run_dir = classify_and_write(settings)
    metrics = json.loads((run_dir / "metrics.json").read_text())
    low, high = metrics["weighted_f1_ci95"]
    assert low <= metrics["weighted_f1"] <= high and len(metrics["macro_f1_ci95"]) == 2
    assert metrics["repeats"] == 3 and metrics["repeat_seeds"] == [0, 1, 2]
    # the first repeat is the run itself; the others use new folds and new head seeds
    assert metrics["weighted_f1_repeats"][0] == pytest.approx(metrics["weighted_f1"])
    assert metrics["weighted_f1_repeats_mean"] == pytest.approx(np.mean(metrics["weighted_f1_repeats"]))
    text = format_summary(result, run_dir)
    assert f"[{low:.3f}, {high:.3f}]" in text and "repeated cross-validation (3 seeds: 0, 1, 2" in text
    # one repeat by default: the same intervals, no repeat keys
    single = run_classification(ClassificationSettings(features=cache_dir, head="logreg", folds=3))
    assert single.heads[0].metrics["weighted_f1_ci95"] == [low, high] and "repeats" not in single.heads[0].metrics


def test_repeats_must_be_positive(tmp_path):
    cache_dir, _ = write_fake_cache(tmp_path, LABELS)
    with pytest.raises(ConfigError, match="--repeats must be an int of at least 1. Got 0 instead."):
        run_classification(ClassificationSettings(features=cache_dir, head="logreg", folds=3, repeats=0))
