"""Stage 2: read the cache, join labels, cross-validate each head, fit on all images, predict the test images."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline import cache
from pipeline.classifier import Classifier
from pipeline.dataset import read_labels
from pipeline.errors import CacheError, ConfigError, LabelsError
from pipeline.evaluation import Scheme, compute_metrics, cross_validate, fit_head
from pipeline.featureset import FeatureSet
from pipeline.heads import HEAD_NAMES, make_head
from pipeline.hygiene import QualityReport, QualitySettings, assess_feature_sets
from pipeline.outputs import write_run
from pipeline.runfolder import RunFolder, next_free
from pipeline.splits import make_folds

logger = logging.getLogger(__name__)


@dataclass
class ClassificationSettings:
    """Everything that defines a classification run (the flags of ``classify.py``)."""

    features: Path = Path("features")  # a cache folder, or a root holding exactly one
    labels: Path | None = None  # default: train_labels.csv of the data folder recorded by extraction
    head: str = "mlp"  # logreg, lgbm, mlp or all
    level: str = "tile"  # tile: train on tiles and vote; image: train on mean embeddings
    vote: str = "mean"  # mean, majority or coverage (tile level)
    folds: int = 5  # stratified folds over images, duplicates kept together
    seed: int = 0  # folds, head initialisation and sampling
    class_weight: bool = True  # balanced class weights in every head
    out: Path | None = None  # run folder; default runs/<cache name>_<head> (next free name)
    runs_root: Path = Path("runs")
    overwrite: bool = False  # replace an existing --out folder
    keep_outliers: bool = False  # train on images flagged non_tissue or ink too (they are always validated)
    dedupe: bool = False  # train on one representative (the first) of each duplicate group
    quality: QualitySettings = field(default_factory=QualitySettings)  # hygiene thresholds
    pictures: bool = True  # plots, vote maps and report.html in the run folder
    vote_maps: tuple[str, ...] = ()  # extra images to draw vote maps of: ids, file names, stems, or 'all'

    def heads(self) -> list[str]:
        """The heads to run."""
        if self.head == "all":
            return list(HEAD_NAMES)
        if self.head not in HEAD_NAMES:
            raise ConfigError(f"--head must be one of {', '.join(HEAD_NAMES)}, all. Got '{self.head}' instead.")
        return [self.head]


@dataclass
class HeadRun:
    """One head's results.

    Metrics, out-of-fold image (n_images, C) and tile (n_tiles, C) probabilities, the folds, test image
    probabilities (n_test, C) and the final classifier fitted on every training image.
    """

    name: str
    metrics: dict
    oof_proba: np.ndarray
    oof_tile_proba: np.ndarray
    folds: np.ndarray
    test_proba: np.ndarray | None
    classifier: Classifier
    seconds: float


@dataclass
class ClassificationSummary:
    """What a run did and where its files are."""

    run_dir: Path
    cache_dir: Path
    classes: list[str]
    train: FeatureSet
    labels: np.ndarray
    test: FeatureSet | None
    runs: list[HeadRun] = field(default_factory=list)
    skipped: dict[str, dict] = field(default_factory=dict)
    filled_test: list[str] = field(default_factory=list)  # test images without features, given the majority class
    quality: QualityReport | None = None  # hygiene flags of train (first rows) and test images
    trainable: np.ndarray | None = None  # (n_train,) bool: images the heads were trained on

    @property
    def best(self) -> HeadRun:
        """The head with the highest cross-validated weighted F1."""
        return max(self.runs, key=lambda run: run.metrics["weighted_f1"])


def resolve_cache(path: Path) -> Path:
    """A cache folder itself, or the only cache folder under a root.

    Raises:
        CacheError: No cache, or several (the message lists them).
    """
    path = Path(path)
    if (path / cache.SETTINGS_FILE).is_file():
        return path
    found = cache.find_caches(path)
    if not found:
        raise CacheError(f"No feature cache under '{path}'. Run extract.py first, or pass --features CACHE_FOLDER.")
    if len(found) > 1:
        names = ", ".join(str(p) for p in found)
        raise CacheError(f"'{path}' holds several caches: {names}. Choose one with --features.")
    return found[0]


def join_labels(train: FeatureSet, labels: dict[str, str], labels_path: Path, skipped: dict[str, dict]) -> list[str]:
    """Label of every cached train image; errors name the ids that do not match.

    Raises:
        LabelsError: A cached image has no label, or a labelled image is missing from the cache (and was not
            skipped by extraction: those are reported and left out).
    """
    unlabelled = [s for s in train.sample_index if s not in labels]
    if unlabelled:
        raise LabelsError(
            f"{len(unlabelled)} cached train image(s) have no row in {labels_path}: {', '.join(unlabelled[:10])}"
            f"{' ...' if len(unlabelled) > 10 else ''}. Add their labels, or delete their feature files if the "
            "images were removed."
        )
    cached = set(train.sample_index)
    missing = [s for s in labels if s not in cached]
    skipped_samples = {v["sample_index"]: v["reason"] for k, v in skipped.items() if k.startswith("train/")}
    was_skipped = [s for s in missing if s in skipped_samples]
    absent = [s for s in missing if s not in was_skipped]
    if absent:
        raise LabelsError(
            f"{labels_path} lists {len(absent)} image(s) missing from the cache: {', '.join(absent[:10])}"
            f"{' ...' if len(absent) > 10 else ''}. Run extract.py --split train to embed them, or remove their rows."
        )
    for sample in was_skipped:
        logger.warning("%s was skipped by extraction and is left out: %s", sample, skipped_samples[sample])
    return [labels[s] for s in train.sample_index]


def training_plan(
    quality: QualityReport, n_train: int, settings: ClassificationSettings
) -> tuple[np.ndarray, np.ndarray]:
    """Duplicate groups and trainable images of the training split (its rows come first in ``quality``).

    Returns:
        (n_train,) duplicate-group ids, and (n_train,) bool: images the heads may train on (outliers and ink left
        out unless ``keep_outliers``; with ``dedupe`` only the first image of each group).
    """
    groups = quality.duplicate_group[:n_train]
    trainable = np.ones(n_train, dtype=bool)
    if not settings.keep_outliers:
        trainable &= ~quality.excluded()[:n_train]
    if settings.dedupe:
        first = np.zeros(n_train, dtype=bool)
        first[np.unique(groups, return_index=True)[1]] = True
        trainable &= first
    left_out = n_train - int(trainable.sum())
    if left_out:
        logger.info("%d of %d training images are left out of training (%s)", left_out, n_train, quality.summary())
    return groups, trainable


def run_classification(settings: ClassificationSettings) -> ClassificationSummary:
    """Cross-validate, fit and predict with each requested head; write the run folder.

    Raises:
        PipelineError: Bad settings, cache or labels (before anything is written).
    """
    heads = settings.heads()
    scheme = Scheme(settings.level, settings.vote).validate()
    cache_dir = resolve_cache(settings.features)
    cache_settings = cache.read_settings(cache_dir)
    labels_path = Path(settings.labels or Path(cache_settings.get("data_dir", ".")) / "train_labels.csv")
    skipped = cache.read_skipped(cache_dir)
    train = cache.load_split(cache_dir, "train")
    names = join_labels(train, read_labels(labels_path), labels_path, skipped)
    classes = sorted(set(names))
    if len(classes) < 2:
        raise LabelsError(f"{labels_path} has only one class ({classes[0]}); a classifier needs at least two.")
    labels = np.array([classes.index(name) for name in names], dtype=np.int64)
    test = cache.load_split(cache_dir, "test") if cache.list_image_files(cache_dir, "test") else None
    if test is None:
        logger.warning("%s holds no test image: no submission will be written.", cache_dir)
    quality = assess_feature_sets([train] + ([test] if test is not None else []), settings.quality)
    groups, trainable = training_plan(quality, train.n_images, settings)
    folds = make_folds(np.array(names), groups, settings.folds, settings.seed)
    run_dir = settings.out or next_free(settings.runs_root / f"{cache_dir.name}_{settings.head}")
    summary = ClassificationSummary(run_dir, cache_dir, classes, train, labels, test, skipped=skipped,
                                    quality=quality, trainable=trainable)
    summary.filled_test = sorted(v["sample_index"] for k, v in skipped.items() if k.startswith("test/"))
    weight = "balanced" if settings.class_weight else None
    for name in heads:
        started = time.perf_counter()

        def make(name: str = name) -> object:
            return make_head(name, class_weight=weight, seed=settings.seed)

        logger.info("%s: %d-fold cross-validation on %d images", name, settings.folds, train.n_images)
        result = cross_validate(make, train, labels, groups, folds, scheme, len(classes), trainable)
        metrics = compute_metrics(labels, result.proba.argmax(1), classes, result.fold_weighted_f1)
        head = fit_head(make, train, np.nonzero(trainable)[0], labels, groups, scheme)
        classifier = Classifier(head, name, classes, scheme, cache_settings)
        test_proba = classifier.predict_proba(test) if test is not None else None
        seconds = time.perf_counter() - started
        run = HeadRun(name, metrics, result.proba, result.tile_proba, folds, test_proba, classifier, seconds)
        summary.runs.append(run)
        logger.info("%s: weighted F1 %.3f in %.1f s", name, metrics["weighted_f1"], seconds)
    folder = RunFolder(run_dir, overwrite=settings.overwrite, movable=settings.out is None)
    with folder as temp_dir:
        write_run(temp_dir, summary, settings)
    summary.run_dir = folder.final
    return summary
