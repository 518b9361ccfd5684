"""Extraction speed side by side, in one run on the same images (``python -m benchmarks.bench_extraction``).

For each model (``vit-b16``: Phikon's architecture and preprocessing with random weights; ``efficientnet-lite0``
with its real weights) and each precision, on the first images of a data folder (default
``../shared/data/lc25000-lung``: 224 px JPEG files, one tile each):

- model-only tiles/s: uint8 tiles already in memory through the Embedder (normalisation and model), warm;
- end-to-end tiles/s: files on disk to HDF5 through :func:`pipeline.extract.run.run_extraction`, and its peak RSS;
- naive tiles/s: one tile at a time through the Hugging Face image processor (torchvision for EfficientNet) and the
  model in fp32;
- drift: centred cosine of each precision's embeddings against fp32's on the same tiles;

plus the matmul ceiling of the machine, ``torch.compile`` rows on request, peak memory extracting few vs many
images, and weighted F1 (logistic regression, cross-validated) of each precision against fp32. Every measurement runs
in a fresh process, so its memory and warm-up are its own. Prints a table; ``--json`` writes everything.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import platform
import shutil
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch

from benchmarks import SHARED_DATA
from benchmarks.extraction import throughput
from benchmarks.extraction.jobs import (
    FREE,
    RESULT_MARK,
    VIT,
    build_model,
    is_emulated,
    run_job,
    spawn,
    subset_folder,
)
from benchmarks.extraction.report import format_report
from pipeline import cache
from pipeline.cli.console import HelpFormatter
from pipeline.data.records import find_records
from pipeline.embed.runtime import (
    COMPILE_MODES,
    cpu_has_native_bf16,
    default_batch_size,
    resolve_device,
    resolve_precision,
)
from pipeline.extract.settings import default_workers

DEFAULT_DATA = SHARED_DATA / "lc25000-lung"

logger = logging.getLogger(__name__)


def machine_info(device: torch.device) -> dict:
    """CPU, threads, torch, native bf16, load average and the fp32 (and native bf16) matmul ceiling."""
    cpuinfo = Path("/proc/cpuinfo").read_text() if Path("/proc/cpuinfo").is_file() else ""
    names = [line.split(":", 1)[1].strip() for line in cpuinfo.splitlines() if line.startswith("model name")]
    info = {
        "cpu": names[0] if names else platform.processor(), "logical_cpus": os.cpu_count(),
        "torch_threads": torch.get_num_threads(), "torch": torch.__version__, "python": platform.python_version(),
        "cpu_native_bf16": cpu_has_native_bf16(), "cpu_capability": torch.backends.cpu.get_cpu_capability(),
        "load_average_before": os.getloadavg(), "device": str(device),
        "omp_wait_policy": os.environ.get("OMP_WAIT_POLICY"),
        "matmul_gflops": {"fp32": throughput.matmul_gflops()},
    }  # fmt: skip
    if info["cpu_native_bf16"]:
        info["matmul_gflops"]["bf16"] = throughput.matmul_gflops(dtype=torch.bfloat16)
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
    return info


def _unique_precisions(
    requested: Sequence[str], device: torch.device, model: str, reference: bool = True
) -> dict[str, list[str]]:
    """Resolved precision -> the names that asked for it (``auto`` and ``fp32`` are one run where auto is fp32)."""
    module = build_model(model).module  # auto depends on the model (linear-layer share) on native-bf16 CPUs
    resolved: dict[str, list[str]] = {}
    for name in ["fp32", *requested] if reference else requested:
        resolved.setdefault(resolve_precision(name, device, module), []).append(name)
    return {key: sorted(set(names)) for key, names in resolved.items()}


def _drift(reference: np.ndarray | None, other: np.ndarray) -> dict:
    if reference is None:
        return {}
    k = min(len(reference), len(other))
    cosines = throughput.centred_cosine(reference[:k], other[:k])
    return {"drift_tiles": k, "centred_cosine_mean": float(cosines.mean()), "centred_cosine_min": float(cosines.min())}


def run_benchmark(args: argparse.Namespace, work: Path) -> dict:
    """Every measurement the flags ask for; returns the report (what ``--json`` writes)."""
    device = resolve_device(args.device)
    report = {"machine": machine_info(device), "settings": {k: str(v) for k, v in vars(args).items()}}
    report.update(speed=[], naive=[], compile=[], memory=[], f1=[])
    batch_size = args.batch_size or default_batch_size(device)
    base = {"device": args.device, "batch_size": batch_size, "workers": args.workers, "tile_size": args.tile_size,
            "write_processes": args.write_processes, "min_tiles": args.model_only_tiles}  # fmt: skip

    def job(kind: str, tag: str, **values) -> dict:
        logger.info("running %s", tag)
        result = spawn({**base, "kind": kind, "out": str(work / tag), **values}, args.in_process)
        rates = {k: round(v, 2) for k, v in result.items() if k.endswith("tiles_per_s")}
        logger.info("%s done: %s", tag, ", ".join(f"{k} {v}" for k, v in rates.items()))
        return result

    for name in args.models:
        reference = None
        for precision, asked in _unique_precisions(args.precisions, device, name, not args.no_fp32_reference).items():
            count = args.slow_images if is_emulated(precision, device) else images_for(args.images, name)
            data = subset_folder(args.data, count, work / f"data-{count}")
            tag = f"speed-{name}-{precision}".replace("/", "-")
            end_to_end = precision not in args.model_only_precisions
            row = job("speed", tag, model=name, precision=precision, images=count, data=str(data),
                      compile=args.compile, end_to_end=end_to_end, flops=precision == "fp32")  # fmt: skip
            embeddings = np.load(work / tag / "embeddings.npy")
            reference = embeddings if precision == "fp32" else reference
            report["speed"].append({**row, "asked_as": asked, **_drift(reference, embeddings)})
        count = images_for(args.naive_tiles, name)
        if count:
            data = subset_folder(args.data, count, work / f"data-{count}")
            tag = f"naive-{name}".replace("/", "-")
            naive = job("naive", tag, model=name, images=count, data=str(data))
            report["naive"].append({**naive, **_drift(reference, np.load(work / tag / "embeddings.npy"))})
        for precision in args.compile_check:
            count = args.slow_images if is_emulated(precision, device) else images_for(args.images, name)
            data = subset_folder(args.data, count, work / f"data-{count}")
            row = job("speed", f"compile-{name}-{precision}".replace("/", "-"), model=name, precision=precision,
                      images=count, data=str(data), compile="on", end_to_end=False)  # fmt: skip
            report["compile"].append(row)
    extracts: dict[tuple[str, int], dict] = {}

    def extract(precision: str, count: int) -> dict:
        """Extraction of the first ``count`` images by the memory model, in a resolved precision (cached)."""
        data = subset_folder(args.data, count, work / f"data-{count}")
        key = (precision, len(find_records(data, "all")))
        if key not in extracts:
            extracts[key] = job("extract", f"extract-{key[0]}-{key[1]}", model=args.memory_model, precision=key[0],
                                data=str(data), compile=args.compile)  # fmt: skip
        return extracts[key]

    if args.memory:
        resolved = _unique_precisions(["auto"], device, args.memory_model).items()
        default = next(p for p, asked in resolved if "auto" in asked)
        for count in args.memory:
            report["memory"].append(extract(default, count))
    if args.data_side_images:
        data = subset_folder(args.data, args.data_side_images, work / f"data-{args.data_side_images}")
        report["data_side"] = job("extract", "data-side", model=FREE, precision="fp32", data=str(data), compile="off")
    if args.f1_precisions:
        report["f1"] = f1_rows(args, device, extract)
    report["machine"]["load_average_after"] = os.getloadavg()
    return report


def f1_rows(args: argparse.Namespace, device: torch.device, extract) -> list[dict]:
    """Weighted F1 and centred cosine against fp32 of each precision, on every image of the data folder.

    F1 is of a logistic-regression head cross-validated over images (duplicates kept together), as classify.py does.
    """
    from pipeline.classify.run import run_classification
    from pipeline.classify.settings import ClassificationSettings

    rows, reference = [], None
    every = len(find_records(args.data, "all"))
    for precision, asked in _unique_precisions(args.f1_precisions, device, args.memory_model).items():
        done = extract(precision, every)
        cache_dir = Path(done["cache_dir"])
        settings = ClassificationSettings(features=cache_dir, head="logreg", folds=args.folds, seed=0,
                                          pictures=False)
        result = run_classification(settings)  # scores only: no run folder is written
        embeddings = cache.load_split(cache_dir, "train").embeddings
        reference = embeddings if precision == "fp32" else reference
        rows.append({"model": args.memory_model, "precision": precision, "asked_as": asked, "images": every,
                     "weighted_f1": result.heads[0].metrics["weighted_f1"], **_drift(reference, embeddings)})
    return rows


def images_for(spec: dict[str, int], model: str) -> int:
    """A count for a model from ``--images`` or ``--naive-tiles`` (``32`` or ``vit-b16=32,efficientnet-lite0=128``)."""
    return spec.get(model, spec.get("", 32))


def _images_spec(text: str) -> dict[str, int]:
    spec = {}
    for part in filter(None, text.split(",")):
        name, _, count = part.rpartition("=")
        spec[name] = int(count)
    return spec


def _names(text: str) -> list[str]:
    return [part for part in text.split(",") if part]


def build_parser() -> argparse.ArgumentParser:
    """Flags of ``python -m benchmarks.bench_extraction``."""
    parser = argparse.ArgumentParser(prog="python -m benchmarks.bench_extraction", description=__doc__.splitlines()[0],
                                     formatter_class=HelpFormatter)  # fmt: skip
    add = parser.add_argument
    add("--data", type=Path, default=DEFAULT_DATA, help="data folder (challenge layout); the first images are used")
    add("--models", type=_names, default=[VIT, "efficientnet-lite0"], help="comma-separated; vit-b16 = random ViT-B")
    add("--precisions", type=_names, default=["auto", "fp32", "bf16"],
        help="comma-separated; fp32 always runs (unless --no-fp32-reference)")
    add("--images", type=_images_spec, default=_images_spec(f"{VIT}=64,efficientnet-lite0=128"),
        help="images per model: N, or NAME=N,NAME=N")  # fmt: skip
    add("--slow-images", type=int, default=8, help="images for precisions this CPU emulates (bf16/fp16 w/o AMX)")
    add("--no-fp32-reference", action="store_true", help="skip the fp32 row that drift is measured against")
    add("--model-only-precisions", type=_names, default=[],
        help="precisions timed model-only, without the end-to-end run (e.g. fp32 on a GPU: only its drift matters)")
    add("--naive-tiles", type=_images_spec, default=_images_spec(f"{VIT}=8,efficientnet-lite0=64"),
        help="tiles through the naive one-at-a-time loop: N, or NAME=N,NAME=N (0: skip)")  # fmt: skip
    add("--batch-size", type=int, default=None, help="tiles per forward pass (default: as extract.py)")
    add("--tile-size", type=int, default=224, help="tile side in pixels (lc25000-lung images are 224 px)")
    add("--workers", type=int, default=None,
        help=f"decoding processes of the end-to-end runs (default: as extract.py; {default_workers()} on this CPU)")
    add("--write-processes", type=int, default=0, help="HDF5 writer processes (0: a thread, as extract.py)")
    add("--model-only-tiles", type=int, default=0,
        help="time model-only passes until this many tiles (0: one pass over the tiles of at most 256 images)")
    add("--device", default="auto", help="auto, cpu or cuda")
    add("--compile", choices=COMPILE_MODES, default="auto", help="torch.compile in the main rows (as extract.py)")
    add("--compile-check", type=_names, default=[], help="precisions to also time compiled (model-only), e.g. fp32")
    add("--memory", type=lambda t: [int(v) for v in _names(t)], default=[60, 600],
        help="image counts whose extraction peak memory is compared")  # fmt: skip
    add("--memory-model", default="efficientnet-lite0", help="model of the memory and F1 runs")
    add("--data-side-images", type=int, default=600, help="images extracted by a model that costs nothing (0: skip)")
    add("--f1-precisions", type=_names, default=["auto", "fp32"], help="precisions scored by F1 ('' to skip)")
    add("--folds", type=int, default=5, help="cross-validation folds of the F1 runs")
    add("--json", type=Path, default=Path("runs/bench_extraction.json"), help="where the full report goes")
    add("--in-process", action="store_true", help="run every job in this process (debugging; memory is shared)")
    add("--job", default=None, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark (or, with the internal ``--job``, one measurement); return the exit status."""
    args = build_parser().parse_args(argv)
    if args.job is not None:
        print(RESULT_MARK + json.dumps(run_job(json.loads(args.job))), flush=True)
        return 0
    if not (args.data / "train_data").is_dir() and not (args.data / "test_data").is_dir():
        print(f"--data {args.data} has neither train_data/ nor test_data/. Point it at lc25000-lung.", file=sys.stderr)
        return 2
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", datefmt="%H:%M:%S", stream=sys.stderr)
    work = Path(tempfile.mkdtemp(prefix="pipeline-bench-"))
    try:
        report = run_benchmark(args, work)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    print(format_report(report))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2, default=str) + "\n")
    print(f"full report: {args.json}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
