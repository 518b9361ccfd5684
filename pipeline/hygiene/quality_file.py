"""``quality.csv``: one row per image with every hygiene score, flag and duplicate group."""

from __future__ import annotations

import csv
from collections import Counter
from pathlib import Path

from pipeline.hygiene.assessment import FLAGS, QualityReport


def write_quality_csv(path: Path, report: QualityReport) -> None:
    """One row per image: sample_index, split, image_id, each score, each flag (0/1), duplicate group and size."""
    sizes = Counter(report.duplicate_group.tolist())
    columns = [
        "sample_index",
        "split",
        "image_id",
        *report.scores,
        *FLAGS,
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
                    *[f"{report.scores[key][i]:.4f}" for key in report.scores],
                    *[int(report.flags[flag][i]) for flag in FLAGS],
                    group,
                    sizes[group],
                    report.nearest[i],
                ]
            )
    temp.replace(path)
