import numpy as np
import pytest

from pipeline.classify.votes import vote
from pipeline.errors import ConfigError

# image 0: three tiles, image 1: one tile
PROBA = np.array([[0.6, 0.4], [0.6, 0.4], [0.0, 1.0], [0.3, 0.7]])
INDEX = np.array([0, 0, 0, 1])
COVERAGE = np.array([0.5, 0.5, 1.0, 0.8])


def test_mean():
    np.testing.assert_allclose(vote(PROBA, INDEX, 2, "mean"), [[0.4, 0.6], [0.3, 0.7]])


def test_majority_counts_top_classes_not_probabilities():
    result = vote(PROBA, INDEX, 2, "majority")
    assert result.argmax(axis=1).tolist() == [0, 1]  # two of three tiles say class 0, although the mean says 1
    np.testing.assert_allclose(result[0], [2 / 3, 1 / 3], atol=1e-5)
    np.testing.assert_allclose(result.sum(axis=1), 1.0)


def test_majority_tie_goes_to_higher_mean_probability():
    proba = np.array([[0.9, 0.1], [0.45, 0.55]])
    assert vote(proba, np.array([0, 0]), 1, "majority").argmax() == 0


def test_coverage_weights_tiles():
    # image 0: (0.5*0.6 + 0.5*0.6 + 1.0*0.0) / 2 = 0.3 for class 0
    np.testing.assert_allclose(vote(PROBA, INDEX, 2, "coverage", COVERAGE), [[0.3, 0.7], [0.3, 0.7]])


def test_coverage_with_all_zero_coverage_falls_back_to_mean():
    np.testing.assert_allclose(vote(PROBA[:3], INDEX[:3], 1, "coverage", np.zeros(3)), [[0.4, 0.6]])


def test_unknown_rule_and_image_without_tiles():
    with pytest.raises(ConfigError, match="--vote must be one of mean, majority, coverage. Got 'max' instead."):
        vote(PROBA, INDEX, 2, "max")
    with pytest.raises(ValueError, match="images without tiles"):
        vote(PROBA, INDEX, 3, "mean")
