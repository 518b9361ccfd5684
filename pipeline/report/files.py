"""The files of a run folder.

Per head: ``metrics.json``, ``oof_predictions.csv`` (``sample_index,label,pred,fold,proba_<class>...``),
``submission.csv`` (``sample_index,label`` for every test image, sorted), ``test_predictions.csv``
(``sample_index,pred,proba_<class>...``), ``model/`` (the fitted classifier) and, at the top, ``config.json``.
With several heads the best one (cross-validated weighted F1) fills the top level and each head also gets
``heads/<name>/``. ``quality.csv`` and ``quality_flagged.png`` (when any image is flagged) are this run's
hygiene assessment, with its thresholds. A fused run (``--features A B``) scores the fused predictions everywhere;
its ``metrics.json`` adds ``fusion`` (mode, caches, each cache alone on the same folds, and a ``submission`` line
that says the submission is the fused result and how it compares with each member) and ``config.json`` lists
every cache.
Pictures and ``report.html`` come from :mod:`pipeline.report.pictures`. ``classify.py --predict`` writes the same
two test files from a saved model (:mod:`pipeline.report.predict`).
"""

from __future__ import annotations

import csv
import json
from dataclasses import asdict
from pathlib import Path

import numpy as np

from pipeline.classify.results import ClassificationResult, HeadResult
from pipeline.classify.settings import ClassificationSettings
from pipeline.data.records import find_records
from pipeline.errors import PipelineError
from pipeline.hygiene.assessment import QUALITY_SHEET
from pipeline.hygiene.contact_sheet import write_contact_sheet
from pipeline.hygiene.quality_file import write_quality_csv
from pipeline.provenance import versions
from pipeline.report.headline import submission_block


def _json(path: Path, payload: object) -> None:
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def settings_dict(settings: ClassificationSettings) -> dict:
    """JSON-ready settings (several ``--features`` become a list of strings)."""
    out = {key: str(value) if isinstance(value, Path) else value for key, value in asdict(settings).items()}
    if isinstance(out["features"], (list, tuple)):
        out["features"] = [str(value) for value in out["features"]]
    return out


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
    samples = result.test.sample_index if result.test is not None and run.test_proba is not None else []
    return test_rows(samples, run.test_proba, result.classes, result.filled_test, result.fill_class)[0]


def test_rows(
    samples: list[str], proba: np.ndarray | None, classes: list[str], filled: list[str], fill_class: str | None
) -> tuple[list[tuple[str, str]], list[list[str]]]:
    """The rows of ``submission.csv`` and ``test_predictions.csv``, both sorted by ``sample_index``.

    Args:
        samples: Test images with features; proba: (len(samples), C) their probabilities.
        classes: Class names, column order. filled: Test images without features, given ``fill_class``.

    Returns:
        ``(sample_index, label)`` rows, and ``[sample_index, pred, proba...]`` rows (images with features only).
    """
    rows, probabilities = {}, []
    for sample, p in zip(samples, proba if proba is not None else [], strict=True):
        rows[sample] = classes[int(p.argmax())]
        probabilities.append([sample, rows[sample], *[f"{v:.6f}" for v in p]])
    for sample in filled:
        if fill_class is not None:
            rows.setdefault(sample, fill_class)
    return sorted(rows.items()), sorted(probabilities)


def write_test_files(folder: Path, rows: list[tuple[str, str]], probabilities: list[list[str]],
                     classes: list[str]) -> None:
    """Write ``submission.csv`` and ``test_predictions.csv`` (when there are rows)."""
    if not rows:
        return
    with (folder / "submission.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sample_index", "label"])
        writer.writerows(rows)
    with (folder / "test_predictions.csv").open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sample_index", "pred", *[f"proba_{c}" for c in classes]])
        writer.writerows(probabilities)


