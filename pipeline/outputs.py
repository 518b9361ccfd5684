"""Files of a run folder and the printed summary.

Per head: ``metrics.json``, ``oof_predictions.csv`` (``sample_index,label,pred,fold,proba_<class>...``),
``submission.csv`` (``sample_index,label`` for every test image, sorted), ``model/`` (the fitted classifier) and, at
the top, ``config.json``. With several heads the best one (cross-validated weighted F1) fills the top level and
each head also gets ``heads/<name>/``. Pictures and ``report.html`` come from :mod:`pipeline.pictures`.
"""

from __future__ import annotations

import csv
import json
import platform
from collections import Counter
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from pipeline import __version__
from pipeline.hygiene import write_quality_csv

if TYPE_CHECKING:
    from pipeline.classification import ClassificationSettings, ClassificationSummary, HeadRun


def _json(path: Path, payload: object) -> None:
    path.write_text(json.dumps(payload, indent=2, default=str) + "\n")


def settings_dict(settings: ClassificationSettings) -> dict:
    """JSON-ready settings."""
    return {key: str(value) if isinstance(value, Path) else value for key, value in asdict(settings).items()}


def write_oof(path: Path, summary: ClassificationSummary, run: HeadRun) -> None:
    """One row per training image: true label, out-of-fold prediction, fold and probabilities."""
    classes = summary.classes
    with path.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(["sample_index", "label", "pred", "fold", *[f"proba_{c}" for c in classes]])
        for i in np.argsort(summary.train.sample_index, kind="stable"):
            proba = run.oof_proba[i]
            writer.writerow([summary.train.sample_index[i], classes[summary.labels[i]], classes[int(proba.argmax())],
                             int(run.folds[i]), *[f"{p:.6f}" for p in proba]])


def submission_rows(summary: ClassificationSummary, run: HeadRun) -> list[tuple[str, str]]:
    """``(sample_index, label)`` for every test image, sorted; images without features get the majority class."""
    rows = {}
    if summary.test is not None and run.test_proba is not None:
        for sample, proba in zip(summary.test.sample_index, run.test_proba, strict=True):
            rows[sample] = summary.classes[int(proba.argmax())]
    majority = Counter(summary.labels.tolist()).most_common(1)[0][0]
    for sample in summary.filled_test:
        rows.setdefault(sample, summary.classes[majority])
    return sorted(rows.items())


def write_head(folder: Path, summary: ClassificationSummary, run: HeadRun, settings: ClassificationSettings) -> None:
    """The files of one head."""
    folder.mkdir(parents=True, exist_ok=True)
    _json(folder / "metrics.json", {**run.metrics, "head": run.name, "seconds": round(run.seconds, 3),
                                    "settings": settings_dict(settings)})
    write_oof(folder / "oof_predictions.csv", summary, run)
    rows = submission_rows(summary, run)
    if rows:
        with (folder / "submission.csv").open("w", newline="") as handle:
            writer = csv.writer(handle)
            writer.writerow(["sample_index", "label"])
            writer.writerows(rows)
    run.classifier.save(folder / "model")


def write_run(folder: Path, summary: ClassificationSummary, settings: ClassificationSettings) -> None:
    """Write every file of the run into ``folder``."""
    best = summary.best
    write_head(folder, summary, best, settings)
    if summary.quality is not None:
        write_quality_csv(folder / "quality.csv", summary.quality)
    if len(summary.runs) > 1:
        for run in summary.runs:
            write_head(folder / "heads" / run.name, summary, run, settings)
        metrics = json.loads((folder / "metrics.json").read_text())
        metrics["best_head"] = best.name
        metrics["heads"] = {run.name: _headline(run) for run in summary.runs}
        _json(folder / "metrics.json", metrics)
    _json(folder / "config.json", {
        "settings": settings_dict(settings),
        "cache_dir": str(summary.cache_dir),
        "cache_settings": best.classifier.cache_identity,
        "classes": summary.classes,
        "n_train_images": summary.train.n_images,
        "n_test_images": summary.test.n_images if summary.test is not None else 0,
        "skipped_by_extraction": summary.skipped,
        "left_out_of_training": _left_out(summary),
        "versions": {"pipeline": __version__, "python": platform.python_version()},
    })
    if settings.pictures:
        from pipeline.pictures import write_pictures  # matplotlib is imported only when pictures are drawn

        write_pictures(folder, summary, settings)


def _left_out(summary: ClassificationSummary) -> dict[str, list[str]]:
    """{sample_index: reasons} of the training images the heads did not train on."""
    if summary.trainable is None or summary.quality is None:
        return {}
    return {
        summary.train.sample_index[i]: summary.quality.reasons(i) or ["duplicate (--dedupe)"]
        for i in np.nonzero(~summary.trainable)[0]
    }


def _headline(run: HeadRun) -> dict:
    keys = ("weighted_f1", "macro_f1", "accuracy", "weighted_f1_folds_mean", "weighted_f1_folds_std")
    return {**{key: run.metrics[key] for key in keys}, "seconds": round(run.seconds, 3)}


def format_summary(summary: ClassificationSummary) -> str:
    """The printed summary: metrics table, confusion matrix of the best head, the run folder."""
    lines = [f"{'head':<8} {'weighted F1':>12} {'folds (mean ± sd)':>18} {'macro F1':>9} {'accuracy':>9} {'time':>7}"]
    for run in summary.runs:
        m = run.metrics
        lines.append(f"{run.name:<8} {m['weighted_f1']:>12.3f} {m['weighted_f1_folds_mean']:>11.3f} ± "
                     f"{m['weighted_f1_folds_std']:.3f} {m['macro_f1']:>9.3f} {m['accuracy']:>9.3f} "
                     f"{run.seconds:>6.1f}s")
    best = summary.best
    width = max(len(c) for c in summary.classes) + 2
    lines += ["", f"confusion matrix ({best.name}; rows: true, columns: predicted)",
              " " * width + "".join(f"{c[:10]:>11}" for c in summary.classes)]
    for name, row in zip(summary.classes, best.metrics["confusion_matrix"], strict=True):
        lines.append(f"{name:<{width}}" + "".join(f"{v:>11d}" for v in row))
    n_test = len(submission_rows(summary, best))
    lines += ["", f"{summary.train.n_images} training images, {len(summary.classes)} classes; "
              f"{n_test} test predictions; run folder: {summary.run_dir}"]
    if summary.quality is not None:
        n_test_flagged = sum(bool(summary.quality.reasons(i)) for i in range(summary.train.n_images,
                                                                             len(summary.quality.image_ids)))
        lines.append(f"hygiene: {summary.quality.summary()}; {len(_left_out(summary))} training image(s) left out "
                     f"of training, {n_test_flagged} test image(s) flagged (kept); see quality.csv")
    if summary.filled_test:
        lines.append(f"warning: {len(summary.filled_test)} test image(s) had no features (skipped by extraction) and "
                     f"were given the majority class: {', '.join(summary.filled_test[:10])}")
    return "\n".join(lines)
