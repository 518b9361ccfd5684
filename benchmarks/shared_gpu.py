"""One extraction process against several sharing the machine (and its GPU), each run with torchrun from scratch.

For each process count K, ``torchrun --standalone --nproc-per-node K extract.py`` fills an empty cache; the table
gives the wall time (process starts included), tiles/s end to end, and each rank's embedding time and its share
waiting for decoded tiles (from the shards' records). Decoding workers default to the cores split between the ranks,
so the total stays the same; pass ``--workers`` to fix it per rank. On one GPU the ranks all use ``cuda:0``.
``--model vit-b16`` (the default) is a ViT-B/16 of Phikon's architecture with random weights, saved to a temporary
folder, so no network is needed; any ``--model`` of extract.py works too.

    python benchmarks/make_png_data.py --source ../shared/data/glas15 --out /tmp/png-data --images 1600
    python -m benchmarks.shared_gpu --data /tmp/png-data --procs 1 2 4 [--json out.json]

Prints numbers; asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from pipeline import cache  # noqa: E402


def save_vit_b16(folder: Path) -> Path:
    """A random-weight ViT-B/16 (seed 0) with Phikon's preprocessing, saved as a local model folder."""
    import torch
    from transformers import ViTConfig, ViTImageProcessor, ViTModel

    torch.manual_seed(0)
    ViTModel(ViTConfig(), add_pooling_layer=False).save_pretrained(folder)
    ViTImageProcessor(size={"height": 224, "width": 224}, image_mean=[0.485, 0.456, 0.406],
                      image_std=[0.229, 0.224, 0.225], resample=3).save_pretrained(folder)
    return folder


def run_once(procs: int, data: Path, model: str, out: Path, extra: list[str]) -> dict:
    """Extract ``data`` into an empty ``out`` with ``procs`` torchrun ranks; return the measurements."""
    argv = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", str(procs),
            str(ROOT / "extract.py"), "--data", str(data), "--model", model, "--out", str(out), "--no-progress", "-q",
            *extra]
    started = time.perf_counter()
    done = subprocess.run(argv, cwd=ROOT, capture_output=True, text=True,
                          env={**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_OFFLINE": "1"})
    wall = time.perf_counter() - started
    if done.returncode != 0:
        raise SystemExit(f"{procs} process(es) failed:\n{done.stderr[-3000:]}")
    (cache_dir,) = cache.find_caches(out)
    records = cache.read_shard_records(cache_dir)
    tiles = sum(r.get("n_tiles", 0) for r in records)
    ranks = [{"shard": r["shard"], "tiles": r.get("n_tiles", 0), "embedding_s": r["timings"].get("embedding", 0.0),
              "waiting_for_tiles_s": r["timings"].get("waiting_for_tiles", 0.0), "device": r.get("device")}
             for r in records]
    return {"procs": procs, "wall_s": wall, "tiles": tiles, "tiles_per_s": tiles / wall, "ranks": ranks}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--data", type=Path, required=True, help="a challenge-layout folder (make_png_data.py)")
    parser.add_argument("--model", default="vit-b16", help="vit-b16 (random weights, offline) or extract.py's --model")
    parser.add_argument("--procs", type=int, nargs="+", default=[1, 2, 4])
    parser.add_argument("--workers", type=int, default=None, help="decoding workers per rank (default: shared)")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    extra = ["--workers", str(args.workers)] if args.workers is not None else []
    scratch = tempfile.TemporaryDirectory(prefix="shared-gpu-")
    model = str(save_vit_b16(Path(scratch.name) / "vit-b16")) if args.model == "vit-b16" else args.model
    results = []
    for procs in args.procs:
        with tempfile.TemporaryDirectory(prefix=f"shared-gpu-{procs}-") as out:
            result = run_once(procs, args.data, model, Path(out), extra)
        results.append(result)
        slowest = max(r["embedding_s"] for r in result["ranks"])
        waiting = max(r["waiting_for_tiles_s"] / max(r["embedding_s"], 1e-9) for r in result["ranks"])
        print(f"{procs} process(es): {result['tiles']} tiles in {result['wall_s']:.1f} s wall = "
              f"{result['tiles_per_s']:.0f} tiles/s; slowest rank embeds {slowest:.1f} s, up to {100 * waiting:.0f}% "
              "of it waiting for decoded tiles", flush=True)
    if args.json:
        args.json.write_text(json.dumps(results, indent=2))
    scratch.cleanup()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
