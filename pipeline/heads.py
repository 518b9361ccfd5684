"""Classification heads for tile embeddings: ``make_head(name)`` gives a scikit-learn style classifier.

Every head follows one contract (:class:`Head`): ``fit(X, y, groups=None, sample_weight=None)``; ``predict_proba``
with one float64 column per class in ``classes_`` order; ``class_weight="balanced"`` with scikit-learn's meaning;
and pickle-free persistence (``to_state``/``from_state``, :func:`save_head`, :func:`load_head`), so loading a model
never runs code. The torch MLP lives in :mod:`pipeline.mlp` and is imported only when asked for, so the linear and
tree heads do not pay for importing torch.
"""

from __future__ import annotations

import json
import logging
import os
from pathlib import Path
from typing import Any

import lightgbm
import numpy as np
from scipy.special import expit, softmax
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from pipeline.errors import ConfigError, ModelLoadError
from pipeline.head_base import STATE_VERSION, Head

logger = logging.getLogger(__name__)

HEAD_NAMES = ("logreg", "lgbm", "mlp")


class LogRegHead(Head):
    """Standardised inputs, then multinomial logistic regression (lbfgs).

    Args:
        C: Inverse L2 strength. 0.1 is firmer than scikit-learn's 1.0 because tiles of one image are strongly
            correlated, so 12 tiles x 1,000 images carry far less information than 12,000 independent rows.
        max_iter: lbfgs iteration cap; tol: lbfgs stopping tolerance.
        class_weight: "balanced" or None. seed: passed to scikit-learn (lbfgs itself is deterministic).
    """

    kind = "logreg"
    _int_ranges = {**Head._int_ranges, "max_iter": "[1, inf)"}
    _float_ranges = {"C": "(0, inf)", "tol": "(0, inf)"}

    def __init__(
        self,
        C: float = 0.1,
        max_iter: int = 500,
        tol: float = 1e-4,
        class_weight: str | None = "balanced",
        seed: int = 0,
    ):
        self.C, self.max_iter, self.tol, self.class_weight, self.seed = C, max_iter, tol, class_weight, seed

    def fit(self, X: Any, y: Any, groups: Any = None, sample_weight: Any = None) -> LogRegHead:
        """Fit on X (n, d) and labels y (n,); ``groups`` is accepted for a common signature and ignored."""
        X, y_idx, weights = self._prepare_fit(X, y, sample_weight)
        scaler = StandardScaler().fit(X)
        model = LogisticRegression(C=self.C, max_iter=self.max_iter, tol=self.tol, random_state=self.seed)
        model.fit(scaler.transform(X), y_idx, sample_weight=weights)
        self.mean_, self.scale_ = scaler.mean_, scaler.scale_
        self.coef_, self.intercept_ = model.coef_, model.intercept_
        self.n_iter_ = int(np.max(model.n_iter_))
        logger.debug("LogRegHead: %d rows, lbfgs stopped after %d iterations", len(X), self.n_iter_)
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Return class probabilities, shape (n, n_classes), float64, columns in ``classes_`` order."""
        scores = ((self._check_X(X) - self.mean_) / self.scale_) @ self.coef_.T + self.intercept_
        if scores.shape[1] == 1:  # scikit-learn keeps one coefficient row for two classes
            positive = expit(scores[:, 0])
            return np.column_stack([1.0 - positive, positive])
        return softmax(scores, axis=1)

    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Return JSON-ready metadata and named arrays that :meth:`from_state` turns back into this head."""
        meta, arrays = self._base_state()
        arrays.update(mean=self.mean_, scale=self.scale_, coef=self.coef_, intercept=self.intercept_)
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict, arrays: dict[str, np.ndarray]) -> LogRegHead:
        """Rebuild a fitted head from :meth:`to_state` output."""
        head = cls._restore(meta, arrays)
        head.mean_, head.scale_ = arrays["mean"], arrays["scale"]
        head.coef_, head.intercept_ = arrays["coef"], arrays["intercept"]
        return head


