"""The contract every classification head follows, and the checks they share.

A head is a scikit-learn style classifier: ``__init__`` stores parameters, ``fit(X, y, groups=None,
sample_weight=None)`` validates them and returns self, fitted attributes end in ``_``, ``predict_proba`` has one
float64 column per class in ``classes_`` order, and ``to_state``/``from_state`` turn a fitted head into JSON and
numpy arrays (no pickle) and back.
"""

from __future__ import annotations

from numbers import Integral, Real
from typing import Any

import numpy as np
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils._param_validation import Interval, InvalidParameterError, Options, StrOptions
from sklearn.utils.multiclass import check_classification_targets
from sklearn.utils.validation import check_array, check_is_fitted, column_or_1d

from pipeline.errors import ConfigError, ModelLoadError

STATE_VERSION = 1  # bump when the layout of head.json / head.npz changes


class InvalidHeadParameter(ConfigError, InvalidParameterError):
    """A head parameter outside its rule: a :class:`ConfigError` for the pipeline, scikit-learn's error for sklearn."""


class PositiveInts(Options):
    """A tuple (or list) of positive ints, e.g. the widths of hidden layers (a rule :mod:`sklearn` does not have).

    An :class:`~sklearn.utils._param_validation.Options` only so that scikit-learn's validation accepts it as a rule.
    """

    def __init__(self) -> None:
        super().__init__(tuple, set())

    def is_satisfied_by(self, val: Any) -> bool:
        """True for a tuple or list of ints >= 1 (bools are not ints here)."""
        return isinstance(val, (tuple, list)) and all(
            isinstance(v, Integral) and not isinstance(v, bool) and v >= 1 for v in val
        )

    def __str__(self) -> str:
        return "a tuple of positive ints"


def at_least(low: int) -> Interval:
    """``Interval(Integral, low, None, closed="left")``: an int of at least ``low``."""
    return Interval(Integral, low, None, closed="left")


def fraction(closed: str) -> Interval:
    """A float in [0, 1] with the ends ``closed`` says ("left": [0, 1), "right": (0, 1], "neither": (0, 1))."""
    return Interval(Real, 0, 1, closed=closed)


POSITIVE = Interval(Real, 0, None, closed="neither")  # a float > 0
NON_NEGATIVE = Interval(Real, 0, None, closed="left")  # a float >= 0
N_JOBS = [Interval(Integral, -1, None, closed="left"), None]  # threads; -1 or None: the library's default


def balanced_class_weights(y_idx: np.ndarray, n_classes: int, sample_weight: np.ndarray | None = None) -> np.ndarray:
    """Return ``n_samples / (n_classes * bincount(y))``, shape (n_classes,), float64 (scikit-learn's "balanced").

    With ``sample_weight`` the counts are weighted, so a row of weight 2 counts as that row twice.
    """
    counts = np.bincount(y_idx, weights=sample_weight, minlength=n_classes).astype(np.float64)
    return counts.sum() / (n_classes * np.maximum(counts, 1e-12))


class Head(ClassifierMixin, BaseEstimator):
    """Shared fit-time checks, ``predict`` and state handling; subclasses set ``kind`` and the model itself."""

    kind = ""
    # One rule per parameter (scikit-learn's ``_param_validation``), checked at the start of fit; each head adds its
    # own, and a test refuses a head whose table misses a parameter.
    _parameter_constraints: dict[str, list] = {
        "class_weight": [StrOptions({"balanced"}), None],
        "seed": [at_least(0)],
    }

    def _check_params(self) -> None:
        """Raise :class:`InvalidHeadParameter` (a :class:`ConfigError`) on a parameter outside its rule."""
        try:
            self._validate_params()
        except InvalidParameterError as exc:
            raise InvalidHeadParameter(str(exc)) from None

    def _prepare_fit(
        self, X: Any, y: Any, sample_weight: Any, dtype: Any = np.float64
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray | None]:
        """Check the data; set ``classes_`` and ``n_features_in_``.

        Returns:
            X (n, d) of ``dtype``; class indices (n,) int64 into ``classes_``; row weights (n,) float64 that combine
            the class weights with ``sample_weight``, or None when neither is in use.
        """
        self._check_params()
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
        X = check_array(X, dtype=dtype)
        y_idx, weights = self._prepare_targets(y, len(X), sample_weight)
        self.n_features_in_ = X.shape[1]
        return X, y_idx, weights

    def _prepare_targets(
        self, y: Any, n_rows: int, sample_weight: Any, rows: str = "X"
    ) -> tuple[np.ndarray, np.ndarray | None]:
        """Check y and ``sample_weight`` (one entry per row of ``rows``); set ``classes_``.

        Returns:
            Class indices (n_rows,) int64 into ``classes_``, and row weights (n_rows,) float64 that combine the class
            weights with ``sample_weight``, or None when neither is in use.
        """
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
        y = column_or_1d(y, warn=True)
        if len(y) != n_rows:
            raise ValueError(f"y must have shape ({n_rows},) to match {rows}; got {y.shape}.")
        check_classification_targets(y)
        self.classes_, y_idx = np.unique(y, return_inverse=True)
        if len(self.classes_) < 2:
            raise ValueError(
                f"{type(self).__name__} needs at least 2 classes in y; got 1 class: {self.classes_.tolist()}."
            )
        if sample_weight is not None:
            sample_weight = check_array(sample_weight, ensure_2d=False, dtype=np.float64)
            if sample_weight.shape != (n_rows,) or (sample_weight < 0).any():
                raise ValueError(f"sample_weight must be non-negative, shape ({n_rows},); got {sample_weight.shape}.")
            if not sample_weight.any():
                raise ValueError("Sample weights must contain at least one non-zero number.")
        weights = sample_weight
        if self.class_weight == "balanced":
            per_class = balanced_class_weights(y_idx, len(self.classes_), sample_weight)[y_idx]
            weights = per_class if sample_weight is None else per_class * sample_weight
        return y_idx.astype(np.int64), weights

    def _check_X(self, X: Any, dtype: Any = np.float64) -> np.ndarray:
        check_is_fitted(self, "classes_")
        X = check_array(X, dtype=dtype)
        if X.shape[1] != self.n_features_in_:
            raise ValueError(
                f"X has {X.shape[1]} features, but {type(self).__name__} is expecting {self.n_features_in_} features "
                "as input."
            )
        return X

    def predict(self, X: Any) -> np.ndarray:
        """Return the most probable class per row, shape (n,), drawn from ``classes_``."""
        proba = self.predict_proba(X)  # first: it raises NotFittedError on an unfitted head
        return self.classes_[np.argmax(proba, axis=1)]

    def _base_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        check_is_fitted(self, "classes_")
        classes = np.asarray(self.classes_.tolist())
        if classes.dtype.kind not in "iufbU":
            raise ValueError(f"Cannot save classes of dtype {self.classes_.dtype}; use int or str labels.")
        params = {k: list(v) if isinstance(v, tuple) else v for k, v in self.get_params().items()}
        meta = {"kind": self.kind, "version": STATE_VERSION, "params": params, "n_features_in": self.n_features_in_}
        return meta, {"classes": classes}

    @classmethod
    def _restore(cls, meta: dict, arrays: dict[str, np.ndarray]) -> Head:
        if meta.get("kind") != cls.kind:
            raise ModelLoadError(f"State of kind {meta.get('kind')!r} cannot be loaded as {cls.__name__}.")
        head = cls(**meta["params"])
        head.classes_, head.n_features_in_ = arrays["classes"], int(meta["n_features_in"])
        return head
