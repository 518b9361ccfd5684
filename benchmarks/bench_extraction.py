"""End-to-end extraction speed: files on disk -> tiles -> model -> HDF5, through the real extraction code.

For each model (EfficientNet-Lite0 with its real weights; a random-weight ViT-B/16, Phikon's architecture and
preprocessing) and each precision, embeds the first N lc25000-lung images (224 px JPEG, one tile each) into a
temporary cache and prints tiles/s. Also writes JSON.

    python benchmarks/bench_extraction.py [--images 32] [--precisions fp32,bf16] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import torch  # noqa: E402

from pipeline.extraction import ExtractionSettings, run_extraction  # noqa: E402
from pipeline.models import CLSEmbedder, LoadedModel, load_model, weights_checksum  # noqa: E402
from pipeline.preprocessing import Preprocessing  # noqa: E402

LUNG = Path(__file__).resolve().parents[2] / "shared" / "data" / "lc25000-lung"


def phikon_architecture() -> LoadedModel:
    """A ViT-B/16 with random weights and Phikon's preprocessing (224 px, ImageNet mean/std)."""
    from transformers import ViTConfig, ViTModel

    torch.manual_seed(0)
    module = CLSEmbedder(ViTModel(ViTConfig(), add_pooling_layer=False)).eval()
    return LoadedModel("vit-b16-random", "vit-b16-random", "random", module, Preprocessing(224), 768, "",
                       weights_checksum(module))


def subset(source: Path, n_images: int, target: Path) -> Path:
    """Copy the first n train images and masks into a fresh data folder."""
    folder = target / "train_data"
    folder.mkdir(parents=True)
    for image in sorted((source / "train_data").glob("img_*"))[:n_images]:
        shutil.copy(image, folder / image.name)
        mask = image.with_name(image.stem.replace("img_", "mask_") + ".png")
        shutil.copy(mask, folder / mask.name)
    return target


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=32)
    parser.add_argument("--precisions", default="fp32,bf16")
    parser.add_argument("--batch-size", type=int, default=16)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    if not LUNG.is_dir():
        raise SystemExit(f"{LUNG} is absent")
    rows = []
    with tempfile.TemporaryDirectory() as folder:
        data = subset(LUNG, args.images, Path(folder) / "data")
        for model in (load_model("efficientnet-lite0"), phikon_architecture()):
            for precision in args.precisions.split(","):
                settings = ExtractionSettings(data_dir=data, out_dir=Path(folder) / f"f-{model.slug}-{precision}",
                                              precision=precision, batch_size=args.batch_size, progress=False)
                started = time.perf_counter()
                summary = run_extraction(settings, model)
                seconds = time.perf_counter() - started
                rows.append({"model": model.name, "precision": precision, "tiles": summary.n_tiles,
                             "seconds": round(seconds, 2), "tiles_per_s": round(summary.n_tiles / seconds, 2)})
                print(f"{model.name:<20} {precision:<5} {summary.n_tiles:>5} tiles {seconds:7.1f} s "
                      f"{summary.n_tiles / seconds:7.2f} tiles/s (end to end, batch {args.batch_size})", flush=True)
    payload = {"cpus": os.cpu_count(), "torch": torch.__version__, "threads": torch.get_num_threads(),
               "machine": platform.machine(), "processor": platform.processor(), "results": rows}
    if args.json:
        args.json.write_text(json.dumps(payload, indent=2) + "\n")


if __name__ == "__main__":
    main()
