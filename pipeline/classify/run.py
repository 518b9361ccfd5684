"""Stage 2: read the cache, join labels, cross-validate each head, fit on all images, predict the test images.

Computes and returns a :class:`ClassificationResult`; writing the run folder is :mod:`pipeline.report`'s job. With
several caches (``--features A B``) every head runs on each cache in the same folds and is fused
(:mod:`pipeline.classify.fusion`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import cache
from pipeline.cache.featureset import FeatureSet
from pipeline.classify import fusion
from pipeline.classify.classifier import Classifier
from pipeline.classify.confidence import repeated_probabilities
from pipeline.classify.evaluation import Scheme, cross_validate, fit_head, predict_subset
from pipeline.classify.folds import make_folds
from pipeline.classify.labels import join_labels
from pipeline.classify.metrics import score_predictions
from pipeline.classify.results import ClassificationResult, Fusion, HeadResult
from pipeline.classify.settings import ClassificationSettings
from pipeline.data.labels import LABELS_FILE, read_labels
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
    return f"{cache.data_name(cache_settings)}_{Path(cache_dir).name}_{head}"


@dataclass
class CacheData:
    """One ``--features`` cache: its folder, ``settings.json``, skipped images and both splits."""

    cache_dir: Path
    settings: dict
    skipped: dict[str, dict]
    train: FeatureSet
    test: FeatureSet | None = None


@dataclass
class RunContext:
    """What every head and every cache of a run share (all (n_train,) arrays, in the first cache's image order).

    Attributes:
        settings: The run's settings. classes: Class names. names: Class name of each training image.
        labels: Class index of each image. groups: Duplicate group of each image. trainable: Images the heads may
        train on. folds: Validation fold of each image. fill_class: The class of test images without features.
    """

    settings: ClassificationSettings
    classes: list[str]
    names: np.ndarray
    labels: np.ndarray
    groups: np.ndarray
    trainable: np.ndarray
    folds: np.ndarray
    fill_class: str

    @property
    def seeds(self) -> list[int]:
        """The seed of every repeat: seed, seed + 1, ..."""
        return [self.settings.seed + r for r in range(self.settings.repeats)]


def open_cache(features: Path, data_dir: Path | None) -> CacheData:
    """Resolve one ``--features`` value and load its training images (the test images come after the labels).

    Raises:
        CacheError: No such cache, an unfinished sharded extraction, or unreadable or mixed files.
    """
    cache_dir = cache.resolve_cache(features, data_dir)
    cache_settings = cache.read_settings(cache_dir)
    cache.check_complete(cache_dir, cache_settings)  # names images a shard of extract.py has not embedded yet
    skipped = cache.read_skipped(cache_dir)
    return CacheData(Path(cache_dir), cache_settings, skipped, cache.load_split(cache_dir, "train"))


def run_head(context: RunContext, name: str, scheme: Scheme, train: FeatureSet, test: FeatureSet | None,
             cache_settings: dict, what: str = "") -> HeadResult:
    """Cross-validate one head on one set of features, score it, fit it on every trainable image, predict the test.

    Args:
        context: Labels, groups, folds and settings. name: The head. scheme: Its level, vote and pool.
        train, test: The features (test may be None). cache_settings: The identity the classifier is bound to.
        what: Which cache, for the log (empty with one cache).
    """
    started = time.perf_counter()
    settings, labels, groups, classes = context.settings, context.labels, context.groups, context.classes
    weight = "balanced" if settings.class_weight else None

    def make(seed: int = settings.seed) -> object:
        return make_head(name, class_weight=weight, seed=seed)

    logger.info("%s%s (%s): %d-fold cross-validation on %d images", name, what, scheme.describe(), settings.folds,
                train.n_images)
    cv = cross_validate(make, train, labels, groups, context.folds, scheme, len(classes), context.trainable)
    repeat_proba = repeated_probabilities(make, train, labels, context.names, groups, settings.folds, scheme,
                                          context.trainable, context.seeds[1:]) if settings.repeats > 1 else []
    metrics = score_predictions(labels, cv.proba, cv.fold_weighted_f1, classes, groups, settings.seed, repeat_proba,
                                context.seeds)
    head = fit_head(make, train, np.nonzero(context.trainable)[0], labels, groups, scheme)
    classifier = Classifier(head, name, classes, scheme, cache_settings, context.fill_class)
    test_out = None
    if test is not None:
        classifier.check_features(test)
        test_out = predict_subset(head, test, np.arange(test.n_images), len(classes), scheme)
    seconds = time.perf_counter() - started
    logger.info("%s%s: weighted F1 %.3f in %.1f s", name, what, metrics["weighted_f1"], seconds)
    return HeadResult(
        name, metrics, cv.proba, cv.tile_proba, context.folds,
        test_out.image_proba if test_out else None, test_out.tile_proba if test_out else None, classifier,
        seconds, oof_tile_attention=cv.tile_attention, test_tile_attention=test_out.attention if test_out else None,
        repeat_proba=repeat_proba,
    )


def run_fused_head(context: RunContext, name: str, scheme: Scheme, caches: list[CacheData], labels: list[str],
                   mode: str) -> HeadResult:
    """One head on every cache in the same folds (the members), then fused: late or concat."""
    members = [run_head(context, name, scheme, c.train, c.test, c.settings, f" on {label}")
               for c, label in zip(caches, labels, strict=True)]
    identities = [cache.identity(c.settings) for c in caches]
    if mode == "late":
        fused = fusion.fuse_late(name, members, context.labels, context.classes, context.groups,
                                 context.settings.seed, context.seeds, identities)
    else:
        pool = context.settings.pool
        train = cache.concat_image_features([c.train for c in caches], pool)
        test = cache.concat_image_features([c.test for c in caches], pool) if caches[0].test is not None else None
        joined = run_head(context, name, fusion.concat_scheme(scheme), train, test, {}, " on the joined caches")
        fused = fusion.fuse_concat(joined, members, identities, pool)
    logger.info("%s fused (%s) over %d caches: weighted F1 %.3f", name, mode, len(caches), fused.metrics["weighted_f1"])
    return fused


def run_classification(settings: ClassificationSettings) -> ClassificationResult:
    """Cross-validate, fit and predict with each requested head (on each cache, fused, when there are several).

    Raises:
        PipelineError: Bad settings, caches or labels, or caches that do not hold the same images.
    """
    heads = settings.heads()
    settings.check_repeats()
    base_scheme = Scheme(settings.level, settings.vote, tuple(settings.pool)).validate()
    paths = settings.feature_paths()
    fused = len(paths) > 1
    if fused:
        heads = fusion.check_fusion(settings.fusion, heads, base_scheme)
    elif settings.fusion != "late":
        logger.warning("--fusion %s is ignored: it combines several --features caches, and one was given.",
                       settings.fusion)
    caches = [open_cache(path, settings.data_dir) for path in paths]
    if fused:
        fusion.check_distinct([c.cache_dir for c in caches], [c.settings for c in caches])
    first = caches[0]
    labels_path = Path(settings.labels or Path(first.settings.get("data_dir", ".")) / LABELS_FILE)
    train = first.train
    names = join_labels(train, read_labels(labels_path), labels_path, first.skipped, settings.folds,
                        settings.allow_labels)
    classes = sorted(set(names))
    labels = np.array([classes.index(name) for name in names], dtype=np.int64)
    for c in caches:
        c.test = cache.load_split(c.cache_dir, "test") if cache.list_image_files(c.cache_dir, "test") else None
    if first.test is None:
        logger.warning("%s holds no test image: no submission will be written.", first.cache_dir)
    for c in caches[1:]:
        c.train = fusion.align_images(train, c.train, first.cache_dir, c.cache_dir, "train", c.skipped)
        c.test = fusion.align_images(first.test, c.test, first.cache_dir, c.cache_dir, "test", c.skipped)
    test = first.test
    quality = assess_feature_sets([train] + ([test] if test is not None else []), settings.quality)
    groups, trainable, hygiene_warnings = training_plan(quality, train.n_images, settings, names)
    folds = make_folds(np.array(names), groups, settings.folds, settings.seed)
    dirs = [c.cache_dir for c in caches]
    labels_of_caches = fusion.cache_labels(dirs)
    result = ClassificationResult(
        first.cache_dir, first.settings, classes, train, labels, test, skipped=first.skipped, quality=quality,
        trainable=trainable, hygiene_warnings=hygiene_warnings,
        run_name=(fusion.fused_run_name(cache.data_name(first.settings), dirs, settings.fusion, settings.head) if fused
                  else run_name(first.cache_dir, first.settings, settings.head)),
        filled_test=sorted(v["sample_index"] for k, v in first.skipped.items() if k.startswith("test/")),
        fusion=Fusion(settings.fusion, dirs, [c.settings for c in caches], labels_of_caches) if fused else None,
    )
    context = RunContext(settings, classes, np.array(names), labels, groups, trainable, folds, result.fill_class)
    for name in heads:
        scheme = base_scheme.for_head(name)
        result.heads.append(run_fused_head(context, name, scheme, caches, labels_of_caches, settings.fusion) if fused
                            else run_head(context, name, scheme, train, test, first.settings))
    return result
