"""MIL benchmark: every head and level on LC25000 lung mosaics whose class lives in 1-2 of 9 tiles, same grouped folds.

1. Builds the data with :mod:`benchmarks.mil_data` when ``--data`` has no ``build.json`` (3x3 mosaics of 224 px
   tiles; tumour tiles used once; the tile blocks that share normal tiles are the duplicate groups).
2. Extracts efficientnet-lite0 features with 224 px tiles (each mosaic's 9 tiles are its source tiles) unless
   ``--features`` names a cache of that data folder.
3. Makes ``--folds`` folds with the library's ``make_folds`` over the blocks (``train_groups.csv: group``), so no
   validation mosaic shares a tile with a training mosaic, and runs the library's ``cross_validate`` on those folds for
   every head and level: tile level (logreg, lgbm, mlp; mean and majority votes from the same out-of-fold tiles), image
   level with each pool (mean, mean+max, mean+max+std) and abmil. The heads' inner early-stopping splits keep
   ``inner_group`` whole (mosaics with near-duplicate tumour tiles); blocks hold every class equally, so they cannot
   serve there. Metrics of the pooled out-of-fold predictions with bootstrap 95% intervals over blocks; then a final fit
   on all training mosaics, scored on the held-out test mosaics.
4. abmil: how much out-of-fold attention the tumour (witness) tiles get, and repeats with other head seeds (same
   folds) and, with ``--fold-seeds``, other folds (abmil and the best tile-level head).

    python -m benchmarks.bench_mil --data DIR [--features CACHE] [--folds 5] [--seed 0] [--abmil-seeds 1,2]
                                   [--fold-seeds 1,2] [--n-jobs 1] [--json out.json]
"""

from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import time
from pathlib import Path

os.environ.setdefault("GOMP_SPINCOUNT", "20000")

import numpy as np
from sklearn.metrics import f1_score

from benchmarks import SHARED_DATA
from benchmarks.mil_data import build
from pipeline import cache
from pipeline.cache.featureset import FeatureSet
from pipeline.classify.confidence import confidence_intervals
from pipeline.classify.evaluation import Scheme, cross_validate, fit_head, predict_subset
from pipeline.classify.folds import make_folds
from pipeline.classify.votes import vote
from pipeline.data.labels import read_labels
from pipeline.errors import PipelineError
from pipeline.heads.registry import make_head

TILE = 224
ROW_HEADS = ("logreg", "lgbm", "mlp")
POOLS = (("mean",), ("mean", "max"), ("mean", "max", "std"))


def read_column(path: Path, sample_index: list[str], column: str) -> np.ndarray:
    """(n_images,) int64 values of one column of a ``sample_index,...`` CSV, in the order of ``sample_index``."""
    with open(path, newline="", encoding="utf-8") as file:
        values = {row["sample_index"]: int(row[column]) for row in csv.DictReader(file)}
    return np.array([values[s] for s in sample_index], dtype=np.int64)


def witness_flags(data: Path, split: str, features: FeatureSet) -> np.ndarray:
    """(n_tiles,) bool: the tile is a tumour (witness) tile, from mosaics.csv and each tile's (x, y)."""
    witness = {}
    with open(data / "mosaics.csv", newline="", encoding="utf-8") as file:
        for row in csv.DictReader(file):
            if row["split"] == split:
                witness[(row["sample_index"], int(row["x"]), int(row["y"]))] = row["witness"] == "1"
    return np.array([witness[(features.sample_index[i], int(x), int(y))]
                     for i, (x, y) in zip(features.image_index, features.coords, strict=True)])


def attention_summary(attention: np.ndarray, witness: np.ndarray, features: FeatureSet, tumour: np.ndarray) -> dict:
    """Share of attention on the witness tiles of tumour images, and how often the top tile is a witness tile."""
    index = features.image_index
    mass = np.bincount(index, weights=np.where(witness, attention, 0.0), minlength=features.n_images)
    share = np.bincount(index, weights=witness.astype(float), minlength=features.n_images) / np.bincount(index)
    order = np.lexsort((-attention, index))  # by image, highest attention first
    first = order[np.concatenate([[True], np.diff(index[order]) != 0])]
    top_is_witness = np.zeros(features.n_images, dtype=bool)
    top_is_witness[index[first]] = witness[first]
    top_weight = np.zeros(features.n_images)
    top_weight[index[first]] = attention[first]
    return {
        "witness_attention_mass": round(float(mass[tumour].mean()), 4),
        "witness_share_of_tiles": round(float(share[tumour].mean()), 4),
        "top_tile_is_witness": round(float(top_is_witness[tumour].mean()), 4),
        "normal_images_top_weight": round(float(top_weight[~tumour].mean()), 4),
    }


