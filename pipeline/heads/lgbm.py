"""LightGBM gradient-boosted trees, with small-data defaults and a text (pickle-free) saved model."""

from __future__ import annotations

from typing import Any

import lightgbm
import numpy as np

from pipeline.errors import ModelLoadError
from pipeline.heads.base import N_JOBS, NON_NEGATIVE, POSITIVE, Head, at_least, fraction


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
    _parameter_constraints = {
        **Head._parameter_constraints,
        "n_estimators": [at_least(1)],
        "learning_rate": [POSITIVE],
        "num_leaves": [at_least(2)],
        "min_child_samples": [at_least(1)],
        "subsample": [fraction("right")],
        "colsample_bytree": [fraction("right")],
        "reg_lambda": [NON_NEGATIVE],
        "max_bin": [at_least(2)],
        "n_jobs": N_JOBS,
    }
    _LIGHTGBM_PARAMS = ("n_estimators", "learning_rate", "num_leaves", "min_child_samples", "subsample",
                        "colsample_bytree", "reg_lambda", "max_bin")  # passed to LGBMClassifier under their names

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
            **{name: getattr(self, name) for name in self._LIGHTGBM_PARAMS},
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
        X = self._check_X(X, dtype=(np.float32, np.float64))  # first: it raises NotFittedError on an unfitted head
        proba = np.asarray(self.booster_.predict(X), np.float64)
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
