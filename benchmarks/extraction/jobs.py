"""One measurement of the extraction benchmark, run by :mod:`benchmarks.bench_extraction` in a fresh process.

A fresh process (``python -m benchmarks.bench_extraction --job JSON``) makes a measurement's peak memory and warm-up
its own: model-only and end-to-end speed, the naive loop, or an extraction for the memory and F1 comparisons.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch import nn

from benchmarks.extraction import throughput
from pipeline.data.records import find_records
from pipeline.data.tiling import TilingSettings
from pipeline.embed.embedder import Embedder
from pipeline.embed.loading import CLSEmbedder, load_model
from pipeline.embed.model import LoadedModel, weights_checksum
from pipeline.embed.preprocessing import Preprocessing
from pipeline.embed.runtime import cpu_has_native_bf16, resolve_compile, resolve_device, resolve_precision
from pipeline.extract.run import ExtractionSettings, run_extraction

VIT = "vit-b16"
FREE = "free"
MARGINAL_BATCHES = 4  # the end-to-end rate is marginal: all images less the first max(4 batches' worth, a fifth)
RESULT_MARK = "BENCH-RESULT "
MODEL_ONLY_IMAGES = 256


class FreeModel(nn.Module):
    """A "model" that costs nothing: (B, 3, S, S) -> (B, 8) zeros. End to end, it measures the data side alone."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.zeros(1), requires_grad=False)  # a weight, so it has a device and dtype

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Zeros, one row per tile."""
        return pixels.new_zeros(len(pixels), 8)


def build_model(name: str) -> LoadedModel:
    """A model by benchmark name: ``vit-b16``, ``free`` or any name :func:`pipeline.embed.loading.load_model` accepts.

    ``vit-b16`` is a ViT-B/16 with Phikon's architecture and preprocessing and random weights (seed 0), CLS token;
    ``free`` is :class:`FreeModel` with 224 px input.
    """
    if name == FREE:
        return LoadedModel(FREE, FREE, "none", FreeModel().eval(), Preprocessing(224), 8, "", "free")
    if name != VIT:
        return load_model(name)
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    module = CLSEmbedder(ViTModel(ViTConfig(), add_pooling_layer=False)).eval()
    return LoadedModel(VIT, VIT, "random ViTConfig()", module, Preprocessing(224), 768, "", weights_checksum(module))


def is_emulated(precision: str, device: torch.device) -> bool:
    """True for a 16-bit precision on a CPU without native bf16, where it runs several times slower than fp32."""
    return device.type == "cpu" and precision != "fp32" and not cpu_has_native_bf16()


def subset_folder(source: Path, n_images: int, target: Path) -> Path:
    """A data folder with the first ``n_images`` images (and masks) of ``source``, copied once.

    Returns ``source`` itself when it has no more images. Images keep their split folder and name.

    Raises:
        ValueError: ``n_images`` is not positive (a count of 0 means "skip this measurement" to the callers).
    """
    if n_images <= 0:
        raise ValueError(f"A data subset needs at least one image. Got {n_images} instead.")
    records = find_records(source, "all")
    if n_images >= len(records):
        return source
    if not target.is_dir():
        for record in records[:n_images]:
            folder = target / record.image_path.parent.name
            folder.mkdir(parents=True, exist_ok=True)
            for path in (record.image_path, record.mask_path):
                if path is not None:
                    shutil.copy(path, folder / path.name)
    return target


def run_job(job: dict) -> dict:
    """One measurement: ``speed`` (model-only and end-to-end), ``naive`` or ``extract`` (memory, F1 caches)."""
    model = build_model(job["model"])
    device = resolve_device(job["device"])
    precision = resolve_precision(job.get("precision", "fp32"), device)
    out = Path(job["out"])
    out.mkdir(parents=True, exist_ok=True)
    result = {"model": model.name, "precision": precision, "device": str(device), "batch_size": job["batch_size"]}
    if job["kind"] == "naive":
        paths = [r.image_path for r in find_records(Path(job["data"]), "all")[: job["images"]]]
        rate, embeddings = throughput.naive_loop(model, paths, device)
        np.save(out / "embeddings.npy", embeddings)
        return {**result, "precision": "fp32", "tiles": len(paths), "naive_tiles_per_s": rate}
    compiled = resolve_compile(job["compile"], device, precision)
    settings = ExtractionSettings(
        data_dir=Path(job["data"]), out_dir=out / "features", device=job["device"], precision=precision,
        compile="on" if compiled else "off", tiling=TilingSettings(tile_size=job["tile_size"]),
        batch_size=job["batch_size"], workers=job["workers"], write_processes=job.get("write_processes", 0),
        progress=False,
    )  # fmt: skip
    first: tuple[int, float, float] | None = None  # (tiles, seconds, compile seconds) of the first images alone
    if job["kind"] == "speed":
        # decoded up front and held in memory, so at most MODEL_ONLY_IMAGES of them; min_tiles repeats them
        tiles, sources = throughput.read_tiles(settings.data_dir, min(job["images"], MODEL_ONLY_IMAGES),
                                               job["tile_size"])
        if job.get("flops"):
            result["gflop_per_tile"] = throughput.gflop_per_tile(model)
        embedder = Embedder(model, device, precision, batch_size=job["batch_size"], compile=compiled)
        warmup, timed = (2, 1) if is_emulated(precision, device) else (None, throughput.TIMED_BATCHES)
        rate, embeddings = throughput.model_only(embedder, tiles, job["batch_size"], warmup, job.get("min_tiles", 0),
                                                 timed)
        np.save(out / "embeddings.npy", embeddings)
        result.update(tiles=len(tiles), model_only_tiles_per_s=rate, compiled=embedder.compiled,
                      compile_seconds=embedder.compile_seconds)  # fmt: skip
        if job.get("bare", True) and not is_emulated(precision, device):
            # the yardstick in the same process and minutes: the module alone, as a user's own loop runs it, its
            # batches alternating with the embedder's
            paired, bare = throughput.paired_rates(embedder, model, tiles, job["batch_size"], precision, compiled,
                                                   device)
            result.update(paired_tiles_per_s=paired, bare_tiles_per_s=bare)
        del embedder
        if not job["end_to_end"]:
            return result
        per_image = len(tiles) / max(len(sources), 1)  # images of the first run: at least 4 batches of tiles
        few = max(int(np.ceil(MARGINAL_BATCHES * job["batch_size"] / per_image)), job["images"] // 5)
        if job["images"] >= 2 * few:  # the marginal rate, as the model-only figure, leaves out warm-up and compile
            small = replace(settings, data_dir=subset_folder(settings.data_dir, few, out / "few-data"),
                            out_dir=out / "few-features")
            started = time.perf_counter()
            few_run = run_extraction(small, model)
            # each run compiles its graphs once (from the cache after the first): seconds no long run sees again
            first = (few_run.n_tiles, time.perf_counter() - started, few_run.timings.get("compiling", 0.0))
    reset = throughput.reset_peak_rss()
    started = time.perf_counter()
    summary = run_extraction(settings, model)
    seconds = time.perf_counter() - started
    if first is not None:
        few_tiles, few_seconds, few_compiling = first
        extra = (seconds - summary.timings.get("compiling", 0.0)) - (few_seconds - few_compiling)
        if extra > 0 and summary.n_tiles > few_tiles:
            result["end_to_end_marginal_tiles_per_s"] = (summary.n_tiles - few_tiles) / extra
            result["end_to_end_marginal_tiles"] = (few_tiles, summary.n_tiles)
            result["end_to_end_marginal_compiling"] = (few_compiling, summary.timings.get("compiling", 0.0))
    result.update(
        end_to_end_tiles_per_s=summary.n_tiles / seconds, end_to_end_tiles=summary.n_tiles, images=summary.n_embedded,
        end_to_end_seconds=seconds, peak_rss_mib=throughput.peak_rss_mib(), peak_rss_reset=reset,
        workers_peak_rss_mib=throughput.children_peak_rss_mib(), cache_dir=str(summary.cache_dir), compiled=compiled,
        timings=summary.timings,
    )  # fmt: skip
    if device.type == "cuda":
        result["cuda_peak_mib"] = torch.cuda.max_memory_allocated() / 2**20
    if job["kind"] == "speed":
        # timed again after the end-to-end run: a shared VM's speed drifts by 10% from minute to minute, and the
        # ratio should compare the pipeline with the model at the same time, not with a lucky or unlucky minute
        embedder = Embedder(model, device, precision, batch_size=job["batch_size"], compile=compiled)
        result["model_only_after_tiles_per_s"] = throughput.model_only(
            embedder, tiles, job["batch_size"], warmup, job.get("min_tiles", 0), timed
        )[0]
    return result


def spawn(job: dict, in_process: bool = False) -> dict:
    """Run a job in a fresh Python process (or in this one) and return its result."""
    if in_process:
        return run_job(job)
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    command = [sys.executable, "-m", "benchmarks.bench_extraction", "--job", json.dumps(job)]
    completed = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    marked = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if completed.returncode or not marked:
        raise RuntimeError(f"benchmark job {job} failed (exit {completed.returncode}):\n{completed.stderr[-4000:]}")
    return json.loads(marked[-1][len(RESULT_MARK) :])