def write_head(folder: Path, result: ClassificationResult, run: HeadResult, settings: ClassificationSettings) -> None:
    """The files of one head."""
    folder.mkdir(parents=True, exist_ok=True)
    metrics = {**run.metrics, "head": run.name, "seconds": round(run.seconds, 3), "settings": settings_dict(settings),
               "submission": submission_block(result, run)}
    if result.fusion is not None:
        metrics["fusion"] = fusion_block(result, run)
    _json(folder / "metrics.json", metrics)
    write_oof(folder / "oof_predictions.csv", result, run)
    samples = result.test.sample_index if result.test is not None and run.test_proba is not None else []
    write_test_files(folder, *test_rows(samples, run.test_proba, result.classes, result.filled_test,
                                        result.fill_class), result.classes)
    run.classifier.save(folder / "model")


def write_run(folder: Path, result: ClassificationResult, settings: ClassificationSettings, title: str) -> None:
    """Write every file of the run into ``folder``; ``title`` (the run folder's final name) heads report.html."""
    best = result.best
    write_head(folder, result, best, settings)
    if result.quality is not None:
        write_quality_csv(folder / "quality.csv", result.quality)
        write_contact_sheet(folder / QUALITY_SHEET, result.quality, image_paths(result))
    if len(result.heads) > 1:
        for run in result.heads:
            write_head(folder / "heads" / run.name, result, run, settings)
        metrics = json.loads((folder / "metrics.json").read_text())
        metrics["best_head"] = best.name
        metrics["heads"] = {run.name: _headline(run) for run in result.heads}
        _json(folder / "metrics.json", metrics)
    config = {
        "settings": settings_dict(settings),
        "cache_dir": str(result.cache_dir),
        "cache_settings": result.cache_settings if result.fusion is not None else best.classifier.cache_identity,
        "classes": result.classes,
        "n_train_images": result.train.n_images,
        "n_test_images": result.test.n_images if result.test is not None else 0,
        "skipped_by_extraction": result.skipped,
        "left_out_of_training": left_out(result),
        "hygiene_warnings": result.hygiene_warnings,
        "versions": versions(),
    }
    if result.fusion is not None:  # cache_dir and cache_settings above are the first cache's
        config["fusion"] = {"mode": result.fusion.mode, "caches": [
            {"label": label, "cache_dir": str(cache_dir), "cache_settings": cache_settings}
            for label, cache_dir, cache_settings in zip(result.fusion.labels, result.fusion.cache_dirs,
                                                        result.fusion.cache_settings, strict=True)]}
    _json(folder / "config.json", config)
    if settings.pictures:
        from pipeline.report.pictures import write_pictures  # matplotlib is imported only when pictures are drawn

        write_pictures(folder, result, settings, title)


def image_paths(result: ClassificationResult) -> dict[str, Path]:
    """Image id -> original image file, for the contact sheet (empty when the data folder is gone: grey squares)."""
    try:
        return {record.image_id: record.image_path
                for record in find_records(Path(result.cache_settings.get("data_dir", "")), slides=True)}
    except PipelineError:
        return {}


def left_out(result: ClassificationResult) -> dict[str, list[str]]:
    """{sample_index: reasons} of the training images the heads did not train on."""
    if result.trainable is None or result.quality is None:
        return {}
    return {
        result.train.sample_index[i]: result.quality.reasons(i) or ["duplicate (--dedupe)"]
        for i in np.nonzero(~result.trainable)[0]
    }


def fusion_block(result: ClassificationResult, run: HeadResult) -> dict:
    """``metrics.json``'s ``fusion``: the mode, the caches and the head on each cache alone (same folds)."""
    fusion = result.fusion
    return {"mode": fusion.mode, "caches": [str(folder) for folder in fusion.cache_dirs],
            "members": {label: _headline(member) for label, member in zip(fusion.labels, run.members, strict=True)}}


def _headline(run: HeadResult) -> dict:
    keys = ("weighted_f1", "weighted_f1_ci95", "macro_f1", "macro_f1_ci95", "accuracy", "weighted_f1_folds_mean",
            "weighted_f1_folds_std", "weighted_f1_repeats_mean", "weighted_f1_repeats_std")
    return {**{key: run.metrics[key] for key in keys if key in run.metrics}, "level": run.classifier.scheme.level,
            "seconds": round(run.seconds, 3)}
