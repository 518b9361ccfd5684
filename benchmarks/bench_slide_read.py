"""Reading tiles from a slide: ``Slide.read_tile`` against a bare OpenSlide ``read_region`` loop, side by side.

1. Makes an Aperio-style slide with 256-px JPEG tiles (``--size`` a side, 0.25 um/px, from glas15 crops when
   ../shared/data is present) and a grid of tile corners over its tissue (tiles fully on tissue, spread evenly).
2. Reads those coordinates ``--repeats`` times with each reader, alternating, each time through a fresh handle (so
   no reader inherits the other's tile cache; the file itself is in the page cache after a warm-up pass):
   - at the slide's resolution: ``read_tile(x, y, 256, 256)`` (level 0, RGB array, outside painted white) against
     ``openslide.OpenSlide.read_region((x, y), 0, (256, 256))`` (a PIL RGBA image, nothing else);
   - at half the resolution (a 20x encoder on a 40x slide): ``read_tile(x, y, 512, 256)`` against ``read_region``
     of 512 px and Pillow's bilinear resize to 256.
3. Prints CPU ms per tile (process time, all threads) and wall ms per tile, the median over the repeats, and
   ours / bare (target: at most 1.3 at the slide's resolution). ``--memory`` also writes a 40,960 x 40,960 slide
   and prints the peak RSS of writing it (the maker never holds a slide whole).

    python -m benchmarks.bench_slide_read [--size 16384] [--tiles 400] [--repeats 5] [--memory]
"""

from __future__ import annotations

import argparse
import resource
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np
import openslide
from PIL import Image

from benchmarks import SHARED_DATA
from benchmarks.slide_maker import default_layout, he_patches, synthetic_patches, write_slide
from pipeline.data.slides import Slide

TILE = 256


def tissue_grid(layout, tile: int, count: int) -> list[tuple[int, int]]:
    """Up to ``count`` level-0 corners of ``tile``-px grid tiles that lie wholly on tissue, spread evenly."""
    mask = layout.tissue_mask(16)
    step = tile // 16
    corners = [
        (col * tile, row * tile)
        for row in range(mask.shape[0] // step)
        for col in range(mask.shape[1] // step)
        if mask[row * step : (row + 1) * step, col * step : (col + 1) * step].all()
    ]
    keep = np.unique(np.linspace(0, len(corners) - 1, min(count, len(corners))).round().astype(int))
    return [corners[i] for i in keep]


def timed(read: Callable[[int, int], object], corners: list[tuple[int, int]]) -> tuple[float, float]:
    """(CPU ms per tile, wall ms per tile) of ``read`` over ``corners``."""
    cpu, wall = time.process_time(), time.perf_counter()
    for x, y in corners:
        read(x, y)
    n = len(corners)
    return (time.process_time() - cpu) * 1e3 / n, (time.perf_counter() - wall) * 1e3 / n


def compare(path: Path, corners: list[tuple[int, int]], size0: int, repeats: int) -> dict[str, list]:
    """Both readers over ``corners`` ``repeats`` times, alternating; each run a fresh handle."""

    def bare(handle):
        if size0 == TILE:
            return lambda x, y: handle.read_region((x, y), 0, (TILE, TILE))
        return lambda x, y: handle.read_region((x, y), 0, (size0, size0)).resize((TILE, TILE), Image.BILINEAR)

    results: dict[str, list] = {"bare": [], "ours": []}
    for repeat in range(repeats):
        order = ("bare", "ours") if repeat % 2 == 0 else ("ours", "bare")
        for name in order:
            if name == "bare":
                with openslide.OpenSlide(str(path)) as handle:
                    results[name].append(timed(bare(handle), corners))
            else:
                with Slide(path, backend="openslide") as slide:
                    results[name].append(timed(lambda x, y, s=slide: s.read_tile(x, y, size0, TILE), corners))
    return results


def peak_rss_mib() -> float:
    """This process's peak resident memory so far (Linux reports KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=int, default=16384, help="slide side in level-0 pixels (multiple of 16)")
    parser.add_argument("--tiles", type=int, default=400, help="tile corners read per pass")
    parser.add_argument("--repeats", type=int, default=5, help="passes per reader (alternating order)")
    parser.add_argument("--memory", action="store_true", help="also write a 40,960 px slide and report peak RSS")
    args = parser.parse_args()

    glas = SHARED_DATA / "glas15"
    patches = he_patches(glas) if (glas / "train_data").is_dir() else synthetic_patches()
    with tempfile.TemporaryDirectory(prefix="bench-slide-") as folder:
        layout = default_layout(args.size, args.size, patches)
        started = time.perf_counter()
        path = write_slide(Path(folder) / "bench.svs", layout, "aperio", mpp=0.25, app_mag=40)
        print(f"slide: {args.size} x {args.size} px, 256-px JPEG tiles (q90), {path.stat().st_size / 2**20:.1f} MiB, "
              f"written in {time.perf_counter() - started:.1f} s; patches from "
              f"{'glas15' if (glas / 'train_data').is_dir() else 'synthetic noise'}")
        scenarios = ((TILE, "level 0, 256 px (the slide's resolution)"), (2 * TILE, "512 px -> 256 (20x from 40x)"))
        for size0, label in scenarios:
            corners = tissue_grid(layout, size0, args.tiles)
            with openslide.OpenSlide(str(path)) as warm:  # the file into the page cache, for both readers alike
                timed(lambda x, y, h=warm, s=size0: h.read_region((x, y), 0, (s, s)), corners)
            results = compare(path, corners, size0, args.repeats)
            cpu = {name: statistics.median(r[0] for r in runs) for name, runs in results.items()}
            wall = {name: statistics.median(r[1] for r in runs) for name, runs in results.items()}
            print(f"\n{label}: {len(corners)} tiles on tissue x {args.repeats} passes per reader, medians")
            print(f"  bare OpenSlide read_region : {cpu['bare']:.3f} CPU ms/tile, {wall['bare']:.3f} wall ms/tile")
            print(f"  Slide.read_tile            : {cpu['ours']:.3f} CPU ms/tile, {wall['ours']:.3f} wall ms/tile")
            print(f"  ours / bare (CPU)          : {cpu['ours'] / cpu['bare']:.2f}  (target <= 1.3 at the slide's "
                  "resolution)")
            print("  every pass (CPU ms/tile): " + "; ".join(
                f"{name} " + ", ".join(f"{c:.3f}" for c, _ in runs) for name, runs in results.items()))
        if args.memory:
            big = default_layout(40_960, 40_960, patches)
            before = peak_rss_mib()
            started = time.perf_counter()
            big_path = write_slide(Path(folder) / "big.svs", big, "aperio")
            print(f"\n40,960 x 40,960 slide written in {time.perf_counter() - started:.0f} s "
                  f"({big_path.stat().st_size / 2**20:.0f} MiB); peak RSS {peak_rss_mib():.0f} MiB "
                  f"(before: {before:.0f} MiB; the RGB pixels alone would be {40_960**2 * 3 / 2**30:.1f} GiB)")
            with Slide(big_path) as slide:
                started = time.perf_counter()
                thumb = slide.thumbnail(1024)
                print(f"thumbnail {thumb.shape[1]}x{thumb.shape[0]} in {time.perf_counter() - started:.2f} s; "
                      f"peak RSS {peak_rss_mib():.0f} MiB")
    print("\nThe machine is shared (2 cores, other jobs running): these timings are noisy; compare the two readers "
          "within one run only.")


if __name__ == "__main__":
    main()
