import json
import re
import subprocess
import sys

import numpy as np
import pytest
from sklearn.exceptions import NotFittedError
from sklearn.metrics import f1_score, recall_score

from pipeline.errors import ConfigError, ModelLoadError
from pipeline.heads import HEAD_NAMES, load_head, make_head, save_head
from pipeline.heads.base import balanced_class_weights
from pipeline.heads.lgbm import LGBMHead
from pipeline.heads.logreg import LogRegHead

# Fits run with n_jobs=1: on a few hundred rows a second OpenMP thread only adds wake-ups (conftest.py sets
# OMP_WAIT_POLICY=PASSIVE), which made single LightGBM tests take seconds.


def clusters(seed: int, n: int = 400, dim: int = 32, priors=(0.4, 0.35, 0.25), spread: float = 1.0):
    """Gaussian clusters with unit noise whose means lie ``spread`` apart per dimension on 4 dimensions."""
    rng = np.random.default_rng(seed)
    y = rng.choice(len(priors), size=n, p=np.array(priors) / sum(priors))
    means = np.zeros((len(priors), dim))
    means[:, :4] = rng.normal(0.0, spread, size=(len(priors), 4))
    return (means[y] + rng.normal(size=(n, dim))).astype(np.float32), y


# abmil fits a 3-member ensemble of attention networks: several seconds per fit, so its learning tests run in the
# full suite only (the quick lane keeps its contract tests below and tests/heads/test_abmil.py)
LEARNING_HEADS = [pytest.param(name, marks=pytest.mark.slow) if name == "abmil" else name for name in HEAD_NAMES]


def separable(seed: int, n: int = 400, n_classes: int = 3, dim: int = 32):
    rng = np.random.default_rng(seed)
    y = rng.integers(0, n_classes, size=n)
    means = np.zeros((n_classes, dim))
    means[np.arange(n_classes), np.arange(n_classes)] = 6.0
    return (means[y] + rng.normal(size=(n, dim))).astype(np.float32), y


@pytest.mark.parametrize("name", LEARNING_HEADS)
def test_separable_clusters_reach_high_weighted_f1(name):
    X, y = separable(0, n=600)
    head = make_head(name, n_jobs=1).fit(X[:400], y[:400])
    assert f1_score(y[400:], head.predict(X[400:]), average="weighted") > 0.9


def minority_data(seed: int, n: int):
    # Class 2 holds 10% of rows and its mean sits between the other two, so an unweighted fit mostly ignores it.
    rng = np.random.default_rng(seed)
    y = rng.choice(3, size=n, p=[0.45, 0.45, 0.10])
    means = np.zeros((3, 8))
    means[0, 0], means[1, 0], means[2, 1] = -1.5, 1.5, 1.0
    return (means[y] + rng.normal(size=(n, 8))).astype(np.float32), y


@pytest.mark.parametrize("name", LEARNING_HEADS)
def test_balanced_class_weight_raises_minority_recall(name):
    X, y = minority_data(1, n=1500)
    recalls = {}
    for class_weight in ("balanced", None):
        head = make_head(name, n_jobs=1, class_weight=class_weight).fit(X[:1000], y[:1000])
        recalls[class_weight] = recall_score(y[1000:], head.predict(X[1000:]), labels=[2], average=None)[0]
    assert recalls["balanced"] > recalls[None] + 0.1


def test_balanced_class_weights_follow_sklearn():
    y_idx = np.array([0, 0, 0, 1])
    np.testing.assert_allclose(balanced_class_weights(y_idx, 2), [4 / 6, 4 / 2])


@pytest.mark.parametrize("name", LEARNING_HEADS)
def test_sample_weight_multiplies_class_weight(name):
    X, y = clusters(2, n=300)
    weights = balanced_class_weights(y, 3)[y]
    balanced = make_head(name, n_jobs=1).fit(X, y).predict_proba(X)
    by_hand = make_head(name, n_jobs=1, class_weight=None).fit(X, y, sample_weight=weights).predict_proba(X)
    with_ones = make_head(name, n_jobs=1).fit(X, y, sample_weight=np.ones(len(y))).predict_proba(X)
    if name != "logreg":  # logreg standardises with the sample weights too (a weight-2 row counts as two rows)
        np.testing.assert_allclose(by_hand, balanced, atol=1e-6)
    np.testing.assert_allclose(with_ones, balanced, rtol=0, atol=1e-12)
    with pytest.raises(ValueError, match="sample_weight"):
        make_head(name, n_jobs=1).fit(X, y, sample_weight=np.ones(3))


@pytest.mark.parametrize("name", LEARNING_HEADS)
@pytest.mark.parametrize("labels", [(0, 1), ("b", "c", "a"), (3, 10, 7)])
def test_predict_proba_columns_follow_classes(name, labels):
    X, y_idx = separable(3, n=300, n_classes=len(labels))
    y = np.array(labels)[y_idx]
    head = make_head(name, n_jobs=1).fit(X, y)
    proba = head.predict_proba(X[:50])
    np.testing.assert_array_equal(head.classes_, np.sort(np.array(labels)))
    assert proba.shape == (50, len(labels)) and proba.dtype == np.float64
    np.testing.assert_allclose(proba.sum(axis=1), 1.0, atol=1e-12)
    assert (head.classes_[proba.argmax(axis=1)] == y[:50]).mean() > 0.95
    np.testing.assert_array_equal(head.predict(X[:50]), head.classes_[proba.argmax(axis=1)])
    assert head.n_features_in_ == X.shape[1]


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_save_load_round_trip_is_identical_and_pickle_free(name, tmp_path):
    X, y = clusters(4, n=300)
    head = make_head(name, n_jobs=1, seed=3).fit(X, np.array(["x", "y", "z"])[y])
    save_head(head, tmp_path / "head")
    with np.load(tmp_path / "head" / "head.npz", allow_pickle=False) as data:
        assert all(data[key].dtype != object for key in data.files)
    loaded = load_head(tmp_path / "head")
    assert type(loaded) is type(head) and loaded.get_params() == head.get_params()
    np.testing.assert_array_equal(loaded.classes_, head.classes_)
    np.testing.assert_allclose(loaded.predict_proba(X), head.predict_proba(X), rtol=0, atol=1e-12)
    assert sorted(p.name for p in (tmp_path / "head").iterdir()) == ["head.json", "head.npz"]


