"""Build a challenge-layout folder of large PNG images from real H&E crops, for end-to-end speed runs.

The shared data sets are small (glas15: 600x400; lc25000-lung: 224 px): a GPU run needs thousands of images of the
users' size (shorter side about 1024 px) stored as PNG, whose decoding is the data side's main cost. Each image is a
mosaic of randomly flipped and rotated crops of the source images (so it compresses and decodes like H&E, not like
noise), its mask an ellipse covering about 78% of it.

    python -m benchmarks.make_png_data --source ../shared/data/glas15 --out /tmp/png-data --images 2000

Writes ``OUT/train_data/img_XXXX.png`` + ``mask_XXXX.png`` and ``OUT/train_labels.csv`` (labels cycle over four
classes). Seeded: the same flags give the same files.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image

CLASSES = ("Luminal A", "Luminal B", "HER2(+)", "Triple negative")


def load_sources(folder: Path) -> list[np.ndarray]:
    """Every ``img_*`` image under ``folder`` (any split), as (H, W, 3) uint8."""
    paths = sorted(p for p in folder.rglob("img_*") if p.suffix.lower() in {".png", ".jpg", ".jpeg", ".tif"})
    if not paths:
        raise SystemExit(f"--source {folder} holds no img_* images. Point it at ../shared/data/glas15.")
    return [np.asarray(Image.open(p).convert("RGB")) for p in paths]


def mosaic(sources: list[np.ndarray], width: int, height: int, rng: np.random.Generator) -> np.ndarray:
    """(height, width, 3) uint8 filled row by row with random crops (random dihedral transform each).

    Each row is as tall as its shortest piece, so the crops tile the image without gaps (a black hole between
    pieces of different heights reads as black ink or background to hygiene, which no real image has).
    """
    out = np.zeros((height, width, 3), dtype=np.uint8)
    y = 0
    while y < height:
        pieces, x = [], 0
        while x < width:
            piece = np.rot90(sources[rng.integers(len(sources))], k=int(rng.integers(4)))
            pieces.append(piece[:, ::-1] if rng.integers(2) else piece)
            x += pieces[-1].shape[1]
        row_height = min(height - y, *(piece.shape[0] for piece in pieces))
        x = 0
        for piece in pieces:
            w = min(piece.shape[1], width - x)
            out[y : y + row_height, x : x + w] = piece[:row_height, :w]
            x += w
        y += row_height
    return out


def ellipse_mask(width: int, height: int) -> np.ndarray:
    """(height, width) uint8, 255 inside the ellipse inscribed in the image, 0 outside."""
    yy, xx = np.mgrid[0:height, 0:width]
    inside = ((xx - width / 2) / (width / 2)) ** 2 + ((yy - height / 2) / (height / 2)) ** 2 <= 1
    return (inside * 255).astype(np.uint8)


_SOURCES: list[np.ndarray] = []


def _init(source: str) -> None:
    _SOURCES.extend(load_sources(Path(source)))


def _write_one(job: tuple[int, str, int, int, int]) -> None:
    index, out, width, height, seed = job
    rng = np.random.default_rng([seed, index])
    folder = Path(out) / "train_data"
    Image.fromarray(mosaic(_SOURCES, width, height, rng)).save(folder / f"img_{index:04d}.png")
    Image.fromarray(ellipse_mask(width, height)).save(folder / f"mask_{index:04d}.png")


def main(argv: Sequence[str] | None = None) -> int:
    """Write the folder; return the exit status."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, required=True, help="folder with img_* H&E images (any layout)")
    parser.add_argument("--out", type=Path, required=True, help="where the challenge-layout folder goes")
    parser.add_argument("--images", type=int, default=2000, help="number of images")
    parser.add_argument("--width", type=int, default=1280, help="image width in pixels")
    parser.add_argument("--height", type=int, default=1024, help="image height in pixels")
    parser.add_argument("--seed", type=int, default=0, help="seed of the mosaics")
    parser.add_argument("--processes", type=int, default=os.cpu_count() or 1, help="parallel encoders")
    args = parser.parse_args(argv)
    (args.out / "train_data").mkdir(parents=True, exist_ok=True)
    jobs = [(i, str(args.out), args.width, args.height, args.seed) for i in range(args.images)]
    with ProcessPoolExecutor(args.processes, initializer=_init, initargs=(str(args.source),)) as pool:
        list(pool.map(_write_one, jobs, chunksize=8))
    rows = ["sample_index,label"] + [f"img_{i:04d}.png,{CLASSES[i % len(CLASSES)]}" for i in range(args.images)]
    (args.out / "train_labels.csv").write_text("\n".join(rows) + "\n")
    size = sum(p.stat().st_size for p in (args.out / "train_data").glob("img_*.png"))
    print(f"{args.images} images of {args.width}x{args.height} px ({size / 2**20:.0f} MiB of PNG) -> {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
