"""Predict new images with a saved model, without training: what ``classify.py --predict RUN_FOLDER`` computes.

The model is the run folder's ``model/`` (``classifier.json`` and the head's files). The cache must hold embeddings
made with the same encoder (model checksum), preprocessing, tiling settings and size as the training cache; anything
else is refused with one line. Writing the files is :mod:`pipeline.report.predict`'s job.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import cache
from pipeline.cache.featureset import FeatureSet
from pipeline.classify.classifier import CLASSIFIER_FILE, Classifier
from pipeline.errors import CacheError, ModelLoadError

logger = logging.getLogger(__name__)


@dataclass
class NewPredictions:
    """A saved model's predictions for the test images of a cache.

    Attributes:
        model_dir: The model folder used. classifier: The loaded model.
        cache_dir: The cache predicted. cache_settings: Its ``settings.json``.
        test: The test images with features, or None when every test image was skipped by extraction.
        proba: (n_test, C) image probabilities, columns in ``classifier.classes`` order, or None.
        filled: Test images without features (skipped by extraction); they get ``classifier.fill_class``.
    """

    model_dir: Path
    classifier: Classifier
    cache_dir: Path
    cache_settings: dict
    test: FeatureSet | None
    proba: np.ndarray | None
    filled: list[str]


def find_model(run_folder: Path) -> Path:
    """The model folder of a run folder (``RUN/model``), or ``run_folder`` itself when it is a model folder.

    Raises:
        ModelLoadError: Neither holds ``classifier.json``.
    """
    run_folder = Path(run_folder)
    for folder in (run_folder / "model", run_folder):
        if (folder / CLASSIFIER_FILE).is_file():
            return folder
    raise ModelLoadError(
        f"'{run_folder}' holds no saved model (model/{CLASSIFIER_FILE}). Pass a run folder written by classify.py "
        "(or one of its heads/<name> folders)."
    )


def predict_cache(run_folder: Path, features: Path, data_dir: Path | None = None) -> NewPredictions:
    """Load the run's model and predict every test image of a cache.

    Args:
        run_folder: A run folder (or its ``model/``). features: A cache folder, a cache name or a root holding caches.
        data_dir: Which data folder's cache to use under a root (as ``--data``).

    Raises:
        ModelLoadError: No readable model. CacheError: No test image, or embeddings of another encoder, tiling or
            size than the model was trained on.
    """
    model_dir = find_model(run_folder)
    classifier = Classifier.load(model_dir)
    cache_dir = cache.resolve_cache(features, data_dir)
    cache_settings = cache.read_settings(cache_dir)
    keys = cache.mismatched_keys(cache_settings, classifier.cache_identity)
    if keys:
        raise CacheError(
            f"'{cache_dir}' was made with other settings than the model in '{model_dir}' ({', '.join(keys)}); "
            "extract the new images with the model's encoder and tiling settings (see its classifier.json)."
        )
    skipped = cache.read_skipped(cache_dir)
    filled = sorted(v["sample_index"] for k, v in skipped.items() if k.startswith("test/"))
    test = cache.load_split(cache_dir, "test") if cache.list_image_files(cache_dir, "test") else None
    if test is None and not filled:
        raise CacheError(f"'{cache_dir}' holds no test image ({Path(cache_dir) / 'test'}/*.h5); --predict predicts "
                         "the test images. Run extract.py --split test on the new data folder.")
    proba = classifier.predict_proba(test) if test is not None else None
    if filled:
        logger.warning("%d test image(s) had no features (skipped by extraction) and get the training majority "
                       "class %s: %s", len(filled), classifier.fill_class, ", ".join(filled[:10]))
    return NewPredictions(model_dir, classifier, Path(cache_dir), cache_settings, test, proba, filled)
