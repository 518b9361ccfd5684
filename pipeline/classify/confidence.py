"""How sure a score is: bootstrap intervals over images (duplicate groups resampled whole) and repeated CV.

Images of one duplicate group are near-copies, so they are not independent evidence: resampling them one by one
would make the interval too narrow. Each bootstrap replicate draws groups with replacement (as many as there are)
and takes every image of a drawn group, once per draw. Vectorised: each group is summarised once as a C x C
confusion matrix, a replicate's confusion matrix is its group multiplicities times those, and F1 comes from the
(n_boot, C, C) stack, so 1,000 replicates of 1,000 images take a few milliseconds.

Repeats (``--repeats R``) run the whole grouped cross-validation again with other seeds (folds and heads), which
shows how much the score depends on the split rather than on the images.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
from sklearn.metrics import f1_score

from pipeline.cache.featureset import FeatureSet
from pipeline.classify.evaluation import Scheme, cross_validate
from pipeline.classify.folds import make_folds

N_BOOT = 1000  # replicates per interval: the usual number for 95% percentile intervals, and a few ms here

METRICS = ("weighted_f1", "macro_f1")


def bootstrap_ci(
    y_true: Any,
    y_pred: Any,
    groups: Any = None,
    metric: str = "weighted_f1",
    n_boot: int = 1000,
    seed: int = 0,
    alpha: float = 0.05,
) -> tuple[float, float]:
    """Percentile bootstrap interval of a metric of image predictions, duplicate groups resampled together.

    Per replicate the metric is scikit-learn's ``f1_score(..., labels=<all classes>, average=..., zero_division=0)``
    on the replicate's images, where the classes are those of ``y_true`` and ``y_pred`` over the whole input.

    Args:
        y_true: (n,) true labels (any comparable type). y_pred: (n,) predicted labels.
        groups: (n,) duplicate-group id per image; None makes every image its own group.
        metric: "weighted_f1" or "macro_f1".
        n_boot: Number of replicates (>= 1). seed: Seed of the numpy generator. alpha: 1 - coverage, in (0, 1).

    Returns:
        (low, high): the alpha/2 and 1 - alpha/2 quantiles of the replicate metrics.
    """
    if metric not in METRICS:
        raise ValueError(f"metric must be one of {', '.join(METRICS)}. Got {metric!r} instead.")
    if not (isinstance(n_boot, (int, np.integer)) and n_boot >= 1):
        raise ValueError(f"n_boot must be a positive int. Got {n_boot!r} instead.")
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1). Got {alpha!r} instead.")
    y_true, y_pred = np.asarray(y_true), np.asarray(y_pred)
    n = len(y_true)
    groups = np.arange(n) if groups is None else np.asarray(groups)
    if n == 0 or y_true.shape != (n,) or y_pred.shape != (n,) or groups.shape != (n,):
        raise ValueError(
            f"y_true, y_pred and groups must be non-empty and of one shape (n,); got {y_true.shape}, "
            f"{y_pred.shape} and {groups.shape}."
        )
    classes, codes = np.unique(np.concatenate([y_true, y_pred]), return_inverse=True)
    true_idx, pred_idx = codes[:n], codes[n:]
    n_classes = len(classes)
    _, group_idx = np.unique(groups, return_inverse=True)
    n_groups = int(group_idx.max()) + 1
    # (n_groups, C * C) confusion counts of each group, cell true * C + pred
    cells = n_classes * n_classes
    per_group = np.bincount(group_idx * cells + true_idx * n_classes + pred_idx, minlength=n_groups * cells)
    per_group = per_group.reshape(n_groups, cells).astype(np.float64)
    rng = np.random.default_rng(seed)
    # (n_boot, n_groups) how many times each group is drawn; chunks bound memory at about 8 MB per step
    scores = np.empty(n_boot)
    chunk = max(1, 1_000_000 // n_groups)
    for start in range(0, n_boot, chunk):
        size = min(chunk, n_boot - start)
        draws = rng.integers(0, n_groups, size=(size, n_groups)) + n_groups * np.arange(size)[:, None]
        multiplicity = np.bincount(draws.ravel(), minlength=size * n_groups).reshape(size, n_groups)
        confusion = (multiplicity.astype(np.float64) @ per_group).reshape(size, n_classes, n_classes)
        scores[start : start + size] = _f1(confusion, metric)
    low, high = np.quantile(scores, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _f1(confusion: np.ndarray, metric: str) -> np.ndarray:
    """(m,) weighted or macro F1 of (m, C, C) confusion matrices (rows true, columns predicted)."""
    tp = np.diagonal(confusion, axis1=1, axis2=2)
    support = confusion.sum(axis=2)  # true count per class
    predicted = confusion.sum(axis=1)
    denominator = support + predicted  # 2 TP + FP + FN
    f1 = np.divide(2 * tp, denominator, out=np.zeros_like(tp), where=denominator > 0)  # zero_division=0
    if metric == "macro_f1":
        return f1.mean(axis=1)
    total = support.sum(axis=1, keepdims=True)
    return (f1 * support / np.maximum(total, 1)).sum(axis=1)


def confidence_intervals(labels: np.ndarray, predictions: np.ndarray, groups: np.ndarray, seed: int,
                         n_boot: int = N_BOOT) -> dict:
    """``weighted_f1_ci95`` and ``macro_f1_ci95`` ([low, high]) of pooled image predictions, groups resampled whole.

    Args:
        labels: (n,) true class indices. predictions: (n,) predicted class indices.
        groups: (n,) duplicate-group id of each image. seed: Seed of the resampling.
    """
    return {f"{metric}_ci95": [round(v, 4) for v in bootstrap_ci(labels, predictions, groups, metric, n_boot, seed)]
            for metric in METRICS}


def ci_text(metrics: dict, metric: str) -> str:
    """``[0.812, 0.874]``: the 95% interval of ``metric`` in a metrics dict, or ``-`` when it has none."""
    low_high = metrics.get(f"{metric}_ci95")
    return f"[{low_high[0]:.3f}, {low_high[1]:.3f}]" if low_high else "-"


def repeated_probabilities(
    make: Callable[[int], object], features: FeatureSet, labels: np.ndarray, names: np.ndarray, groups: np.ndarray,
    n_folds: int, scheme: Scheme, trainable: np.ndarray, seeds: list[int],
) -> list[np.ndarray]:
    """Out-of-fold probabilities of one whole grouped cross-validation per seed (new folds and new head seeds).

    The folds of a seed depend only on the labels, groups and seed, so every cache of a fused run gets the same
    folds in each repeat, and the fused repeat is the mean of the members' probabilities.

    Args:
        make: seed -> a fresh unfitted head with that seed.
        features, labels, groups, trainable: As for :func:`pipeline.classify.evaluation.cross_validate`.
        names: (n_images,) class names (the folds are stratified on them). n_folds: K. scheme: The head's scheme.
        seeds: Seed of each repeat.

    Returns:
        (n_images, C) out-of-fold image probabilities per seed (NaN rows: never validated).
    """
    n_classes = int(labels.max()) + 1
    out = []
    for seed in seeds:
        folds = make_folds(names, groups, n_folds, seed)
        cv = cross_validate(lambda seed=seed: make(seed), features, labels, groups, folds, scheme, n_classes, trainable)
        out.append(cv.proba)
    return out


def repeat_scores(labels: np.ndarray, predictions: list[np.ndarray], seeds: list[int]) -> dict:
    """Weighted and macro F1 of each repeat's pooled out-of-fold predictions, with their mean and sd.

    Returns:
        ``repeats`` (R), ``repeat_seeds``, and per metric ``<metric>_repeats`` (R values), ``_repeats_mean`` and
        ``_repeats_std`` (population sd, as for the folds).
    """
    out: dict = {"repeats": len(seeds), "repeat_seeds": list(seeds)}
    for metric in METRICS:
        average = metric.split("_")[0]
        scores = [float(f1_score(labels, p, average=average, zero_division=0)) for p in predictions]
        out[f"{metric}_repeats"] = scores
        out[f"{metric}_repeats_mean"] = float(np.mean(scores))
        out[f"{metric}_repeats_std"] = float(np.std(scores))
    return out
