"""Stage 2: read the cache, join labels, cross-validate each head, fit on all images, predict the test images.

Computes and returns a :class:`ClassificationResult`; writing the run folder is :mod:`pipeline.report`'s job. With
several caches (``--features A B``) every head runs on each cache in the same folds and is fused
(:mod:`pipeline.classify.fusion`).
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import cache
from pipeline.cache.featureset import CacheData, FeatureSet
from pipeline.classify import fusion
from pipeline.classify.classifier import Classifier
from pipeline.classify.confidence import repeated_probabilities
from pipeline.classify.evaluation import Scheme, cross_validate, fit_head, predict_subset
from pipeline.classify.folds import make_folds
from pipeline.classify.labels import join_labels
from pipeline.classify.metrics import score_predictions
from pipeline.classify.results import ClassificationResult, Fusion, HeadResult, majority_class
from pipeline.classify.settings import ClassificationSettings
from pipeline.data.labels import LABELS_FILE, read_labels
from pipeline.heads.registry import make_head
from pipeline.hygiene.assessment import QualityReport, assess_feature_sets
from pipeline.hygiene.leave_out import training_plan

logger = logging.getLogger(__name__)


def run_name(cache_dir: Path, cache_settings: dict, head: str) -> str:
    """Default run folder name: ``<data folder>_<cache name>_<head>``, e.g. ``glas15_phikon_t224_..._fp16_mlp``."""
    return f"{cache.data_name(cache_settings)}_{Path(cache_dir).name}_{head}"


@dataclass
class ClassificationPlan:
    """A classification run resolved and checked before any head is trained (:func:`plan_classification`).

    Every check of the settings, caches and labels has run: the heads and their schemes, repeats, fusion, distinct
    and aligned caches, label problems and class sizes. All arrays are (n_train,), in the first cache's image order.

    Attributes:
        settings: The run's settings. heads: The heads to run. schemes: Each head's level, vote and pool.
        caches: The ``--features`` caches, train and test loaded (and aligned to the first one when fused).
        cache_labels: What tells the caches apart in logs and file names (fused runs).
        labels_path: The labels file read. data_name: The data folder's name (for run folder names).
        classes: Class names. names: Class name of each training image. labels: Class index of each image.
        quality: The hygiene assessment of train and test images. groups: Duplicate group of each image.
        trainable: Images the heads may train on. hygiene_warnings: What the hygiene plan warned about.
        folds: Validation fold of each image. run_name: The default run folder name.
    """

    settings: ClassificationSettings
    heads: list[str]
    schemes: dict[str, Scheme]
    caches: list[CacheData]
    cache_labels: list[str]
    labels_path: Path
    data_name: str
    classes: list[str]
    names: np.ndarray
    labels: np.ndarray
    quality: QualityReport
    groups: np.ndarray
    trainable: np.ndarray
    hygiene_warnings: list[str]
    folds: np.ndarray
    run_name: str

    @property
    def fused(self) -> bool:
        """True with several caches."""
        return len(self.caches) > 1

    @property
    def seeds(self) -> list[int]:
        """The seed of every repeat: seed, seed + 1, ..."""
        return [self.settings.seed + r for r in range(self.settings.repeats)]

    @property
    def fill_class(self) -> str:
        """The most frequent training class (ties: the first image's), given to test images without features."""
        return majority_class(self.classes, self.labels)


def plan_classification(settings: ClassificationSettings) -> ClassificationPlan:
    """Check the settings, open the caches, join the labels, assess hygiene and make the folds: all before training.

    Raises:
        PipelineError: Bad settings, caches or labels, or caches that do not hold the same images.
    """
    heads = settings.heads()
    settings.check_repeats()
    base_scheme = Scheme(settings.level, settings.vote, tuple(settings.pool)).validate()
    paths = settings.feature_paths()
    if len(paths) > 1:
        heads = fusion.check_fusion(settings.fusion, heads, base_scheme)
    elif settings.fusion != "late":
        logger.warning("--fusion %s is ignored: it combines several --features caches, and one was given.",
                       settings.fusion)
    caches = [cache.open_cache(path, settings.data_dir) for path in paths]
    dirs = [c.cache_dir for c in caches]
    if len(caches) > 1:
        fusion.check_distinct(dirs, [c.settings for c in caches])
    first = caches[0]
    labels_path = Path(settings.labels or Path(first.settings.get("data_dir", ".")) / LABELS_FILE)
    names = join_labels(first.train, read_labels(labels_path), labels_path, first.skipped, settings.folds,
                        settings.allow_labels)
    classes = sorted(set(names))
    for c in caches:
        c.test = cache.load_split(c.cache_dir, "test") if cache.list_image_files(c.cache_dir, "test") else None
    if first.test is None:
        logger.warning("%s holds no test image: no submission will be written.", first.cache_dir)
    for c in caches[1:]:
        c.train = fusion.align_images(first.train, c.train, first.cache_dir, c.cache_dir, "train", c.skipped)
        c.test = fusion.align_images(first.test, c.test, first.cache_dir, c.cache_dir, "test", c.skipped)
    quality = assess_feature_sets([first.train] + ([first.test] if first.test is not None else []), settings.quality)
    groups, trainable, hygiene_warnings = training_plan(quality, first.train.n_images, settings, names)
    data_name = cache.data_name(first.settings)
    return ClassificationPlan(
        settings=settings, heads=heads, schemes={name: base_scheme.for_head(name) for name in heads}, caches=caches,
        cache_labels=fusion.cache_labels(dirs), labels_path=labels_path, data_name=data_name, classes=classes,
        names=np.array(names), labels=np.array([classes.index(name) for name in names], dtype=np.int64),
        quality=quality, groups=groups, trainable=trainable, hygiene_warnings=hygiene_warnings,
        folds=make_folds(np.array(names), groups, settings.folds, settings.seed),
        run_name=(fusion.fused_run_name(data_name, dirs, settings.fusion, settings.head) if len(caches) > 1
                  else run_name(first.cache_dir, first.settings, settings.head)),
    )


def run_head(plan: ClassificationPlan, name: str, train: FeatureSet, test: FeatureSet | None, cache_settings: dict,
             what: str = "", scheme: Scheme | None = None) -> HeadResult:
    """Cross-validate one head on one set of features, score it, fit it on every trainable image, predict the test.

    Args:
        plan: Labels, groups, folds and settings. name: The head.
        train, test: The features (test may be None). cache_settings: The identity the classifier is bound to.
        what: Which cache, for the log (empty with one cache). scheme: Instead of the head's planned scheme.
    """
    started = time.perf_counter()
    settings, labels, groups, classes = plan.settings, plan.labels, plan.groups, plan.classes
    scheme = scheme or plan.schemes[name]
    weight = "balanced" if settings.class_weight else None

    def make(seed: int = settings.seed) -> object:
        return make_head(name, class_weight=weight, seed=seed)

    logger.info("%s%s (%s): %d-fold cross-validation on %d images", name, what, scheme.describe(), settings.folds,
                train.n_images)
    cv = cross_validate(make, train, labels, groups, plan.folds, scheme, len(classes), plan.trainable)
    repeat_proba = repeated_probabilities(make, train, labels, plan.names, groups, settings.folds, scheme,
                                          plan.trainable, plan.seeds[1:]) if settings.repeats > 1 else []
    metrics = score_predictions(labels, cv.proba, cv.fold_weighted_f1, classes, groups, settings.seed, repeat_proba,
                                plan.seeds)
    head = fit_head(make, train, np.nonzero(plan.trainable)[0], labels, groups, scheme)
    classifier = Classifier(head, name, classes, scheme, cache_settings, plan.fill_class)
    test_out = None
    if test is not None:
        classifier.check_features(test)
        test_out = predict_subset(head, test, np.arange(test.n_images), len(classes), scheme)
    seconds = time.perf_counter() - started
    logger.info("%s%s: weighted F1 %.3f in %.1f s", name, what, metrics["weighted_f1"], seconds)
    return HeadResult(
        name, metrics, cv.proba, cv.tile_proba, plan.folds,
        test_out.image_proba if test_out else None, test_out.tile_proba if test_out else None, classifier,
        seconds, oof_tile_attention=cv.tile_attention, test_tile_attention=test_out.attention if test_out else None,
        repeat_proba=repeat_proba,
    )


def run_fused_head(plan: ClassificationPlan, name: str) -> HeadResult:
    """One head on every cache in the same folds (the members), then fused: late or concat."""
    caches, mode = plan.caches, plan.settings.fusion
    members = [run_head(plan, name, c.train, c.test, c.settings, f" on {label}")
               for c, label in zip(caches, plan.cache_labels, strict=True)]
    identities = [cache.identity(c.settings) for c in caches]
    if mode == "late":
        fused = fusion.fuse_late(name, members, plan.labels, plan.classes, plan.groups, plan.settings.seed,
                                 plan.seeds, identities)
    else:
        pool = plan.settings.pool
        train = cache.concat_image_features([c.train for c in caches], pool)
        test = cache.concat_image_features([c.test for c in caches], pool) if caches[0].test is not None else None
        scheme = fusion.concat_scheme(plan.schemes[name])
        joined = run_head(plan, name, train, test, {}, " on the joined caches", scheme)
        fused = fusion.fuse_concat(joined, members, identities, pool)
    logger.info("%s fused (%s) over %d caches: weighted F1 %.3f", name, mode, len(caches), fused.metrics["weighted_f1"])
    return fused


def run_classification(settings: ClassificationSettings | ClassificationPlan) -> ClassificationResult:
    """Cross-validate, fit and predict with each planned head (on each cache, fused, when there are several).

    Args:
        settings: The run's settings (planned first), or a plan made by :func:`plan_classification`.

    Raises:
        PipelineError: Bad settings, caches or labels, or caches that do not hold the same images (all before any
            head is trained).
    """
    plan = settings if isinstance(settings, ClassificationPlan) else plan_classification(settings)
    first, settings = plan.caches[0], plan.settings
    dirs = [c.cache_dir for c in plan.caches]
    result = ClassificationResult(
        first.cache_dir, first.settings, plan.classes, first.train, plan.labels, first.test, skipped=first.skipped,
        quality=plan.quality, trainable=plan.trainable, hygiene_warnings=plan.hygiene_warnings, run_name=plan.run_name,
        filled_test=sorted(v["sample_index"] for k, v in first.skipped.items() if k.startswith("test/")),
        fusion=Fusion(settings.fusion, dirs, [c.settings for c in plan.caches], plan.cache_labels)
        if plan.fused else None,
    )
    for name in plan.heads:
        result.heads.append(run_fused_head(plan, name) if plan.fused
                            else run_head(plan, name, first.train, first.test, first.settings))
    return result