def scores(labels: np.ndarray, proba: np.ndarray, groups: np.ndarray, folds: np.ndarray | None) -> dict:
    """Weighted and macro F1 of pooled predictions, their 95% intervals (groups resampled whole), per-fold F1."""
    predictions = proba.argmax(1)
    out = {"weighted_f1": round(float(f1_score(labels, predictions, average="weighted")), 4),
           "macro_f1": round(float(f1_score(labels, predictions, average="macro")), 4),
           **confidence_intervals(labels, predictions, groups, seed=0)}
    if folds is not None:
        per_fold = [float(f1_score(labels[folds == k], predictions[folds == k], average="weighted"))
                    for k in np.unique(folds)]
        out["folds_mean"], out["folds_sd"] = round(float(np.mean(per_fold)), 4), round(float(np.std(per_fold)), 4)
    return out


def find_cache(data: Path, features: Path | None, root: Path) -> Path:
    """The efficientnet-lite0 cache of ``data``: ``features`` if given, else extracted under ``root`` if missing."""
    if features is not None:
        return cache.resolve_cache(features, data)
    try:
        return cache.resolve_cache(root, data)
    except PipelineError:
        pass  # not extracted yet
    from pipeline.cli.extract import main as extract_main

    args = ["--data", str(data), "--model", "efficientnet-lite0", "--out", str(root), "--tile-size", str(TILE),
            "--no-progress", "-q"]
    print("extracting:", " ".join(args), flush=True)
    if extract_main(args) != 0:
        raise SystemExit("extraction failed")
    return cache.resolve_cache(root, data)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="benchmark data folder (built there if missing)")
    parser.add_argument("--src", type=Path, default=SHARED_DATA / "lc25000-lung")
    parser.add_argument("--features", type=Path, default=None, help="its efficientnet-lite0 cache (default: extract)")
    parser.add_argument("--features-root", type=Path, default=Path("features"))
    parser.add_argument("--folds", type=int, default=5)
    parser.add_argument("--seed", type=int, default=0, help="seed of the folds and of every head")
    parser.add_argument("--abmil-seeds", default="1,2", help="extra abmil head seeds on the same folds")
    parser.add_argument("--fold-seeds", default="", help="other fold seeds: abmil and the best tile head again")
    parser.add_argument("--n-jobs", type=int, default=1, help="threads of lgbm and mlp (abmil uses its default, 1)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    if not (args.data / "build.json").is_file():
        print(f"building {args.data} from {args.src}", flush=True)
        build(args.src, args.data, seed=0, train_per_class=120, test_per_class=20, n_blocks=12, overwrite=False)
    cache_dir = find_cache(args.data, args.features, args.features_root)
    started_all = time.perf_counter()
    train, test = cache.load_split(cache_dir, "train"), cache.load_split(cache_dir, "test")
    train_names, test_names = read_labels(args.data / "train_labels.csv"), read_labels(args.data / "test_labels.csv")
    classes = sorted(set(train_names.values()))
    labels = np.array([classes.index(train_names[s]) for s in train.sample_index])
    test_labels = np.array([classes.index(test_names[s]) for s in test.sample_index])
    blocks = read_column(args.data / "train_groups.csv", train.sample_index, "group")
    inner = read_column(args.data / "train_groups.csv", train.sample_index, "inner_group")
    test_groups = read_column(args.data / "test_groups.csv", test.sample_index, "group")
    folds = make_folds(np.array(classes)[labels], blocks, args.folds, args.seed)
    n_classes, normal = len(classes), classes.index("lung_n")
    print(f"{train.n_images} training mosaics ({len(np.unique(blocks))} blocks, {len(np.unique(inner))} inner groups, "
          f"{len(train.embeddings)} tiles, D={train.dim}), {test.n_images} test mosaics; fold sizes "
          f"{np.bincount(folds).tolist()}; cache {cache_dir}", flush=True)

    rows: list[dict] = []

    def evaluate(head: str, scheme: Scheme, seed: int, on: np.ndarray = folds) -> tuple[object, object, object, float]:
        def make() -> object:
            return make_head(head, seed=seed, n_jobs=None if head in ("logreg", "abmil") else args.n_jobs)

        started = time.perf_counter()
        cv = cross_validate(make, train, labels, inner, on, scheme, n_classes)
        final = fit_head(make, train, np.arange(train.n_images), labels, inner, scheme)
        test_out = predict_subset(final, test, np.arange(test.n_images), n_classes, scheme)
        return cv, test_out, final, time.perf_counter() - started

    def record(name: str, level: str, proba: np.ndarray, test_proba: np.ndarray, seconds: float, **extra) -> dict:
        row = {"name": name, "level": level, **scores(labels, proba, blocks, folds),
               "test": scores(test_labels, test_proba, test_groups, None), "seconds": round(seconds, 1), **extra}
        rows.append(row)
        ci = row["weighted_f1_ci95"]
        print(f"{name:<28} wF1 {row['weighted_f1']:.3f} [{ci[0]:.3f}, {ci[1]:.3f}]  macro {row['macro_f1']:.3f}  "
              f"folds {row['folds_mean']:.3f} ± {row['folds_sd']:.3f}  test wF1 {row['test']['weighted_f1']:.3f}  "
              f"{seconds:5.1f} s", flush=True)
        return row

    for head in ROW_HEADS:  # tile level: one cross-validation, both votes from the same out-of-fold tiles
        cv, test_out, _, seconds = evaluate(head, Scheme("tile", "mean"), args.seed)
        for rule in ("mean", "majority"):
            record(f"tile {head}, {rule} vote", "tile", vote(cv.tile_proba, train.image_index, train.n_images, rule),
                   vote(test_out.tile_proba, test.image_index, test.n_images, rule), seconds)
    for pool in POOLS:
        for head in ROW_HEADS:
            cv, test_out, _, seconds = evaluate(head, Scheme("image", pool=pool), args.seed)
            record(f"image {head}, {'+'.join(pool)}", "image", cv.proba, test_out.image_proba, seconds)
    witness, test_witness = witness_flags(args.data, "train", train), witness_flags(args.data, "test", test)
    cv, test_out, final, seconds = evaluate("abmil", Scheme("bag"), args.seed)
    abmil = record("abmil", "bag", cv.proba, test_out.image_proba, seconds, n_models=final.n_models,
                   attention_oof=attention_summary(cv.tile_attention, witness, train, labels != normal),
                   attention_test=attention_summary(test_out.attention, test_witness, test, test_labels != normal),
                   confusion=np.bincount(labels * n_classes + cv.proba.argmax(1),
                                         minlength=n_classes ** 2).reshape(n_classes, n_classes).tolist())
    repeats = [{"seed": args.seed, "weighted_f1": abmil["weighted_f1"], "test": abmil["test"]["weighted_f1"]}]
    for seed in [int(s) for s in args.abmil_seeds.split(",") if s]:
        cv, test_out, _, seconds = evaluate("abmil", Scheme("bag"), seed)
        repeats.append({"seed": seed, "weighted_f1": round(float(f1_score(labels, cv.proba.argmax(1),
                                                                          average="weighted")), 4),
                        "test": round(float(f1_score(test_labels, test_out.image_proba.argmax(1),
                                                     average="weighted")), 4), "seconds": round(seconds, 1)})
        print(f"  abmil head seed {seed}: weighted F1 {repeats[-1]['weighted_f1']:.3f}, test {repeats[-1]['test']:.3f}"
              f" ({seconds:.1f} s)", flush=True)
    best_tile = max((r for r in rows if r["level"] == "tile"), key=lambda r: r["weighted_f1"])
    margin = round(abmil["weighted_f1"] - best_tile["weighted_f1"], 4)
    tile_head, tile_vote = best_tile["name"].removeprefix("tile ").removesuffix(" vote").split(", ")
    fold_repeats = []
    for fold_seed in [int(s) for s in args.fold_seeds.split(",") if s]:
        other = make_folds(np.array(classes)[labels], blocks, args.folds, fold_seed)
        cv = evaluate("abmil", Scheme("bag"), args.seed, other)[0]
        tile_cv = evaluate(tile_head, Scheme("tile", tile_vote), args.seed, other)[0]
        fold_repeats.append({"fold_seed": fold_seed, "abmil": round(float(f1_score(labels, cv.proba.argmax(1),
                                                                                   average="weighted")), 4),
                             best_tile["name"]: round(float(f1_score(labels, tile_cv.proba.argmax(1),
                                                                     average="weighted")), 4)})
        print(f"  fold seed {fold_seed}: abmil {fold_repeats[-1]['abmil']:.3f}, {best_tile['name']} "
              f"{fold_repeats[-1][best_tile['name']]:.3f}", flush=True)
    seed_scores = [r["weighted_f1"] for r in repeats]
    print(f"\nbest tile-level head: {best_tile['name']} {best_tile['weighted_f1']:.3f}; abmil "
          f"{abmil['weighted_f1']:.3f} (margin {margin:+.3f}); abmil over seeds "
          f"{', '.join(f'{s:.3f}' for s in seed_scores)}: mean {np.mean(seed_scores):.3f} ± {np.std(seed_scores):.3f}")
    print("abmil attention, out-of-fold:", json.dumps(abmil["attention_oof"]))
    print("abmil attention, test mosaics:", json.dumps(abmil["attention_test"]))
    print(f"abmil confusion (rows true {classes}): {abmil['confusion']}")
    total = time.perf_counter() - started_all
    print(f"total {total:.0f} s on {os.cpu_count()} CPUs")
    if args.json:
        payload = {"data": str(args.data), "cache": str(cache_dir), "classes": classes, "folds": args.folds,
                   "seed": args.seed, "rows": rows, "abmil_seed_repeats": repeats, "fold_seed_repeats": fold_repeats,
                   "best_tile": best_tile["name"],
                   "abmil_minus_best_tile": margin, "seconds": round(total, 1), "cpus": os.cpu_count(),
                   "python": platform.python_version()}
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
