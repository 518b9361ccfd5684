"""Settings behind the CUDA defaults: model-only tiles/s of Phikon's architecture by batch size, eager and compiled,
and HDF5 files/s by number of writer processes.

    python -m benchmarks.gpu_probe [--data PNG_FOLDER] [--batches 64,128,256,512] [--compiled 128,256]

Random-weight ViT-B/16 (Phikon's architecture) through the extraction's own Embedder, fp16 autocast (the CUDA
default); tiles are random uint8 (speed does not depend on content). Prints a table and writes JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import torch

from benchmarks.extraction import throughput
from benchmarks.extraction.jobs import VIT, build_model, subset_folder
from pipeline.embed.embedder import Embedder
from pipeline.extract.writer import FeatureWriter


def model_rows(device: torch.device, precision: str, batches: list[int], compiled: bool, tiles: int) -> list[dict]:
    """Model-only tiles/s at each batch size (``tiles`` timed per row)."""
    model = build_model(VIT)
    rows = []
    for batch in batches:
        embedder = Embedder(model, device, precision, batch_size=batch, compile=compiled)
        data = torch.randint(0, 256, (batch * 8, 224, 224, 3), dtype=torch.uint8)
        rate, _ = throughput.model_only(embedder, data, batch, min_tiles=tiles)
        rows.append({"batch": batch, "precision": precision, "compiled": embedder.compiled,
                     "compile_seconds": round(embedder.compile_seconds, 1),
                     "model_only_tiles_per_s": round(rate, 1)})  # fmt: skip
        print(rows[-1], flush=True)
        del embedder
        torch.cuda.empty_cache() if device.type == "cuda" else None
    return rows


def correctness(device: torch.device, precision: str, data: Path, images: int, out: Path) -> dict:
    """Real tiles through extract's whole path on ``device`` (submitted ahead, written by writer processes) against
    fp32 on the CPU, tile by tile: centred cosine (catches a batch landing in another image's file or a reused
    buffer overwritten too early)."""
    from pipeline.cache.store import read_image_features
    from pipeline.data.tiling import TilingSettings
    from pipeline.extract.run import ExtractionSettings, run_extraction

    subset = subset_folder(data, images, out / "subset")
    tiles, paths = throughput.read_tiles(subset, images, 224)
    model = build_model(VIT)
    reference = Embedder(model, torch.device("cpu"), "fp32", batch_size=16)(tiles)
    settings = ExtractionSettings(data_dir=subset, out_dir=out / "features", device=device.type, precision=precision,
                                  tiling=TilingSettings(224), batch_size=32, progress=False)  # fmt: skip
    summary = run_extraction(settings, model)
    files = [summary.cache_dir / "train" / f"{path.stem}.h5" for path in paths]
    extracted = np.concatenate([read_image_features(f).features for f in files])
    cosines = throughput.centred_cosine(reference, extracted)
    row = {"tiles": len(tiles), "images": len(files), "centred_cosine_min": float(cosines.min()),
           "centred_cosine_mean": float(cosines.mean())}  # fmt: skip
    print({"correctness": row}, flush=True)
    return row


def data_path_ms(data: Path, images: int) -> dict:
    """Milliseconds per image of one decoding worker's job (decode, mask, tiles, checks), in this process."""
    from pipeline.data.images import DEFAULT_MAX_PIXELS
    from pipeline.data.records import find_records
    from pipeline.data.tiling import TilingSettings
    from pipeline.extract.decoding import TileDataset

    dataset = TileDataset(find_records(data, "all")[:images], TilingSettings(224), DEFAULT_MAX_PIXELS)
    dataset[0]
    started = time.perf_counter()
    tiles = sum(len(dataset[i].tiles) for i in range(len(dataset)))
    seconds = time.perf_counter() - started
    row = {"images": len(dataset), "tiles": tiles, "ms_per_image": round(1e3 * seconds / len(dataset), 1)}
    print({"data_path": row}, flush=True)
    return row


def writer_rows(counts: list[int], files: int, tiles_per_file: int) -> list[dict]:
    """Files/s written by a :class:`FeatureWriter` with each number of processes (30 attributes per file)."""
    rng = np.random.default_rng(0)
    features = rng.standard_normal((tiles_per_file, 768)).astype(np.float32)
    coords = np.zeros((tiles_per_file, 2), np.int32)
    coverage = np.ones(tiles_per_file, np.float32)
    attrs = {f"attribute_{i}": ("x" * 40 if i % 2 else float(i)) for i in range(30)}
    rows = []
    for processes in counts:
        with tempfile.TemporaryDirectory() as folder, FeatureWriter(processes) as writer:
            writer.submit(Path(folder) / "warm.h5", features, coords, coverage, attrs)
            writer.finish()  # process start-up is not throughput
            started = time.perf_counter()
            for i in range(files):
                writer.submit(Path(folder) / f"{i}.h5", features, coords, coverage, attrs)
            writer.finish()
            rate = files / (time.perf_counter() - started)
        rows.append({"write_processes": processes, "files_per_s": round(rate, 1)})
        print(rows[-1], flush=True)
    return rows


def main(argv: list[str] | None = None) -> int:
    """Run the probe; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ints = lambda text: [int(v) for v in text.split(",") if v]  # noqa: E731
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--precision", default="fp16", help="autocast precision of the model rows")
    parser.add_argument("--batches", type=ints, default=[64, 128, 256, 512], help="eager batch sizes")
    parser.add_argument("--compiled", type=ints, default=[128, 256], help="compiled batch sizes ('' to skip)")
    parser.add_argument("--tiles", type=int, default=8192, help="tiles timed per model row")
    parser.add_argument("--writers", type=ints, default=[0, 1, 2, 4], help="writer process counts")
    parser.add_argument("--files", type=int, default=600, help="files per writer row")
    parser.add_argument("--data", type=Path, default=None, help="PNG data folder for the correctness check")
    parser.add_argument("--check-images", type=int, default=8, help="images of the correctness check")
    parser.add_argument("--json", type=Path, default=Path("runs/gpu_probe.json"))
    args = parser.parse_args(argv)
    device = torch.device(args.device)
    report = {"device": torch.cuda.get_device_name(device) if device.type == "cuda" else "cpu",
              "torch": torch.__version__, "cpus": os.cpu_count()}  # fmt: skip
    print(report, flush=True)
    if args.data is not None:
        report["data_path"] = data_path_ms(args.data, 32)
        with tempfile.TemporaryDirectory() as folder:
            report["correctness"] = correctness(device, args.precision, args.data, args.check_images, Path(folder))
    report["writers"] = writer_rows(args.writers, args.files, 19)
    report["eager"] = model_rows(device, args.precision, args.batches, False, args.tiles)
    report["compiled"] = model_rows(device, args.precision, args.compiled, True, args.tiles)
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
