"""Hygiene on lc25000-lung: duplicate groups found, grouped vs plain folds, and the cost of the cheap checks.

1. Extracts ../shared/data/lc25000-lung with efficientnet-lite0 (or reuses --features).
2. Counts near-duplicate groups and compares weighted F1 of 5-fold CV with duplicate groups kept in one fold against
   plain stratified folds (each image its own group), same head (logreg) and seed.
3. Times extraction of the first --cost-images images with and without the cheap checks (stain scores and
   perceptual hashes), end to end, and the checks alone on the decoded images.

    python -m benchmarks.hygiene_lung [--features DIR] [--cost-images 120] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GOMP_SPINCOUNT", "20000")

import numpy as np

from benchmarks import SHARED_DATA
from pipeline import cache
from pipeline.classify.evaluation import Scheme, cross_validate
from pipeline.classify.folds import make_folds
from pipeline.classify.metrics import compute_metrics
from pipeline.data.images import read_image, read_mask
from pipeline.data.labels import read_labels
from pipeline.data.records import find_records
from pipeline.embed.loading import load_model
from pipeline.extract.run import run_extraction
from pipeline.extract.settings import ExtractionSettings
from pipeline.heads.registry import make_head
from pipeline.hygiene.assessment import assess_feature_sets
from pipeline.hygiene.checks import image_quality

LUNG = SHARED_DATA / "lc25000-lung"


def grouped_vs_plain(cache_dir: Path) -> dict:
    train = cache.load_split(cache_dir, "train")
    report = assess_feature_sets([train])
    names = read_labels(LUNG / "train_labels.csv")
    labels_text = np.array([names[s] for s in train.sample_index])
    classes = sorted(set(labels_text))
    labels = np.array([classes.index(c) for c in labels_text])
    sizes = np.bincount(report.duplicate_group)
    result = {"images": train.n_images, "groups_of_2_or_more": int((sizes > 1).sum()),
              "images_in_groups": int(sizes[sizes > 1].sum()), "flags": report.counts()}
    for name, groups in (("grouped", report.duplicate_group), ("plain", np.arange(train.n_images))):
        folds = make_folds(labels_text, groups, 5, seed=0)
        cv = cross_validate(lambda: make_head("logreg", seed=0), train, labels, groups, folds, Scheme(), len(classes))
        metrics = compute_metrics(labels, cv.proba.argmax(1), classes, cv.fold_weighted_f1)
        result[f"weighted_f1_{name}"] = round(metrics["weighted_f1"], 4)
    return result


def cost(n_images: int, folder: Path) -> dict:
    data = folder / "cost-data" / "train_data"
    data.mkdir(parents=True)
    records = find_records(LUNG, "train")[:n_images]
    for record in records:
        shutil.copy(record.image_path, data / record.image_path.name)
        shutil.copy(record.mask_path, data / record.mask_path.name)
    model = load_model("efficientnet-lite0")
    seconds = {}
    for checks in (False, True, False, True):  # interleaved, best of two each
        settings = ExtractionSettings(data_dir=data.parent, out_dir=folder / f"cost-{checks}-{time.time()}",
                                      quality_checks=checks, progress=False)
        started = time.perf_counter()
        run_extraction(settings, model)
        seconds[checks] = min(seconds.get(checks, np.inf), time.perf_counter() - started)
    started = time.perf_counter()
    for record in records:
        pixels = read_image(record.image_path).pixels
        image_quality(pixels, read_mask(record.mask_path, pixels.shape[1::-1]).inside)
    decode_and_checks = time.perf_counter() - started
    started = time.perf_counter()
    for record in records:
        pixels = read_image(record.image_path).pixels
        read_mask(record.mask_path, pixels.shape[1::-1])
    decode_only = time.perf_counter() - started
    return {"images": n_images, "extraction_s_without_checks": round(seconds[False], 2),
            "extraction_s_with_checks": round(seconds[True], 2),
            "overhead_percent_end_to_end": round(100 * (seconds[True] / seconds[False] - 1), 1),
            "checks_ms_per_image": round(1000 * (decode_and_checks - decode_only) / n_images, 2),
            "checks_percent_of_extraction": round(100 * (decode_and_checks - decode_only) / seconds[True], 1)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--features", type=Path, default=None, help="an existing efficientnet-lite0 lung cache")
    parser.add_argument("--cost-images", type=int, default=120)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as folder:
        cache_dir = args.features
        if cache_dir is None:
            summary = run_extraction(ExtractionSettings(data_dir=LUNG, model="efficientnet-lite0",
                                                        out_dir=Path(folder), progress=False))
            cache_dir = summary.cache_dir
        duplicates = grouped_vs_plain(cache_dir)
        print(json.dumps(duplicates, indent=2))
        overhead = cost(args.cost_images, Path(folder))
        print(json.dumps(overhead, indent=2))
    if args.json:
        args.json.write_text(json.dumps({"duplicates": duplicates, "cost": overhead}, indent=2) + "\n")


if __name__ == "__main__":
    main()