def test_save_refuses_to_overwrite(tmp_path):
    X, y = clusters(5, n=200)
    head = make_head("logreg").fit(X, y)
    save_head(head, tmp_path)
    with pytest.raises(FileExistsError, match="overwrite=True"):
        save_head(head, tmp_path)
    save_head(head, tmp_path, overwrite=True)


def test_load_rejects_tampered_kind_and_missing_files(tmp_path):
    X, y = clusters(5, n=200)
    save_head(make_head("logreg").fit(X, y), tmp_path)
    meta = json.loads((tmp_path / "head.json").read_text())
    (tmp_path / "head.json").write_text(json.dumps({**meta, "kind": "pickle"}))
    with pytest.raises(ModelLoadError, match="kind 'pickle'.*expected a kind in logreg, lgbm, mlp, abmil"):
        load_head(tmp_path)
    (tmp_path / "head.json").write_text(json.dumps({**meta, "kind": "lgbm"}))  # logreg arrays, no text model
    with pytest.raises(ModelLoadError, match="inconsistent lgbm head"):
        load_head(tmp_path)
    with pytest.raises(ModelLoadError, match="Cannot read a saved head"):
        load_head(tmp_path / "missing")
    (tmp_path / "head.json").write_text(json.dumps(meta))
    np.savez(tmp_path / "head.npz", classes=np.array([{"a": 1}], dtype=object))  # needs pickle to load
    with pytest.raises(ModelLoadError, match="allow_pickle"):
        load_head(tmp_path)


def test_unfitted_head_and_wrong_width_raise():
    X, y = clusters(6, n=200)
    with pytest.raises(NotFittedError):
        make_head("logreg").predict_proba(X)
    with pytest.raises(ValueError, match="X has 5 features"):
        make_head("lgbm", n_jobs=1).fit(X, y).predict_proba(X[:, :5])
    with pytest.raises(ValueError, match="at least 2 classes"):
        make_head("logreg").fit(X, np.zeros(len(X)))


@pytest.mark.parametrize("name", HEAD_NAMES)
def test_same_seed_gives_identical_probabilities(name):
    X, y = clusters(7, n=300)
    groups = np.arange(len(y)) // 3
    first = make_head(name, n_jobs=1, seed=11).fit(X, y, groups=groups).predict_proba(X)
    second = make_head(name, n_jobs=1, seed=11).fit(X, y, groups=groups).predict_proba(X)
    np.testing.assert_array_equal(first, second)


@pytest.mark.parametrize("name", ["logreg", "lgbm"])
def test_groups_are_ignored_outside_the_torch_heads(name):
    X, y = clusters(8, n=300)
    with_groups = make_head(name, n_jobs=1).fit(X, y, groups=np.arange(len(y)) // 4).predict_proba(X)
    np.testing.assert_array_equal(with_groups, make_head(name, n_jobs=1).fit(X, y).predict_proba(X))


def test_make_head_rejects_unknown_name_and_passes_settings():
    with pytest.raises(
        ConfigError, match=re.escape("The 'head' parameter must be one of logreg, lgbm, mlp, abmil. Got 'xyz' instead.")
    ):
        make_head("xyz")
    head = make_head("lgbm", class_weight=None, seed=5, n_jobs=1)
    assert (head.class_weight, head.seed, head.n_jobs) == (None, 5, 1)
    from pipeline.heads.mlp import MLPHead

    assert isinstance(make_head("mlp"), MLPHead)


def test_the_linear_head_imports_neither_torch_nor_lightgbm():
    code = (
        "import sys; from pipeline.heads import make_head; import numpy as np; "
        "make_head('logreg').fit(np.eye(4), [0, 1, 0, 1]); "
        "print('torch' in sys.modules, 'lightgbm' in sys.modules)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.split() == ["False", "False"]


@pytest.mark.parametrize(
    "head, message",
    [
        (LogRegHead(C=-1), "The 'C' parameter of LogRegHead must be a float in the range (0.0, inf). Got -1 instead."),
        (LogRegHead(max_iter=0), "The 'max_iter' parameter of LogRegHead must be an int in the range [1, inf). Got 0"),
        (LGBMHead(num_leaves=1), "The 'num_leaves' parameter of LGBMHead must be an int in the range [2, inf). Got 1"),
        (LGBMHead(subsample=1.5), "The 'subsample' parameter of LGBMHead must be a float in the range (0.0, 1.0]. Got"),
        (
            LGBMHead(class_weight="auto"),
            "The 'class_weight' parameter of LGBMHead must be a str among {'balanced'} or None. Got 'auto'",
        ),
        (
            LogRegHead(seed=-2),
            "The 'seed' parameter of LogRegHead must be an int in the range [0, inf). Got -2 instead.",
        ),
    ],
)
def test_invalid_parameters_raise_config_error_in_fit(head, message):
    X, y = clusters(9, n=100)
    with pytest.raises(ConfigError, match=re.escape(message)):
        head.fit(X, y)