class LGBMHead(Head):
    """LightGBM gradient-boosted trees with small-data defaults (shallow trees, row and column subsampling).

    Histogram building dominates the cost and scales with rows x features x bins, so ``subsample=0.5``,
    ``colsample_bytree=0.2`` and ``max_bin=31`` keep a fit on 10,000 x 768 rows to about 5 s on two cores; on
    768-d embeddings they cost no measurable accuracy. LightGBM runs many short OpenMP regions: with
    ``OMP_WAIT_POLICY=PASSIVE`` two threads are slower than ``n_jobs=1``.

    Class weights shift the probabilities towards the small classes; compare them with care before averaging votes
    across heads.
    """

    kind = "lgbm"
    _int_ranges = {
        **Head._int_ranges,
        "n_estimators": "[1, inf)",
        "num_leaves": "[2, inf)",
        "min_child_samples": "[1, inf)",
        "max_bin": "[2, inf)",
    }
    _float_ranges = {
        "learning_rate": "(0, inf)",
        "subsample": "(0, 1]",
        "colsample_bytree": "(0, 1]",
        "reg_lambda": "[0, inf)",
    }

    def __init__(
        self,
        n_estimators: int = 200,
        learning_rate: float = 0.05,
        num_leaves: int = 15,
        min_child_samples: int = 20,
        subsample: float = 0.5,
        colsample_bytree: float = 0.2,
        reg_lambda: float = 1.0,
        max_bin: int = 31,
        class_weight: str | None = "balanced",
        seed: int = 0,
        n_jobs: int | None = None,
    ):
        self.n_estimators = n_estimators
        self.learning_rate = learning_rate
        self.num_leaves = num_leaves
        self.min_child_samples = min_child_samples
        self.subsample = subsample
        self.colsample_bytree = colsample_bytree
        self.reg_lambda = reg_lambda
        self.max_bin = max_bin
        self.class_weight = class_weight
        self.seed = seed
        self.n_jobs = n_jobs

    def fit(self, X: Any, y: Any, groups: Any = None, sample_weight: Any = None) -> LGBMHead:
        """Fit on X (n, d) and labels y (n,); ``groups`` is accepted for a common signature and ignored."""
        X, y_idx, weights = self._prepare_fit(X, y, sample_weight, dtype=(np.float32, np.float64))
        model = lightgbm.LGBMClassifier(
            **{name: getattr(self, name) for name in [*self._int_ranges, *self._float_ranges] if name != "seed"},
            subsample_freq=1,  # bag rows on every iteration
            random_state=self.seed,
            n_jobs=self.n_jobs,
            verbose=-1,
            # Same data, parameters and seed give the same trees run after run (LightGBM asks for a forced layout).
            deterministic=True,
            force_col_wise=True,
        )
        model.fit(X, y_idx, sample_weight=weights)
        self.booster_ = model.booster_
        return self

    def predict_proba(self, X: Any) -> np.ndarray:
        """Return class probabilities, shape (n, n_classes), float64, columns in ``classes_`` order."""
        proba = np.asarray(self.booster_.predict(self._check_X(X, dtype=(np.float32, np.float64))), np.float64)
        return np.column_stack([1.0 - proba, proba]) if proba.ndim == 1 else proba

    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Return JSON-ready metadata (with the text model) and named arrays; see :meth:`from_state`."""
        meta, arrays = self._base_state()
        meta["model"] = self.booster_.model_to_string()
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict, arrays: dict[str, np.ndarray]) -> LGBMHead:
        """Rebuild a fitted head from :meth:`to_state` output (LightGBM's text format, no pickle)."""
        head = cls._restore(meta, arrays)
        if not isinstance(meta.get("model"), str):
            raise ModelLoadError("The saved LightGBM head has no text model under 'model'.")
        head.booster_ = lightgbm.Booster(model_str=meta["model"])
        return head


def _head_class(name: str) -> type[Head]:
    if name == "mlp":
        from pipeline.mlp import MLPHead  # torch is imported only for this head

        return MLPHead
    return {"logreg": LogRegHead, "lgbm": LGBMHead}[name]


def __getattr__(name: str) -> Any:
    if name == "MLPHead":  # re-export without importing torch up front
        return _head_class("mlp")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


def make_head(name: str, *, class_weight: str | None = "balanced", seed: int = 0, n_jobs: int | None = None) -> Head:
    """Return an unfitted head: "logreg", "lgbm" or "mlp" (``n_jobs`` applies to the last two)."""
    if name not in HEAD_NAMES:
        raise ConfigError(f"The 'head' parameter must be one of {', '.join(HEAD_NAMES)}. Got {name!r} instead.")
    extra = {} if name == "logreg" else {"n_jobs": n_jobs}
    return _head_class(name)(class_weight=class_weight, seed=seed, **extra)


def save_head(head: Head, folder: Path, *, overwrite: bool = False) -> None:
    """Write ``folder/head.json`` and ``folder/head.npz`` (no pickle); each goes to a temporary name first."""
    folder = Path(folder)
    meta, arrays = head.to_state()
    targets = [folder / "head.json", folder / "head.npz"]
    if not overwrite and any(path.exists() for path in targets):
        raise FileExistsError(f"{folder} already holds a saved head; choose a new folder or pass overwrite=True.")
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "head.npz.tmp", "wb") as file:  # a file object stops numpy from appending ".npz"
        np.savez(file, **arrays)
    (folder / "head.json.tmp").write_text(json.dumps(meta), encoding="utf-8")
    for path in targets:
        os.replace(path.with_name(path.name + ".tmp"), path)


def load_head(folder: Path) -> Head:
    """Read a head written by :func:`save_head`; never unpickles, so a tampered file cannot run code."""
    json_path, npz_path = Path(folder) / "head.json", Path(folder) / "head.npz"
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
        with np.load(npz_path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as err:  # missing file, bad JSON, object arrays
        raise ModelLoadError(f"Cannot read a saved head from {folder}: {err}. Save it with save_head().") from err
    kind, version = (meta.get("kind"), meta.get("version")) if isinstance(meta, dict) else (None, None)
    if kind not in HEAD_NAMES or version != STATE_VERSION:
        raise ModelLoadError(
            f"{json_path} has kind {kind!r} and version {version!r}; expected a kind in "
            f"{', '.join(HEAD_NAMES)} and version {STATE_VERSION}. It was not written by this "
            "version of save_head(), or it has been edited."
        )
    try:
        return _head_class(kind).from_state(meta, arrays)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ModelLoadError(f"{folder} holds an incomplete or inconsistent {kind} head: {err!r}.") from err
