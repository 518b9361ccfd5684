"""Time each head on a cross-validation-sized problem: 5 folds over images on 80% plus one final fit on 100%.

Synthetic tile embeddings: every image has a label (imbalanced classes), an image-level offset shared by its tiles
(so tiles of one image are correlated, as with real foundation-model embeddings) and per-tile noise.

    PYTHONPATH=. /work/venv/bin/python -m benchmarks.bench_head_fit --heads logreg lgbm mlp

OpenMP's wait policy changes the LightGBM and MLP numbers by 2x; run it as classify.py runs (that entry point sets
OMP_WAIT_POLICY=PASSIVE unless the variable is already set), e.g. prefix the command with OMP_WAIT_POLICY=PASSIVE.
The first MLP fit includes importing torch.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np
from sklearn.metrics import balanced_accuracy_score, f1_score
from sklearn.model_selection import StratifiedGroupKFold

from pipeline.heads.registry import HEAD_NAMES, make_head


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--heads", nargs="+", choices=HEAD_NAMES, default=list(HEAD_NAMES))
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--tiles", type=int, default=12, help="tiles per image")
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--priors", type=float, nargs="+", default=[0.4, 0.3, 0.2, 0.1], help="class shares")
    parser.add_argument("--separation", type=float, default=0.08, help="spread of class means per dimension")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--n-jobs", type=int, default=None, help="threads for lgbm and mlp (default: library's)")
    return parser


def make_data(args: argparse.Namespace) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rng = np.random.default_rng(args.seed)
    image_labels = rng.choice(len(args.priors), size=args.images, p=np.array(args.priors) / sum(args.priors))
    centres = rng.normal(0.0, args.separation, size=(len(args.priors), args.dim))
    image_offsets = centres[image_labels] + rng.normal(0.0, 0.5, size=(args.images, args.dim))
    groups = np.repeat(np.arange(args.images), args.tiles)
    X = (image_offsets[groups] + rng.normal(0.0, 1.0, size=(len(groups), args.dim))).astype(np.float32)
    return X, image_labels[groups], groups


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    X, y, groups = make_data(args)
    print(f"data: {X.shape[0]} rows x {X.shape[1]} dims, class counts {np.bincount(y).tolist()}")
    folds = list(StratifiedGroupKFold(5, shuffle=True, random_state=args.seed).split(X, y, groups))
    folds.append((np.arange(len(X)), folds[0][1]))  # the final fit on all rows; predict timing only
    for name in args.heads:
        times, scores = [], []
        for i, (train, test) in enumerate(folds):
            start = time.perf_counter()
            head = make_head(name, seed=args.seed, n_jobs=args.n_jobs).fit(X[train], y[train], groups=groups[train])
            proba = head.predict_proba(X[test])
            times.append(time.perf_counter() - start)
            pred = head.classes_[proba.argmax(axis=1)]
            extra = f" epochs {head.n_epochs_} (best {head.best_epoch_})" if name == "mlp" else ""
            if i < 5:
                scores.append((f1_score(y[test], pred, average="weighted"), balanced_accuracy_score(y[test], pred)))
            print(f"  {name} fit {i} ({len(train)} rows) + predict ({len(test)} rows): {times[-1]:.2f} s{extra}")
        f1, bacc = np.mean(scores, axis=0)
        print(
            f"{name}: total {sum(times):.1f} s, median {np.median(times):.2f} s/fit, max {max(times):.2f} s/fit; "
            f"CV weighted F1 {f1:.3f}, balanced accuracy {bacc:.3f}; load average {os.getloadavg()[0]:.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
