import logging
import re

import numpy as np
import pytest
import torch

from pipeline.errors import ConfigError
from pipeline.heads.mlp import MLPHead, build_network, inner_split


def grouped_data(seed: int, n_groups: int = 60, per_group: int = 6, dim: int = 16, n_classes: int = 3):
    """Rows in groups (images) that share a label and an offset, classes separable on the first dimensions."""
    rng = np.random.default_rng(seed)
    group_labels = rng.integers(0, n_classes, size=n_groups)
    groups = np.repeat(np.arange(n_groups) * 7 + 100, per_group)  # non-contiguous ids
    labels = np.repeat(group_labels, per_group)
    means = np.zeros((n_classes, dim))
    means[np.arange(n_classes), np.arange(n_classes)] = 3.0
    offsets = np.repeat(rng.normal(0.0, 0.5, size=(n_groups, dim)), per_group, axis=0)
    X = means[labels] + offsets + rng.normal(size=(len(labels), dim))
    return X.astype(np.float32), labels, groups


def test_inner_split_keeps_groups_whole_and_stratifies():
    _, y, groups = grouped_data(0, n_groups=80)
    train, val = inner_split(y, groups, 0.25, seed=3)
    assert train.dtype == bool and val.dtype == bool and not (train & val).any() and (train | val).all()
    assert set(groups[train]).isdisjoint(groups[val])
    assert set(y[val]) == set(y[train]) == {0, 1, 2}
    assert 0.15 < len(set(groups[val])) / 80 < 0.35
    again_train, again_val = inner_split(y, groups, 0.25, seed=3)
    np.testing.assert_array_equal(again_val, val)
    assert not np.array_equal(inner_split(y, groups, 0.25, seed=4)[1], val)


def test_inner_split_with_mixed_groups_assigns_each_group_to_one_side():
    rng = np.random.default_rng(1)
    groups = rng.integers(0, 30, size=300)
    y = rng.integers(0, 2, size=300)  # groups hold both classes
    train, val = inner_split(y, groups, 0.2, seed=0)
    assert val.any() and set(groups[train]).isdisjoint(groups[val])


def test_inner_split_gives_up_with_too_few_groups_per_class():
    y = np.array([0, 0, 1, 1, 1, 1])
    groups = np.array([1, 1, 2, 2, 3, 3])  # class 0 lives in a single group
    train, val = inner_split(y, groups, 0.2, seed=0)
    assert train.all() and not val.any()


def test_fit_without_a_possible_split_trains_fixed_epochs_and_logs(caplog):
    X, y, _ = grouped_data(2, n_groups=20)
    groups = np.where(y == 0, 0, 1 + np.arange(len(y)) % 5)
    with caplog.at_level(logging.WARNING, logger="pipeline.heads.mlp"):
        head = MLPHead(n_jobs=1, max_epochs=7).fit(X, y, groups=groups)
    assert head.n_epochs_ == 7 and head.best_epoch_ == 7
    assert "without early stopping" in caplog.text


def test_early_stopping_keeps_the_best_epoch():
    rng = np.random.default_rng(3)
    X = rng.normal(size=(300, 32)).astype(np.float32)
    y = rng.integers(0, 2, size=300)  # pure noise: validation loss stops improving quickly
    head = MLPHead(n_jobs=1, hidden_dims=(64,), max_epochs=200, patience=3).fit(X, y, groups=np.arange(300) // 3)
    assert 1 <= head.best_epoch_ <= head.n_epochs_ - 3 and head.n_epochs_ < 200


def test_fit_learns_grouped_data_and_is_reproducible():
    X, y, groups = grouped_data(4)
    head = MLPHead(n_jobs=1, seed=5).fit(X[:300], y[:300], groups=groups[:300])
    assert (head.predict(X[300:]) == y[300:]).mean() > 0.9
    same = MLPHead(n_jobs=1, seed=5).fit(X[:300], y[:300], groups=groups[:300])
    np.testing.assert_array_equal(same.predict_proba(X), head.predict_proba(X))
    other = MLPHead(n_jobs=1, seed=6).fit(X[:300], y[:300], groups=groups[:300])
    assert not np.array_equal(other.predict_proba(X), head.predict_proba(X))


def test_fit_leaves_global_torch_state_alone():
    X, y, groups = grouped_data(5, n_groups=20)
    torch.manual_seed(123)
    rng_state, threads = torch.get_rng_state(), torch.get_num_threads()
    head = MLPHead(n_jobs=1, max_epochs=3).fit(X, y, groups=groups)
    head.predict_proba(X)
    MLPHead.from_state(*head.to_state())
    assert torch.equal(torch.get_rng_state(), rng_state) and torch.get_num_threads() == threads


def test_two_hidden_layers_relu_and_state_round_trip():
    X, y, groups = grouped_data(6, n_groups=30)
    head = MLPHead(n_jobs=1, hidden_dims=(32, 16), activation="relu", dropout=0.0, max_epochs=5).fit(
        X, y, groups=groups
    )
    meta, arrays = head.to_state()
    assert meta["params"]["hidden_dims"] == [32, 16] and all(a.dtype != object for a in arrays.values())
    assert {"net.0.weight", "net.3.weight", "net.6.bias", "mean", "std", "classes"} <= set(arrays)
    loaded = MLPHead.from_state(meta, arrays)
    assert loaded.hidden_dims == (32, 16) and loaded.n_epochs_ == head.n_epochs_
    np.testing.assert_array_equal(loaded.predict_proba(X), head.predict_proba(X))


def test_constant_features_stay_finite():
    X, y, groups = grouped_data(7, n_groups=20)
    X[:, 5] = 2.0
    proba = MLPHead(n_jobs=1, max_epochs=3).fit(X, y, groups=groups).predict_proba(X)
    assert np.isfinite(proba).all()


def test_build_network_shapes():
    network = build_network(10, (8,), 4, "gelu", 0.1)
    assert network(torch.zeros(3, 10)).shape == (3, 4)
    assert build_network(10, (), 2, "relu", 0.0)(torch.zeros(1, 10)).shape == (1, 2)


@pytest.mark.parametrize(
    "params, message",
    [
        ({"dropout": 1.0}, "The 'dropout' parameter of MLPHead must be a float in the range [0.0, 1.0). Got 1.0"),
        ({"lr": 0}, "The 'lr' parameter of MLPHead must be a float in the range (0.0, inf). Got 0 instead."),
        ({"batch_size": 2.5}, "The 'batch_size' parameter of MLPHead must be an int in the range [1, inf). Got 2.5"),
        (
            {"validation_fraction": 1},
            "The 'validation_fraction' parameter of MLPHead must be a float in the range (0.0, 1.0)",
        ),
        (
            {"hidden_dims": (64, 0)},
            "The 'hidden_dims' parameter of MLPHead must be a tuple of positive ints. Got (64, 0)",
        ),
        (
            {"activation": "tanh"},
            "The 'activation' parameter of MLPHead must be a str among {",
        ),
    ],
)
def test_invalid_parameters_raise_config_error(params, message):
    X, y, groups = grouped_data(8, n_groups=10)
    with pytest.raises(ConfigError, match=re.escape(message)):
        MLPHead(**params).fit(X, y, groups=groups)


def test_groups_must_match_rows():
    X, y, groups = grouped_data(9, n_groups=10)
    with pytest.raises(ValueError, match="groups must have shape"):
        MLPHead(n_jobs=1).fit(X, y, groups=groups[:-1])
