"""Multinomial logistic regression on standardised inputs: the fast, well-calibrated baseline head."""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
from scipy.special import expit, softmax
from sklearn.linear_model import LogisticRegression
from sklearn.preprocessing import StandardScaler

from pipeline.heads.base import POSITIVE, Head, at_least

logger = logging.getLogger(__name__)


class LogRegHead(Head):
    """Standardised inputs, then multinomial logistic regression (lbfgs).

    Args:
        C: Inverse L2 strength. 0.1 is firmer than scikit-learn's 1.0 because tiles of one image are strongly
            correlated, so 12 tiles x 1,000 images carry far less information than 12,000 independent rows.
        max_iter: lbfgs iteration cap; tol: lbfgs stopping tolerance.
        class_weight: "balanced" or None. seed: passed to scikit-learn (lbfgs itself is deterministic).
    """

    kind = "logreg"
    _parameter_constraints = {
        **Head._parameter_constraints, "C": [POSITIVE], "max_iter": [at_least(1)], "tol": [POSITIVE]
    }

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
        scaler = StandardScaler().fit(X, sample_weight=sample_weight)  # weighted, as the fit itself
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
