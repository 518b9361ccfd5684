"""Predict new images with a saved model, without training: what ``classify.py --predict RUN_FOLDER`` computes.

The model is the run folder's ``model/`` (``classifier.json`` and the head's files). The cache must hold embeddings
made with the same encoder (model checksum), preprocessing, tiling settings and size as the training cache; anything
else is refused with one line. A fused run (``model/fusion.json``) needs one cache per cache it was trained on, in
the same order, holding the same test images. Writing the files is :mod:`pipeline.report.predict`'s job.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline import cache
from pipeline.cache.featureset import FeatureSet
from pipeline.classify.classifier import CLASSIFIER_FILE, FUSION_FILE, Classifier, FusedClassifier, load_classifier
from pipeline.classify.fusion import align_images
from pipeline.errors import CacheError, ModelLoadError

logger = logging.getLogger(__name__)


@dataclass
class NewPredictions:
    """A saved model's predictions for the test images of a cache.

    Attributes:
        model_dir: The model folder used. classifier: The loaded model.
        cache_dir: The cache predicted (a fused model: the first). cache_settings: Its ``settings.json``.
        test: The test images with features, or None when every test image was skipped by extraction.
        proba: (n_test, C) image probabilities, columns in ``classifier.classes`` order, or None.
        filled: Test images without features (skipped by extraction); they get ``classifier.fill_class``.
        cache_dirs: Every cache predicted, in ``--features`` order.
    """

    model_dir: Path
    classifier: Classifier | FusedClassifier
    cache_dir: Path
    cache_settings: dict
    test: FeatureSet | None
    proba: np.ndarray | None
    filled: list[str]
    cache_dirs: list[Path] = field(default_factory=list)


def find_model(run_folder: Path) -> Path:
    """The model folder of a run folder (``RUN/model``), or ``run_folder`` itself when it is a model folder.

    Raises:
        ModelLoadError: Neither holds ``classifier.json``.
    """
    run_folder = Path(run_folder)
    for folder in (run_folder / "model", run_folder):
        if (folder / CLASSIFIER_FILE).is_file() or (folder / FUSION_FILE).is_file():
            return folder
    raise ModelLoadError(
        f"'{run_folder}' holds no saved model (model/{CLASSIFIER_FILE}). Pass a run folder written by classify.py "
        "(or one of its heads/<name> folders)."
    )


def predict_cache(run_folder: Path, features: Path | Sequence[Path], data_dir: Path | None = None) -> NewPredictions:
    """Load the run's model and predict every test image of a cache (of each cache, in order, for a fused model).

    Args:
        run_folder: A run folder (or its ``model/``).
        features: A cache folder, a cache name or a root holding caches; a fused model: one per cache it fuses.
        data_dir: Which data folder's cache to use under a root (as ``--data``).

    Raises:
        ModelLoadError: No readable model. CacheError: No test image, another number of caches than the model
            fuses, embeddings of another encoder, tiling or size than the model was trained on (or in another
            order), or caches that do not hold the same test images.
    """
    model_dir = find_model(run_folder)
    classifier = load_classifier(model_dir)
    paths = [Path(features)] if isinstance(features, (str, Path)) else [Path(f) for f in features]
    fused = isinstance(classifier, FusedClassifier)
    identities = classifier.identities if fused else [classifier.cache_identity]
    if len(paths) != len(identities):
        raise CacheError(f"The model in '{model_dir}' was trained on {len(identities)} cache(s); got {len(paths)} "
                         "--features. Pass the caches it was trained on, in the order of the run's config.json.")
    cache_dirs, all_settings = [], []
    for k, (path, identity) in enumerate(zip(paths, identities, strict=True), start=1):
        cache_dir = cache.resolve_cache(path, data_dir)
        cache_settings = cache.read_settings(cache_dir)
        keys = cache.mismatched_keys(cache_settings, identity)
        if keys and not fused:
            raise CacheError(
                f"'{cache_dir}' was made with other settings than the model in '{model_dir}' ({', '.join(keys)}); "
                "extract the new images with the model's encoder and tiling settings (see its classifier.json)."
            )
        if keys:
            raise CacheError(
                f"'{cache_dir}' (--features {k} of {len(paths)}) was made with other settings than the model's cache "
                f"{k} in '{model_dir}' ({', '.join(keys)}); pass the caches in the order the run used, each extracted "
                "with that cache's encoder and tiling settings (the run's config.json lists them)."
            )
        cache_dirs.append(Path(cache_dir))
        all_settings.append(cache_settings)
    cache_dir, cache_settings = cache_dirs[0], all_settings[0]
    skipped = cache.read_skipped(cache_dir)
    filled = sorted(v["sample_index"] for k, v in skipped.items() if k.startswith("test/"))
    tests = [cache.load_split(d, "test") if cache.list_image_files(d, "test") else None for d in cache_dirs]
    test = tests[0]
    if test is None and not filled:
        raise CacheError(f"'{cache_dir}' holds no test image ({Path(cache_dir) / 'test'}/*.h5); --predict predicts "
                         "the test images. Run extract.py --split test on the new data folder.")
    tests[1:] = [align_images(test, other, cache_dir, folder, "test", cache.read_skipped(folder))
                 for other, folder in zip(tests[1:], cache_dirs[1:], strict=True)]
    proba = None
    if test is not None:
        proba = classifier.predict_proba(tests) if fused else classifier.predict_proba(test)
    if filled:
        logger.warning("%d test image(s) had no features (skipped by extraction) and get the training majority "
                       "class %s: %s", len(filled), classifier.fill_class, ", ".join(filled[:10]))
    return NewPredictions(model_dir, classifier, cache_dir, cache_settings, test, proba, filled, cache_dirs)
