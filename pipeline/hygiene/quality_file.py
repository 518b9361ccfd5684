"""``quality.csv``: one row per image with every hygiene score, flag and duplicate group."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from pipeline.hygiene.assessment import FLAGS, QualityReport


def write_quality_csv(path: Path, report: QualityReport) -> None:
    """One row per image: ids, each score, each flag (0/1), the rules behind them, duplicate group and size.

    Columns: sample_index, split, image_id, the scores, the flags, ``rules`` (e.g. ``little_stain;flat_fills``),
    duplicate_group, group_size, nearest_image. Scores an image lacks (a file scored by an older version) are empty.
    """
    sizes = Counter(report.duplicate_group.tolist())
    columns = [
        "sample_index",
        "split",
        "image_id",
        *report.scores,
        *FLAGS,
        "rules",
        "duplicate_group",
        "group_size",
        "nearest_image",
    ]
    temp = path.with_name(f".{path.name}.tmp")
    with temp.open("w", newline="") as handle:
        writer = csv.writer(handle)
        writer.writerow(columns)
        for i, image_id in enumerate(report.image_ids):
            group = int(report.duplicate_group[i])
            writer.writerow(
                [
                    report.sample_index[i],
                    report.splits[i],
                    image_id,
                    *[_number(report.scores[key][i]) for key in report.scores],
                    *[int(report.flags[flag][i]) for flag in FLAGS],
                    ";".join(report.rules_of(i)),
                    group,
                    sizes[group],
                    report.nearest[i],
                ]
            )
    temp.replace(path)


def _number(value: float) -> str:
    return f"{value:.4f}" if value == value else ""  # NaN (a missing score) as an empty cell
