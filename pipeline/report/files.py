"""The files of a run folder.

Per head: ``metrics.json``, ``oof_predictions.csv`` (``sample_index,label,pred,fold,proba_<class>...``),
``submission.csv`` (``sample_index,label`` for every test image, sorted), ``model/`` (the fitted classifier) and, at
the top, ``config.json``. With several heads the best one (cross-validated weighted F1) fills the top level and
each head also gets ``heads/<name>/``. Pictures and ``report.html`` come from :mod:`pipeline.report.pictures`.
"""

from __future__ import annotations

import csv
import json
from collections import Counter
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pipeline.classify.results import ClassificationResult, HeadResult
from pipeline.classify.settings import ClassificationSettings
from pipeline.hygiene.quality_file import write_quality_csv
from pipeline.provenance import versions


def _json(path: Path, payload: object) -> None:
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def settings_dict(settings: ClassificationSettings) -> dict:
    """JSON-ready settings."""
    return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(settings).items()}


def write_oof(path: Path, result: ClassificationResult, run: HeadResult) -> None:
    """One row per training image: true label, out-of-fold prediction, fold and probabilities."""
    classes = result.classes
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sample_index", "label", "pred", "fold", *[f"proba_{c}" for c in classes]])
        for i in np.argsort(result.train.sample_index, kind="stable"):
            proba = run.oof_proba[i]
            writer.writerow([result.train.sample_index[i], classes[result.labels[i]], classes[int(proba.argmax())],
                             int(run.folds[i]), *[f"{p:.6f}" for p in proba]])


def submission_rows(result: ClassificationResult, run: HeadResult) -> list[tuple[str, str]]:
    """``(sample_index, label)`` for every test image, sorted; images without features get the majority class."""
    rows = {}
    if result.test is not None and run.test_proba is not None:
        for sample, proba in zip(result.test.sample_index, run.test_proba, strict=True):
            rows[sample] = result.classes[int(proba.argmax())]
    majority = Counter(result.labels.tolist()).most_common(1)[0][0]
    for sample in result.filled_test:
        rows.setdefault(sample, result.classes[majority])
    return sorted(rows.items())


def write_head(folder: Path, result: ClassificationResult, run: HeadResult, settings: ClassificationSettings) -> None:
    """The files of one head."""
    folder.mkdir(parents=True, exist_ok=True)
    _json(folder / "metrics.json", {**run.metrics, "head": run.name, "seconds": round(run.seconds, 3),
                                    "settings": settings_dict(settings)})
    write_oof(folder / "oof_predictions.csv", result, run)
    rows = submission_rows(result, run)
    if rows:
        with (folder / "submission.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sample_index", "label"])
            writer.writerows(rows)
    run.classifier.save(folder / "model")


def write_run(folder: Path, result: ClassificationResult, settings: ClassificationSettings, title: str) -> None:
    """Write every file of the run into ``folder``; ``title`` (the run folder's final name) heads report.html."""
    best = result.best
    write_head(folder, result, best, settings)
    if result.quality is not None:
        write_quality_csv(folder / "quality.csv", result.quality)
    if len(result.heads) > 1:
        for run in result.heads:
            write_head(folder / "heads" / run.name, result, run, settings)
        metrics = json.loads((folder / "metrics.json").read_text())
        metrics["best_head"] = best.name
        metrics["heads"] = {run.name: _headline(run) for run in result.heads}
        _json(folder / "metrics.json", metrics)
    _json(folder / "config.json", {
        "settings": settings_dict(settings),
        "cache_dir": str(result.cache_dir),
        "cache_settings": best.classifier.cache_identity,
        "classes": result.classes,
        "n_train_images": result.train.n_images,
        "n_test_images": result.test.n_images if result.test is not None else 0,
        "skipped_by_extraction": result.skipped,
        "left_out_of_training": left_out(result),
        "hygiene_warnings": result.hygiene_warnings,
        "versions": versions(),
    })
    if settings.pictures:
        from pipeline.report.pictures import write_pictures  # matplotlib is imported only when pictures are drawn

        write_pictures(folder, result, settings, title)


def left_out(result: ClassificationResult) -> dict[str, list[str]]:
    """{sample_index: reasons} of the training images the heads did not train on."""
    if result.trainable is None or result.quality is None:
        return {}
    return {
        result.train.sample_index[i]: result.quality.reasons(i) or ["duplicate (--dedupe)"]
        for i in np.nonzero(~result.trainable)[0]
    }


def _headline(run: HeadResult) -> dict:
    keys = ("weighted_f1", "macro_f1", "accuracy", "weighted_f1_folds_mean", "weighted_f1_folds_std")
    return {**{key: run.metrics[key] for key in keys}, "seconds": round(run.seconds, 3)}
