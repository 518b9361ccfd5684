"""The summary ``classify.py`` prints: the heads' scores, the best head's confusion matrix, hygiene, the run folder."""

from __future__ import annotations

from pathlib import Path

from pipeline.classify.confidence import ci_text
from pipeline.classify.results import ClassificationResult
from pipeline.report.files import left_out, submission_rows
from pipeline.report.headline import submission_text


def format_summary(result: ClassificationResult, run_dir: Path) -> str:
    """The printed result: metrics table, confusion matrix of the best head, the run folder.

    The table gives bootstrap 95% intervals and, with ``--repeats``, the repeats' mean and sd.
    """
    lines = [f"{'head':<8} {'weighted F1':>12} {'95% CI':>14} {'folds (mean ± sd)':>18} {'macro F1':>9} "
             f"{'95% CI':>14} {'accuracy':>9} {'time':>7}"]
    for run in result.heads:
        m = run.metrics
        lines.append(f"{run.name:<8} {m['weighted_f1']:>12.3f} {ci_text(m, 'weighted_f1'):>14} "
                     f"{m['weighted_f1_folds_mean']:>11.3f} ± {m['weighted_f1_folds_std']:.3f} {m['macro_f1']:>9.3f} "
                     f"{ci_text(m, 'macro_f1'):>14} {m['accuracy']:>9.3f} {run.seconds:>6.1f}s")
    lines += repeat_lines(result)
    lines += fusion_lines(result)
    best = result.best
    width = max(len(c) for c in result.classes) + 2
    lines += ["", f"confusion matrix ({best.name}; rows: true, columns: predicted)",
              " " * width + "".join(f"{c[:10]:>11}" for c in result.classes)]
    for name, row in zip(result.classes, best.metrics["confusion_matrix"], strict=True):
        lines.append(f"{name:<{width}}" + "".join(f"{v:>11d}" for v in row))
    n_test = len(submission_rows(result, best))
    lines += ["", f"{result.train.n_images} training images, {len(result.classes)} classes; "
              f"{n_test} test predictions; run folder: {run_dir}"]
    if result.fusion is not None or len(result.heads) > 1:
        lines.append(submission_text(result, best))
    if result.quality is not None:
        n_test_flagged = sum(bool(result.quality.reasons(i)) for i in range(result.train.n_images,
                                                                             len(result.quality.image_ids)))
        lines.append(f"hygiene: {result.quality.summary()}; {len(left_out(result))} training image(s) left out "
                     f"of training, {n_test_flagged} test image(s) flagged (kept); see quality.csv")
    lines += [f"warning: {line}" for line in result.hygiene_warnings]
    if result.filled_test:
        lines.append(f"warning: {len(result.filled_test)} test image(s) had no features (skipped by extraction) and "
                     f"were given the majority class: {', '.join(result.filled_test[:10])}")
    return "\n".join(lines)


def repeat_lines(result: ClassificationResult) -> list[str]:
    """With ``--repeats R``: one line per head with the mean ± sd of weighted and macro F1 over the R repeats."""
    if not any(run.metrics.get("repeats", 1) > 1 for run in result.heads):
        return []
    m = result.heads[0].metrics
    lines = ["", f"repeated cross-validation ({m['repeats']} seeds: {', '.join(map(str, m['repeat_seeds']))}; "
                 "pooled out-of-fold scores, mean ± sd)"]
    for run in result.heads:
        m = run.metrics
        lines.append(f"{run.name:<8} weighted F1 {m['weighted_f1_repeats_mean']:.3f} ± "
                     f"{m['weighted_f1_repeats_std']:.3f}   macro F1 {m['macro_f1_repeats_mean']:.3f} ± "
                     f"{m['macro_f1_repeats_std']:.3f}")
    return lines


def fusion_lines(result: ClassificationResult) -> list[str]:
    """A fused run: per head, the head on each cache alone and fused, on the same folds (the table above is fused)."""
    fusion = result.fusion
    if fusion is None:
        return []
    width = max(len(label) for label in (*fusion.labels, f"fused ({fusion.mode})"))
    lines = ["", f"{fusion.mode} fusion of {len(fusion.cache_dirs)} caches (the scores above): each cache alone "
                 "and fused, same folds",
             f"{'head':<8} {'cache':<{width}} {'weighted F1':>12} {'95% CI':>14} {'macro F1':>9} {'accuracy':>9}"]
    for run in result.heads:
        rows = [*zip(fusion.labels, run.members, strict=True), (f"fused ({fusion.mode})", run)]
        for label, member in rows:
            m = member.metrics
            lines.append(f"{run.name:<8} {label:<{width}} {m['weighted_f1']:>12.3f} {ci_text(m, 'weighted_f1'):>14} "
                         f"{m['macro_f1']:>9.3f} {m['accuracy']:>9.3f}")
    return lines
