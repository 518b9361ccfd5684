"""Metrics of pooled image predictions: weighted F1 (the headline), macro F1, accuracy, per class, confusion."""

from __future__ import annotations

import numpy as np
from sklearn.metrics import accuracy_score, confusion_matrix, f1_score, precision_recall_fscore_support


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
