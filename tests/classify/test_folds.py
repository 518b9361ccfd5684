import numpy as np
import pytest

from pipeline.classify.folds import make_folds
from pipeline.errors import ConfigError


def test_folds_keep_groups_whole_and_cover_every_image():
    rng = np.random.default_rng(0)
    labels = np.repeat([0, 1, 2], 30)
    groups = np.arange(90) // 3  # triplets of duplicates
    rng.shuffle(groups)
    folds = make_folds(labels, groups, 5, seed=0)
    assert set(folds.tolist()) == set(range(5))
    for group in np.unique(groups):
        assert len(set(folds[groups == group].tolist())) == 1
    np.testing.assert_array_equal(folds, make_folds(labels, groups, 5, seed=0))
    assert not np.array_equal(folds, make_folds(labels, groups, 5, seed=1))


def test_class_with_fewer_images_than_folds():
    labels = np.array(["a"] * 10 + ["b"] * 3)
    with pytest.raises(ConfigError, match=r"these have fewer: 'b' \(3\). Use --folds 3"):
        make_folds(labels, np.arange(13), 5, seed=0)


def test_too_few_groups_and_too_few_folds():
    with pytest.raises(ConfigError, match=r"Only 2 group\(s\) of distinct images for --folds 3 .* Use --folds 2 or"):
        make_folds(np.array([0, 0, 0, 1, 1, 1]), np.array([0, 0, 0, 1, 1, 1]), 3, seed=0)
    with pytest.raises(ConfigError, match=r"Only 1 group\(s\) .* for --folds 2 .* No --folds can work: check the "
                                          r"duplicate_group column of quality.csv"):
        make_folds(np.array([0, 0, 1, 1]), np.zeros(4, dtype=int), 2, seed=0)
    with pytest.raises(ConfigError, match="--folds must be at least 2. Got 1 instead."):
        make_folds(np.array([0, 1]), np.array([0, 1]), 1, seed=0)
