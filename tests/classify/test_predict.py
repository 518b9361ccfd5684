import numpy as np
import pytest

from pipeline.classify.predict import find_model, predict_cache
from pipeline.classify.settings import ClassificationSettings
from pipeline.errors import ModelLoadError
from pipeline.report.run import classify_and_write
from tests.conftest import write_fake_cache

LABELS = ["a"] * 8 + ["b"] * 8 + ["c"] * 6


@pytest.mark.slow  # every head fitted and reloaded
def test_a_saved_model_gives_the_runs_test_probabilities(tmp_path):
    cache_dir, _ = write_fake_cache(tmp_path, LABELS, n_test=5)
    result, run_dir = classify_and_write(ClassificationSettings(
        features=cache_dir, head="all", folds=3, pictures=False, out=tmp_path / "run"))
    for run in result.heads:
        for folder in (run_dir / "heads" / run.name, run_dir / "heads" / run.name / "model"):
            new = predict_cache(folder, cache_dir)
            assert new.classifier.head_name == run.name and new.classifier.fill_class == "a"
            np.testing.assert_array_equal(new.proba, run.test_proba)
    assert find_model(run_dir) == run_dir / "model"
    with pytest.raises(ModelLoadError, match="holds no saved model"):
        find_model(tmp_path)
