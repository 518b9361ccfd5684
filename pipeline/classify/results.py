"""What a classification run computes: per head, the cross-validated and test predictions and the fitted model."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.cache.featureset import FeatureSet
from pipeline.classify.classifier import Classifier, FusedClassifier
from pipeline.hygiene.assessment import QualityReport


def majority_class(classes: list[str], labels: np.ndarray) -> str:
    """The most frequent class of (n,) class indices ``labels`` (ties: the first image's)."""
    return classes[Counter(labels.tolist()).most_common(1)[0][0]]


@dataclass
class HeadResult:
    """One head's results.

    Attributes:
        name: The head.
        metrics: Metrics of the pooled out-of-fold predictions (:func:`pipeline.classify.metrics.compute_metrics`).
        oof_proba: (n_train, C) out-of-fold image probabilities (NaN rows: never validated).
        oof_tile_proba: (n_train_tiles, C) out-of-fold tile probabilities.
        folds: (n_train,) validation fold of each training image.
        test_proba: (n_test, C) image probabilities of the final classifier, or None without test images.
        test_tile_proba: (n_test_tiles, C) the final classifier's tile probabilities (what the test vote maps show).
        classifier: The head fitted on every trainable image (a :class:`FusedClassifier` for a fused run).
        seconds: Cross-validation, final fit and test prediction (a fused run: of every member).
        oof_tile_attention: (n_train_tiles,) out-of-fold attention of each tile (bag heads such as abmil), or None.
        test_tile_attention: (n_test_tiles,) the final bag head's attention on the test tiles, or None.
        repeat_proba: With ``--repeats R``: (n_train, C) out-of-fold probabilities of repeats 2..R (seed + 1, ...).
        members: A fused run: the same head on each cache alone, same folds, in ``--features`` order (the tile
            arrays of the fused result are the first member's: the caches' tiles differ).
    """

    name: str
    metrics: dict
    oof_proba: np.ndarray
    oof_tile_proba: np.ndarray
    folds: np.ndarray
    test_proba: np.ndarray | None
    test_tile_proba: np.ndarray | None
    classifier: Classifier | FusedClassifier
    seconds: float
    oof_tile_attention: np.ndarray | None = None
    test_tile_attention: np.ndarray | None = None
    repeat_proba: list[np.ndarray] = field(default_factory=list)
    members: list[HeadResult] = field(default_factory=list)


@dataclass
class Fusion:
    """The caches of a fused run (``classify.py --features A B ...``).

    Attributes:
        mode: ``late`` or ``concat``.
        cache_dirs: Every cache, in ``--features`` order (the first also fills ``ClassificationResult.cache_dir``).
        cache_settings: Their ``settings.json``.
        labels: A short distinct name of each cache for tables: its folder name.
    """

    mode: str
    cache_dirs: list[Path]
    cache_settings: list[dict]
    labels: list[str]


@dataclass
class ClassificationResult:
    """Everything a run computed; :mod:`pipeline.report` writes it to a run folder.

    Attributes:
        cache_dir: The cache the embeddings came from (a fused run: the first).
        cache_settings: Its ``settings.json``.
        classes: Class names, index order.
        train: The training images' tiles (a fused run: the first cache's).
        labels: (n_train,) int class index of each training image.
        test: The test images' tiles, or None (a fused run: the first cache's).
        heads: One result per head, in the order run.
        skipped: Images extraction skipped, ``{image_id: {sample_index, reason}}``.
        filled_test: Test images without features (skipped by extraction), given the majority class.
        quality: Hygiene flags of train (first rows) and test images.
        trainable: (n_train,) bool, the images the heads were trained on.
        run_name: The default run folder name: ``<data folder>_<cache name>_<head>``.
        hygiene_warnings: Lines the report must show: images without current hygiene scores, or flags that would
            leave out too many training images (:mod:`pipeline.hygiene.leave_out`).
        fusion: The caches of a fused run, or None for one cache.
    """

    cache_dir: Path
    cache_settings: dict
    classes: list[str]
    train: FeatureSet
    labels: np.ndarray
    test: FeatureSet | None
    heads: list[HeadResult] = field(default_factory=list)
    skipped: dict[str, dict] = field(default_factory=dict)
    filled_test: list[str] = field(default_factory=list)
    quality: QualityReport | None = None
    trainable: np.ndarray | None = None
    run_name: str = ""
    hygiene_warnings: list[str] = field(default_factory=list)
    fusion: Fusion | None = None

    @property
    def fill_class(self) -> str:
        """The most frequent training class (ties: the first image's), given to test images without features."""
        return majority_class(self.classes, self.labels)

    @property
    def best(self) -> HeadResult:
        """The head with the highest cross-validated weighted F1."""
        return max(self.heads, key=lambda head: head.metrics["weighted_f1"])
