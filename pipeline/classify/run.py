"""Stage 2: read the cache, join labels, cross-validate each head, fit on all images, predict the test images.

Computes and returns a :class:`ClassificationResult`; writing the run folder is :mod:`pipeline.report`'s job.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from pipeline import cache
from pipeline.classify.classifier import Classifier
from pipeline.classify.confidence import confidence_intervals, repeat_scores, repeated_predictions
from pipeline.classify.evaluation import Scheme, cross_validate, fit_head, predict_subset
from pipeline.classify.folds import make_folds
from pipeline.classify.labels import check_class_sizes, join_labels
from pipeline.classify.metrics import compute_metrics
from pipeline.classify.results import ClassificationResult, HeadResult
from pipeline.classify.settings import ClassificationSettings
from pipeline.data.labels import LABELS_FILE, read_labels
from pipeline.errors import LabelsError
from pipeline.heads.registry import make_head
from pipeline.hygiene.assessment import QualityReport, assess_feature_sets
from pipeline.hygiene.leave_out import left_out_for_flags

logger = logging.getLogger(__name__)


def training_plan(
    quality: QualityReport, n_train: int, settings: ClassificationSettings, labels: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Duplicate groups and trainable images of the training split (its rows come first in ``quality``).

    Args:
        quality: The assessment of train and test images.
        n_train: Training images.
        settings: ``keep_outliers``, ``drop_flagged`` and ``dedupe``.
        labels: (n_train,) class names, for the per-class limit of :mod:`pipeline.hygiene.leave_out` (None: one class).

    Returns:
        (n_train,) duplicate-group ids; (n_train,) bool, the images the heads may train on (flagged images left out
        as :func:`pipeline.hygiene.leave_out.left_out_for_flags` decides; with ``dedupe`` only the first image of
        each group); and the hygiene warnings (also logged).
    """
    groups = quality.duplicate_group[:n_train]
    labels = ["all"] * n_train if labels is None else labels
    flagged, too_many = left_out_for_flags(quality, labels, settings.keep_outliers, settings.drop_flagged)
    trainable = ~flagged
    if settings.dedupe:
        first = np.zeros(n_train, dtype=bool)
        first[np.unique(groups, return_index=True)[1]] = True
        trainable &= first
    warnings = [line for line in (quality.unscored_warning(), too_many) if line]
    for line in warnings:
        logger.warning("%s", line)
    left_out = n_train - int(trainable.sum())
    if left_out:
        logger.info("%d of %d training images are left out of training (%s)", left_out, n_train, quality.summary())
    return groups, trainable, warnings


def run_name(cache_dir: Path, cache_settings: dict, head: str) -> str:
    """Default run folder name: ``<data folder>_<cache name>_<head>``, e.g. ``glas15_phikon_t224_..._fp16_mlp``."""
    data_name = Path(str(cache_settings.get("data_dir") or "data")).name
    return f"{data_name}_{Path(cache_dir).name}_{head}"


def run_classification(settings: ClassificationSettings) -> ClassificationResult:
    """Cross-validate, fit and predict with each requested head.

    Raises:
        PipelineError: Bad settings, cache or labels.
    """
    heads = settings.heads()
    settings.check_repeats()
    base_scheme = Scheme(settings.level, settings.vote, tuple(settings.pool)).validate()
    cache_dir = cache.resolve_cache(settings.features, settings.data_dir)
    cache_settings = cache.read_settings(cache_dir)
    cache.check_complete(cache_dir, cache_settings)  # names images a shard of extract.py has not embedded yet
    labels_path = Path(settings.labels or Path(cache_settings.get("data_dir", ".")) / LABELS_FILE)
    skipped = cache.read_skipped(cache_dir)
    train = cache.load_split(cache_dir, "train")
    names = join_labels(train, read_labels(labels_path), labels_path, skipped)
    classes = sorted(set(names))
    if len(classes) < 2:
        raise LabelsError(f"{labels_path} has only one class ({classes[0]}); a classifier needs at least two.")
    check_class_sizes(names, train.sample_index, settings.folds, labels_path)
    labels = np.array([classes.index(name) for name in names], dtype=np.int64)
    test = cache.load_split(cache_dir, "test") if cache.list_image_files(cache_dir, "test") else None
    if test is None:
        logger.warning("%s holds no test image: no submission will be written.", cache_dir)
    quality = assess_feature_sets([train] + ([test] if test is not None else []), settings.quality)
    groups, trainable, hygiene_warnings = training_plan(quality, train.n_images, settings, names)
    folds = make_folds(np.array(names), groups, settings.folds, settings.seed)
    result = ClassificationResult(
        cache_dir, cache_settings, classes, train, labels, test, skipped=skipped, quality=quality,
        trainable=trainable, run_name=run_name(cache_dir, cache_settings, settings.head),
        hygiene_warnings=hygiene_warnings,
        filled_test=sorted(v["sample_index"] for k, v in skipped.items() if k.startswith("test/")),
    )
    weight = "balanced" if settings.class_weight else None
    for name in heads:
        started = time.perf_counter()
        scheme = base_scheme.for_head(name)

        def make(name: str = name, seed: int = settings.seed) -> object:
            return make_head(name, class_weight=weight, seed=seed)

        logger.info("%s (%s): %d-fold cross-validation on %d images", name, scheme.describe(), settings.folds,
                    train.n_images)
        cv = cross_validate(make, train, labels, groups, folds, scheme, len(classes), trainable)
        predictions = cv.proba.argmax(1)
        metrics = compute_metrics(labels, predictions, classes, cv.fold_weighted_f1)
        metrics.update(confidence_intervals(labels, predictions, groups, settings.seed))
        if settings.repeats > 1:
            seeds = [settings.seed + r for r in range(settings.repeats)]
            others = repeated_predictions(lambda seed, name=name: make(name, seed), train, labels, np.array(names),
                                          groups, settings.folds, scheme, trainable, seeds[1:])
            metrics.update(repeat_scores(labels, [predictions, *others], seeds))
        head = fit_head(make, train, np.nonzero(trainable)[0], labels, groups, scheme)
        classifier = Classifier(head, name, classes, scheme, cache_settings, result.fill_class)
        test_out = None
        if test is not None:
            classifier.check_features(test)
            test_out = predict_subset(head, test, np.arange(test.n_images), len(classes), scheme)
        seconds = time.perf_counter() - started
        result.heads.append(HeadResult(
            name, metrics, cv.proba, cv.tile_proba, folds,
            test_out.image_proba if test_out else None, test_out.tile_proba if test_out else None, classifier,
            seconds, oof_tile_attention=cv.tile_attention, test_tile_attention=test_out.attention if test_out else None,
        ))
        logger.info("%s: weighted F1 %.3f in %.1f s", name, metrics["weighted_f1"], seconds)
    return result
