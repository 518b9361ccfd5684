"""``classify.py --predict``: write a saved model's predictions for a cache's test images into a folder.

The folder gets ``submission.csv`` and ``test_predictions.csv`` in exactly the run folder's format (predicting the
training cache a run was fitted on reproduces its files byte for byte) and ``prediction.json`` (which model, which
cache, versions). Like run folders, it is written under a temporary name and renamed when complete.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

from pipeline import cache
from pipeline.classify.classifier import FusedClassifier
from pipeline.classify.predict import NewPredictions, predict_cache
from pipeline.provenance import versions
from pipeline.report.files import test_rows, write_test_files
from pipeline.report.run_folder import RunFolder, check_out_folder, next_free

PREDICTION_FILE = "prediction.json"


def default_out(run_folder: Path, cache_settings: dict) -> Path:
    """``<run folder>_predict_<data folder name>`` beside the run folder (the next free name)."""
    data_name = cache.data_name(cache_settings)
    run_folder = Path(run_folder)
    return next_free(run_folder.with_name(f"{run_folder.name}_predict_{data_name}"))


def write_predictions(folder: Path, predictions: NewPredictions) -> list[tuple[str, str]]:
    """Write the files of ``predictions`` into ``folder``; return the submission rows."""
    classifier = predictions.classifier
    samples = predictions.test.sample_index if predictions.test is not None else []
    rows, probabilities = test_rows(samples, predictions.proba, classifier.classes, predictions.filled,
                                    classifier.fill_class)
    write_test_files(folder, rows, probabilities, classifier.classes)
    payload = {
        "model": str(predictions.model_dir),
        "head": classifier.head_name,
        "level": classifier.scheme.level,
        "classes": classifier.classes,
        "cache_dir": str(predictions.cache_dir),
        "data_dir": predictions.cache_settings.get("data_dir"),
        "n_test_images": len(samples),
        "filled_with_majority_class": predictions.filled,
        "versions": versions(),
    }
    if isinstance(classifier, FusedClassifier):
        payload["fusion"] = classifier.mode
        payload["caches"] = [str(cache_dir) for cache_dir in predictions.cache_dirs]
    (folder / PREDICTION_FILE).write_text(json.dumps(payload, indent=2, default=str) + "\n")
    return rows


def predict_and_write(
    run_folder: Path, features: Path | Sequence[Path], data_dir: Path | None = None, out: Path | None = None,
    overwrite: bool = False,
) -> tuple[NewPredictions, Path, list[tuple[str, str]]]:
    """Predict a cache's test images with a saved run's model and write them (a fused model: one cache per member).

    Returns:
        The predictions, the folder written and the submission rows.

    Raises:
        PipelineError: No model, a cache that does not fit it, or an existing ``out`` without ``overwrite``.
    """
    if out is not None:
        check_out_folder(Path(out), overwrite)  # before the model and the cache are read
    predictions = predict_cache(run_folder, features, data_dir)
    final = Path(out) if out is not None else default_out(run_folder, predictions.cache_settings)
    folder = RunFolder(final, overwrite=overwrite, movable=out is None)
    with folder as temp_dir:
        rows = write_predictions(temp_dir, predictions)
    return predictions, folder.final, rows


def format_prediction_summary(predictions: NewPredictions, folder: Path, rows: list[tuple[str, str]]) -> str:
    """The lines ``classify.py --predict`` prints: counts per class and where the files are."""
    counts = {name: sum(label == name for _, label in rows) for name in predictions.classifier.classes}
    shown = ", ".join(f"{n} {name}" for name, n in counts.items() if n)
    caches = " + ".join(map(str, predictions.cache_dirs or [predictions.cache_dir]))
    lines = [f"{len(rows)} test images of {caches} predicted by {predictions.classifier.head_name} "
             f"({predictions.model_dir}): {shown or 'none'}",
             f"files: {folder / 'submission.csv'}, {folder / 'test_predictions.csv'}"]
    if predictions.filled:
        lines.append(f"warning: {len(predictions.filled)} test image(s) had no features (skipped by extraction) and "
                     f"were given the majority class {predictions.classifier.fill_class}")
    return "\n".join(lines)
