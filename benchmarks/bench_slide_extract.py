"""Extraction from a slide: peak memory of ``extract.py``, and the data side's CPU time per tile against bare OpenSlide.

``memory``: makes a slide (``--size`` px a side, 0.25 um/px, 256-px JPEG tiles, one piece of tissue covering
``--tissue`` of it, glas15 crops when the shared data is present), runs ``python extract.py --data D --model M`` on
it in a fresh process (defaults otherwise; ``--extra`` adds flags) and samples the process tree (the extraction,
its decoding workers) every 0.1 s from ``/proc``. Prints the peak resident memory three ways:

- the largest single process (``RUSAGE_CHILDREN`` ``ru_maxrss`` after the run: the kernel's own peak);
- the sum over processes of each one's peak (``VmHWM``): an upper bound, since peaks need not coincide and shared
  memory (the tiles on their way from a worker to the main process) counts in both;
- the largest sum of ``VmRSS`` over the tree at one sample: what the machine held at once (shared pages twice).

``speed``: makes a slide with 256-px JPEG tiles and reads it, side by side in one run, ``--repeats`` times each,
alternating, all in this process (CPU time of all its threads):

- **whole extraction**: ``run_extraction`` with a model that costs nothing
  (:class:`benchmarks.extraction.jobs.FreeModel`), ``--workers 0`` so that every step runs here: thumbnail, tissue,
  plan, the slide file's checksum, tiles read in chunks, the loop's queue and batches, the model's input step
  (uint8 to normalised floats), the HDF5 file, the mask, the contact sheet, the quality report;
- **decoding only**: the :class:`~pipeline.extract.decoding.TileDataset` items of the slide (what the workers do);
- **bare loop**: ``openslide.OpenSlide.read_region`` over the same level-0 corners (the plan's) and size, converted
  to an RGB array (``np.asarray(region)[..., :3]``), nothing else.

Prints CPU ms per tile of each and the ratios to the bare loop (target <= 1.3). The free model's side is 224 and
``--target-mpp`` is the slide's 0.25, so tiles are read at level 0 and neither side resizes.

    python -m benchmarks.bench_slide_extract memory [--size 40960] [--tissue 0.85] [--model efficientnet-lite0]
    python -m benchmarks.bench_slide_extract speed [--size 16384] [--repeats 5]
"""

from __future__ import annotations

import argparse
import math
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import SHARED_DATA
from benchmarks.slide_maker import GRAIN, SlideLayout, he_patches, synthetic_patches, write_slide

ROOT = Path(__file__).resolve().parents[1]


def covered_layout(size: int, tissue: float, patches: tuple[np.ndarray, ...]) -> SlideLayout:
    """A ``size`` px square slide with one centred square of tissue covering about ``tissue`` of it."""
    side = int(size * math.sqrt(tissue)) // GRAIN * GRAIN
    corner = (size - side) // 2 // GRAIN * GRAIN
    return SlideLayout(size, size, ((corner, corner, side, side),), patches)


def make_slide_data(folder: Path, size: int, tissue: float) -> Path:
    """``folder/data`` with ``train_data/slide.svs`` (Aperio, 0.25 um/px) and its label; made once, kept."""
    data = folder / "data"
    path = data / "train_data" / "slide.svs"
    if not path.is_file():
        glas = SHARED_DATA / "glas15"
        patches = he_patches(glas) if (glas / "train_data").is_dir() else synthetic_patches()
        path.parent.mkdir(parents=True, exist_ok=True)
        started = time.perf_counter()
        write_slide(path, covered_layout(size, tissue, patches), "aperio", mpp=0.25, app_mag=40)
        (data / "train_labels.csv").write_text("sample_index,label\nslide.svs,a\n")
        print(f"slide: {size} x {size} px, {tissue:.0%} tissue, {path.stat().st_size / 2**20:.0f} MiB, written in "
              f"{time.perf_counter() - started:.0f} s")
    return data


def _tree(root: int) -> list[int]:
    """``root`` and its descendants now."""
    parents: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                with open(f"/proc/{entry}/stat") as handle:
                    parent = int(handle.read().rsplit(")", 1)[1].split()[1])
            except (OSError, IndexError, ValueError):
                continue
            parents.setdefault(parent, []).append(int(entry))
    found, todo = [], [root]
    while todo:
        pid = todo.pop()
        found.append(pid)
        todo.extend(parents.get(pid, []))
    return found


