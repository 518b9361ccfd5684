"""Stage 2 computes and returns results; it writes nothing (the run folder is pipeline.report's job)."""

import numpy as np
import pytest

from pipeline import cache
from pipeline.classify.evaluation import predict_subset
from pipeline.classify.run import run_classification, run_name
from pipeline.classify.settings import ClassificationSettings
from pipeline.errors import ConfigError
from pipeline.report import run as report_run
from pipeline.report.run_folder import RUN_MARKER
from tests.conftest import write_fake_cache

LABELS = ["a"] * 8 + ["b"] * 8 + ["c"] * 6


def test_results_carry_every_prediction_and_nothing_is_written(tmp_path):
    cache_dir, _ = write_fake_cache(tmp_path / "features", LABELS, n_test=4)
    before = sorted(tmp_path.rglob("*"))
    result = run_classification(ClassificationSettings(features=cache_dir, head="logreg", folds=3,
                                                       runs_root=tmp_path / "runs"))
    assert sorted(tmp_path.rglob("*")) == before  # not a file, not a folder
    head = result.heads[0]
    assert head.oof_proba.shape == (len(LABELS), 3) and head.test_proba.shape == (4, 3)
    assert len(head.test_tile_proba) == len(result.test.embeddings)
    # the test tile probabilities that vote maps draw are the final model's own
    out = predict_subset(head.classifier.head, result.test, np.arange(4), 3, head.classifier.scheme)
    np.testing.assert_allclose(head.test_tile_proba, out.tile_proba)
    np.testing.assert_allclose(head.test_proba, out.image_proba)
    assert result.run_name == f"data_{cache_dir.name}_logreg"


def test_run_name_says_which_data_folder_it_came_from(tmp_path):
    assert run_name(tmp_path / "c_fp32", {"data_dir": "/x/glas15"}, "mlp") == "glas15_c_fp32_mlp"


def test_an_existing_out_folder_is_refused_before_any_training(tmp_path, monkeypatch):
    cache_dir, _ = write_fake_cache(tmp_path / "features", LABELS)
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / RUN_MARKER).write_text("")

    def never(settings):
        raise AssertionError("trained before checking --out")

    monkeypatch.setattr(report_run, "run_classification", never)
    with pytest.raises(ConfigError, match="Run folder '.*taken' already exists"):
        report_run.classify_and_write(ClassificationSettings(features=cache_dir, out=tmp_path / "taken"))


def test_the_cache_of_the_data_folder_is_found_among_several(tmp_path):
    root = tmp_path / "features"
    first, _ = write_fake_cache(root / cache.data_key(tmp_path / "a"), LABELS, name="m_fp32")
    second, _ = write_fake_cache(root / cache.data_key(tmp_path / "b"), LABELS, name="m_fp32")
    for folder, data in ((first, "a"), (second, "b")):
        settings = cache.read_settings(folder)
        cache.write_json(folder / cache.SETTINGS_FILE, {**settings, "data_dir": str((tmp_path / data).resolve())})
    assert cache.resolve_cache(root, tmp_path / "b") == second
    assert cache.resolve_cache(root, tmp_path / "a") == first
