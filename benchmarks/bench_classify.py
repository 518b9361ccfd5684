"""Time 5-fold cross-validation plus the final fit for each head (issue target: under 60 s each on 2 cores).

Random Gaussian-cluster features stand in for a real cache: 1,000 images x 12 tiles x 768-d, 4 imbalanced classes.
Times include loading the cache, hygiene, the bootstrap intervals and predicting 100 test images. Prints a table and
writes JSON.

    python -m benchmarks.bench_classify [--images 1000] [--tiles 12] [--dim 768] [--heads logreg,lgbm,mlp,abmil]
                                        [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import tempfile
import time
from pathlib import Path

os.environ.setdefault("GOMP_SPINCOUNT", "20000")

from pipeline.classify.run import ClassificationSettings, run_classification
from tests.conftest import write_fake_cache


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=1000)
    parser.add_argument("--tiles", type=int, default=12)
    parser.add_argument("--dim", type=int, default=768)
    parser.add_argument("--heads", default="logreg,lgbm,mlp,abmil")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    shares = {"Luminal A": 0.35, "Luminal B": 0.30, "HER2(+)": 0.25, "Triple negative": 0.10}
    labels = [name for name, share in shares.items() for _ in range(round(share * args.images))]
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        root = Path(folder)
        started = time.perf_counter()
        cache_dir, _ = write_fake_cache(root, labels, n_test=100, tiles_per_image=args.tiles, dim=args.dim,
                                        separation=0.03)
        print(f"wrote a fake cache of {len(labels)} train + 100 test images in {time.perf_counter() - started:.1f} s")
        for head in args.heads.split(","):
            started, cpu_started = time.perf_counter(), time.process_time()
            result = run_classification(ClassificationSettings(features=cache_dir, head=head, runs_root=root / "runs"))
            seconds, cpu = time.perf_counter() - started, time.process_time() - cpu_started
            f1 = result.heads[0].metrics["weighted_f1"]
            results[head] = {"seconds": round(seconds, 2), "cpu_seconds": round(cpu, 2), "weighted_f1": round(f1, 4)}
            # CPU time counts every thread of this process: with one thread (abmil) it is about the wall time the
            # run would take on an idle core, a figure that other processes on a shared machine do not inflate
            print(f"{head:<7} {seconds:7.1f} s wall, {cpu:7.1f} s CPU (5-fold CV + final fit + test prediction), "
                  f"weighted F1 {results[head]['weighted_f1']:.3f}", flush=True)
    payload = {"images": len(labels), "tiles_per_image": args.tiles, "dim": args.dim, "cpus": os.cpu_count(),
               "machine": platform.machine(), "python": platform.python_version(), "results": results}
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