def _status_kib(pid: int) -> dict[str, int]:
    values = {}
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(("VmRSS:", "VmHWM:")):
                    values[line.split(":")[0]] = int(line.split()[1])
    except OSError:
        pass
    return values


def memory(args: argparse.Namespace) -> None:
    """Peak RSS of ``extract.py`` on a made slide (see the module docstring)."""
    work = Path(args.work or tempfile.mkdtemp(prefix="bench-slide-memory-"))
    data = make_slide_data(work, args.size, args.tissue)
    command = [sys.executable, str(ROOT / "extract.py"), "--data", str(data), "--model", args.model, "--out",
               str(work / f"features-{time.time_ns()}"), *args.extra.split()]
    print("command:", " ".join(command))
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")]))}
    started = time.perf_counter()
    child = subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    peaks: dict[int, int] = {}
    largest_sum = 0
    while child.poll() is None:
        total = 0
        for pid in _tree(child.pid):
            status = _status_kib(pid)
            total += status.get("VmRSS", 0)
            peaks[pid] = max(peaks.get(pid, 0), status.get("VmHWM", 0))
        largest_sum = max(largest_sum, total)
        time.sleep(0.1)
    output = child.stdout.read() if child.stdout else ""
    wall = time.perf_counter() - started
    if child.returncode:
        raise SystemExit(f"extract.py failed (exit {child.returncode}):\n{output[-4000:]}")
    print("\n".join(output.strip().splitlines()[-6:]))
    largest = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024
    print(f"\nwall {wall:.0f} s; {len(peaks)} processes seen")
    print(f"peak RSS, largest process (RUSAGE_CHILDREN ru_maxrss): {largest:,.0f} MiB")
    print(f"peak RSS, sum of each process's VmHWM (upper bound):   {sum(peaks.values()) / 1024:,.0f} MiB")
    print(f"peak RSS, largest sum of VmRSS over the tree at once:  {largest_sum / 1024:,.0f} MiB")


def _data_side_pass(record, tiling, side: int, target_mpp: float) -> tuple[float, int, np.ndarray]:
    """(CPU seconds, tiles, level-0 corners) of the decoding side alone: a TileDataset's items over one slide."""
    from pipeline.extract.decoding import ImageFailure, TileDataset

    dataset = TileDataset([record], tiling, 10**10, quality=True, resize=(side, "bilinear"), tissue="auto",
                          target_mpp=target_mpp, tissue_dir=None)
    cpu, n, coords = time.process_time(), 0, None
    for item in dataset.items([0]):
        if isinstance(item, ImageFailure):
            raise SystemExit(item.reason)
        coords = item.coords if item.start == 0 else coords
        n += len(item.tiles)
    return time.process_time() - cpu, n, coords


def _whole_pass(data: Path, out: Path, target_mpp: float) -> tuple[float, float, int]:
    """(CPU seconds, of which the model step's, tiles) of ``run_extraction`` with a model that costs nothing.

    Everything runs in this process (``--workers 0``). The model step (the embedder's forward: uint8 tiles to
    normalised floats, then the free model) is timed by the CPU time of the thread that runs it, with torch on one
    thread: on a GPU host it is the device's work, not the data side's.
    """
    from benchmarks.extraction.jobs import FREE, build_model
    from pipeline.embed.embedder import Embedder
    from pipeline.extract.run import ExtractionSettings, run_extraction

    settings = ExtractionSettings(data_dir=data, out_dir=out, device="cpu", precision="fp32", workers=0,
                                  batch_size=64, progress=False, split="train", target_mpp=target_mpp,
                                  overwrite=True)
    model, run, model_cpu = build_model(FREE), Embedder._run, [0.0]

    def timed_run(self, batch):
        started = time.thread_time()
        try:
            return run(self, batch)
        finally:
            model_cpu[0] += time.thread_time() - started

    Embedder._run = timed_run
    try:
        cpu = time.process_time()
        summary = run_extraction(settings, model)
        return time.process_time() - cpu, model_cpu[0], summary.n_tiles
    finally:
        Embedder._run = run


