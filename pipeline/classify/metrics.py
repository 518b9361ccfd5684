"""Metrics of pooled image predictions: weighted F1 (the headline), macro F1, accuracy, per class, confusion."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support

from pipeline.classify.confidence import confidence_intervals, repeat_scores


def compute_metrics(labels: np.ndarray, predictions: np.ndarray, classes: list[str], fold_scores: list[float]) -> dict:
    """Metrics of pooled image predictions.

    Args:
        labels: (n,) true class indices.
        predictions: (n,) predicted class indices.
        classes: Class names, index order.
        fold_scores: Weighted F1 of each fold.

    Returns:
        ``weighted_f1`` (the headline), ``macro_f1``, ``accuracy``, ``weighted_f1_folds`` with ``_mean``/``_std``,
        ``per_class`` (precision, recall, f1, support), ``confusion_matrix`` (rows: true, columns: predicted) and
        ``classes``.
    """
    indices = list(range(len(classes)))
    precision, recall, f1, support = precision_recall_fscore_support(
        labels, predictions, labels=indices, zero_division=0
    )
    return {
        "weighted_f1": float(f1_score(labels, predictions, labels=indices, average="weighted", zero_division=0)),
        "macro_f1": float(f1_score(labels, predictions, labels=indices, average="macro", zero_division=0)),
        "accuracy": float(accuracy_score(labels, predictions)),
        "weighted_f1_folds": [float(s) for s in fold_scores],
        "weighted_f1_folds_mean": float(np.mean(fold_scores)) if fold_scores else float("nan"),
        "weighted_f1_folds_std": float(np.std(fold_scores)) if fold_scores else float("nan"),
        "per_class": {
            name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
            for name, p, r, f, s in zip(classes, precision, recall, f1, support, strict=True)
        },
        "confusion_matrix": confusion_matrix(labels, predictions, labels=indices).tolist(),
        "classes": list(classes),
    }


def fold_weighted_f1(labels: np.ndarray, proba: np.ndarray, folds: np.ndarray) -> list[float]:
    """Weighted F1 of each validation fold, as :func:`pipeline.classify.evaluation.cross_validate` computes it.

    Args:
        labels: (n,) true class indices. proba: (n, C) out-of-fold probabilities. folds: (n,) fold (-1: none).
    """
    scores = []
    for fold in np.unique(folds[folds >= 0]):
        validation = folds == fold
        scores.append(float(f1_score(labels[validation], proba[validation].argmax(1), average="weighted")))
    return scores


def score_predictions(
    labels: np.ndarray, proba: np.ndarray, fold_scores: list[float], classes: list[str], groups: np.ndarray,
    seed: int, repeat_proba: Sequence[np.ndarray] = (), seeds: Sequence[int] = (),
) -> dict:
    """Every metric of a head's out-of-fold probabilities: :func:`compute_metrics`, bootstrap intervals, repeats.

    Args:
        labels: (n,) true class indices. proba: (n, C) out-of-fold probabilities. fold_scores: Weighted F1 per fold.
        classes: Class names. groups: (n,) duplicate-group ids (resampled whole). seed: Seed of the bootstrap.
        repeat_proba: (n, C) out-of-fold probabilities of the other repeats (``--repeats``), if any.
        seeds: Seed of every repeat, the first being this run's.
    """
    predictions = proba.argmax(1)
    metrics = compute_metrics(labels, predictions, classes, fold_scores)
    metrics.update(confidence_intervals(labels, predictions, groups, seed))
    if len(repeat_proba):
        others = [np.nan_to_num(p).argmax(1) for p in repeat_proba]
        metrics.update(repeat_scores(labels, [predictions, *others], list(seeds)))
    return metrics