def _bare_pass(path: Path, coords: np.ndarray, side: int) -> float:
    """CPU seconds of a bare OpenSlide ``read_region`` loop over ``coords``, to RGB arrays."""
    import openslide

    cpu = time.process_time()
    with openslide.OpenSlide(str(path)) as handle:
        for x, y in coords:
            np.asarray(handle.read_region((int(x), int(y)), 0, (side, side)))[..., :3]
    return time.process_time() - cpu


def _speed_passes(data: Path, work: Path, record, coords: np.ndarray, n: int, repeats: int) -> dict:
    """CPU ms per tile of each pass (``repeats`` each, alternating order), by pass name."""
    from pipeline.data.tiling import TilingSettings

    side, tiling, mpp = 224, TilingSettings(tile_size=224), 0.25
    whole: list[tuple[float, float, int]] = []
    passes = {
        "whole extraction": lambda: whole.append(_whole_pass(data, work / "features", mpp)) or whole[-1][0],
        "decoding only": lambda: _data_side_pass(record, tiling, side, mpp)[0],
        "bare": lambda: _bare_pass(record.image_path, coords, side),
    }
    runs: dict[str, list[float]] = {name: [] for name in passes}
    for repeat in range(repeats):
        names = list(passes) if repeat % 2 == 0 else list(reversed(passes))
        for name in names:
            runs[name].append(passes[name]() * 1e3 / n)
        runs.setdefault("whole, model step out", []).append((whole[-1][0] - whole[-1][1]) * 1e3 / n)
    assert all(tiles == n for _, _, tiles in whole), "the extraction and the decoding pass saw other tiles"
    return runs


def speed(args: argparse.Namespace) -> None:
    """The data side's CPU time per tile against a bare ``read_region`` loop (see the module docstring)."""
    import torch

    from pipeline.data.records import find_records
    from pipeline.data.tiling import TilingSettings

    work = Path(args.work or tempfile.mkdtemp(prefix="bench-slide-speed-"))
    data = make_slide_data(work, args.size, args.tissue)
    record = find_records(data, "train", slides=True)[0]
    side, tiling, mpp = 224, TilingSettings(tile_size=224), 0.25  # the free model's side, at level 0: no resize
    _, n, coords = _data_side_pass(record, tiling, side, mpp)  # warm-up: the file into the page cache
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # the model step's CPU is then its thread's (see _whole_pass)
    try:
        runs = _speed_passes(data, work, record, coords, n, args.repeats)
    finally:
        torch.set_num_threads(threads)
    bare = statistics.median(runs["bare"])
    print(f"{n} tiles of {side} px read at level 0 (0.25 um/px, 256-px JPEG tiles) x {args.repeats} passes each, "
          "medians of CPU ms per tile:")
    print(f"  bare OpenSlide read_region -> RGB array       : {bare:.3f}")
    for name, label in (("decoding only", "TileDataset items (the workers' work)"),
                        ("whole, model step out", "run_extraction, --workers 0, less the model step"),
                        ("whole extraction", "run_extraction, --workers 0, model step included")):
        ours = statistics.median(runs[name])
        print(f"  {label:<47}: {ours:.3f}  ({ours / bare:.2f}x the bare loop; target <= 1.3)")
    print("  every pass: " + "; ".join(f"{name} " + ", ".join(f"{v:.3f}" for v in values)
                                       for name, values in runs.items()))
    print("The machine may be shared: timings are noisy; compare within one run only.")


def main(argv: list[str] | None = None) -> int:
    """Parse the command line and run one measurement."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("memory", "speed"))
    parser.add_argument("--size", type=int, default=None, help="slide side in level-0 px (memory 40960, speed 16384)")
    parser.add_argument("--tissue", type=float, default=0.85, help="share of the slide covered with tissue")
    parser.add_argument("--model", default="efficientnet-lite0", help="memory: extract.py's --model")
    parser.add_argument("--extra", default="", help="memory: more extract.py flags, e.g. '--target-mpp 0.5'")
    parser.add_argument("--repeats", type=int, default=5, help="speed: passes per reader")
    parser.add_argument("--work", default=None, help="folder for the slide (kept, reused) and the cache")
    args = parser.parse_args(argv)
    args.size = args.size or (40_960 if args.what == "memory" else 16_384)
    memory(args) if args.what == "memory" else speed(args)
    return 0


if __name__ == "__main__":
    sys.exit(main())
