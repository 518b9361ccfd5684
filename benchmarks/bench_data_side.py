"""The data side of extraction against a bare Pillow decode loop, in one run (``python -m benchmarks.bench_data_side``).

On users'-size PNGs (1280x1024 mosaics of lc25000-lung and glas15 crops, with an ellipse mask, built once under
``--work``) it measures, each ``--repeats`` times, and prints the medians:

- **data side**: ``extract.py``'s CPU time per image and per tile over all its processes (user + sys of the process,
  its decoding workers and writer, from ``RUSAGE_CHILDREN`` around a fresh process), with a model that costs nothing
  (:class:`benchmarks.extraction.jobs.FreeModel`, fp32). Start-up (imports, the model) is taken out by the marginal
  cost: (CPU of ``--images`` images - CPU of a quarter of them) / the difference in images. Wall ms per image too.
  Each image has its own mask (:func:`own_mask`).
- **bare Pillow loop**: ``Image.open(image).convert("RGB")`` and ``Image.open(mask)`` to numpy, nothing else, in
  this process (CPU time), on the same files in the same run.
- **steps**: the data side's work per image, step by step in this process (CPU ms): read + decode the image,
  decode the mask, checksums, tile plan, tile cut, hygiene scores, perceptual hashes, handing the tiles to the
  main process (pickling as the DataLoader does), the HDF5 file, and the quality report (from the run's own timing);
  and the model's input step (uint8 tiles to normalised floats), which the data side's total includes on a CPU
  but which runs on the GPU on a GPU host.

The machine may be shared: only numbers of one run are compared; the median of the repeats is printed.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import pickle
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks import SHARED_DATA
from benchmarks.make_png_data import CLASSES, load_sources, mosaic

RESULT_MARK = "DATA-SIDE-RESULT "
WIDTH, HEIGHT = 1280, 1024


def shared_data() -> Path:
    """The shared data folder: ``PIPELINE_SHARED_DATA`` or the one beside the checkout."""
    return Path(os.environ.get("PIPELINE_SHARED_DATA", SHARED_DATA))


def make_data(folder: Path, n_images: int, seed: int = 0) -> Path:
    """A challenge-layout folder of ``n_images`` 1280x1024 PNG mosaics with masks (written once, then reused)."""
    images = folder / "train_data"
    if len(list(images.glob("img_*.png"))) == n_images:
        return folder
    shutil.rmtree(folder, ignore_errors=True)
    images.mkdir(parents=True)
    sources = load_sources(shared_data() / "lc25000-lung") + load_sources(shared_data() / "glas15")
    for index in range(n_images):
        rng = np.random.default_rng([seed, index])
        Image.fromarray(mosaic(sources, WIDTH, HEIGHT, rng)).save(images / f"img_{index:04d}.png")
        Image.fromarray(own_mask(rng)).save(images / f"mask_{index:04d}.png")
    rows = ["sample_index,label"] + [f"img_{i:04d}.png,{CLASSES[i % len(CLASSES)]}" for i in range(n_images)]
    (folder / "train_labels.csv").write_text("\n".join(rows) + "\n")
    return folder


def own_mask(rng: np.random.Generator) -> np.ndarray:
    """(HEIGHT, WIDTH) uint8 0/255: an ellipse of random size and place, so that no two images share a mask file.

    (Identical masks would flag every image as ``shared_mask`` and put half of them on the contact sheet, whose
    thumbnails are decoded at the end of the run: a cost of that flag, not of the data side.)
    """
    scale_x, scale_y = rng.uniform(0.7, 0.95, size=2)
    shift_x, shift_y = rng.uniform(-0.05, 0.05, size=2)
    yy, xx = np.mgrid[0:HEIGHT, 0:WIDTH]
    x = (xx / WIDTH - 0.5 - shift_x) / (scale_x / 2)
    y = (yy / HEIGHT - 0.5 - shift_y) / (scale_y / 2)
    return ((x**2 + y**2 <= 1) * 255).astype(np.uint8)


def subset(folder: Path, n_images: int) -> Path:
    """The first ``n_images`` images of ``folder`` in a folder of their own (hard links)."""
    target = folder.parent / f"{folder.name}-first{n_images}"
    if not target.is_dir():
        (target / "train_data").mkdir(parents=True)
        for index in range(n_images):
            for prefix in ("img", "mask"):
                name = f"{prefix}_{index:04d}.png"
                os.link(folder / "train_data" / name, target / "train_data" / name)
        lines = (folder / "train_labels.csv").read_text().splitlines()[: n_images + 1]
        (target / "train_labels.csv").write_text("\n".join(lines) + "\n")
    return target


def run_job(job: dict) -> dict:
    """In a fresh process: one extraction with the free model; the wall time and the run's own timings."""
    from benchmarks.extraction.jobs import FREE, build_model
    from pipeline.extract.run import ExtractionSettings, run_extraction

    model = build_model(FREE)
    settings = ExtractionSettings(data_dir=Path(job["data"]), out_dir=Path(job["out"]), device="cpu",
                                  precision="fp32", workers=job["workers"], batch_size=64, progress=False)
    started, before = time.perf_counter(), _cpu(resource.RUSAGE_SELF)
    summary = run_extraction(settings, model)
    return {"seconds": time.perf_counter() - started, "tiles": summary.n_tiles, "images": summary.n_embedded,
            "timings": summary.timings, "main_cpu": _cpu(resource.RUSAGE_SELF) - before}


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


def extraction(data: Path, workers: int | None) -> dict:
    """Run one extraction in a fresh process; its CPU seconds (all its processes) and its result."""
    out = Path(tempfile.mkdtemp(prefix="data-side-"))
    job = {"data": str(data), "out": str(out), "workers": workers}
    root = str(Path(__file__).resolve().parents[1])
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(filter(None, [root, os.environ.get("PYTHONPATH")]))}
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    completed = subprocess.run([sys.executable, "-m", "benchmarks.bench_data_side", "--job", json.dumps(job)],
                               capture_output=True, text=True, env=env, check=False)
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    shutil.rmtree(out, ignore_errors=True)
    marked = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_MARK)]
    if completed.returncode or not marked:
        raise RuntimeError(f"extraction failed (exit {completed.returncode}):\n{completed.stderr[-4000:]}")
    cpu = (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)
    return {**json.loads(marked[-1][len(RESULT_MARK) :]), "cpu": cpu}


def bare_pillow(paths: list[tuple[Path, Path]]) -> float:
    """CPU seconds of decoding every image to RGB and every mask, with Pillow and nothing else."""
    started = time.process_time()
    for image_path, mask_path in paths:
        with Image.open(image_path) as image:
            np.asarray(image.convert("RGB"))
        with Image.open(mask_path) as mask:
            np.asarray(mask)
    return time.process_time() - started


def _timed(clock: dict[str, float], name: str, call: Callable, *args: object) -> object:
    started = time.process_time()
    result = call(*args)
    clock[name] = clock.get(name, 0.0) + time.process_time() - started
    return result


def steps(paths: list[tuple[Path, Path]], work: Path) -> dict[str, float]:
    """CPU seconds of each step of the data side over all images, run one after the other in this process."""
    from pipeline.cache import store
    from pipeline.data import images
    from pipeline.data.tiling import TilingSettings, cut_tiles, plan_tiles
    from pipeline.hygiene.checks import dihedral_phashes
    from pipeline.hygiene.stain import stain_scores

    _hand_over(np.zeros((1, 224, 224, 3), np.uint8))  # imports torch's reductions before the clock runs
    clock: dict[str, float] = {}
    tiling = TilingSettings()
    every_tile: list[np.ndarray] = []
    for index, (image_path, mask_path) in enumerate(paths):
        data = _timed(clock, "read files", images.read_bytes, image_path)
        pixels = _timed(clock, "decode image", images.decode_pixels, image_path, data, images.DEFAULT_MAX_PIXELS)
        _timed(clock, "checksums", images.image_checksums, data, pixels)
        mask = _timed(clock, "decode mask", images.read_mask, mask_path, pixels.shape[1::-1])
        plan = _timed(clock, "tile plan", plan_tiles, mask.inside, tiling, image_path.stem)
        tiles = _timed(clock, "tile cut", cut_tiles, pixels, plan.coords, tiling.tile_size)
        stain = _timed(clock, "hygiene scores", stain_scores, pixels, mask.inside)
        _timed(clock, "perceptual hashes", dihedral_phashes, pixels, stain.ink, stain.step)
        _timed(clock, "hand-over", _hand_over, tiles)
        every_tile.append(tiles)
        features = np.zeros((len(tiles), 8), np.float32)
        attrs = {"image_id": f"train/{index}", "q_version": 2, "phashes": ["0" * 16] * 8, "mask_fraction": 0.5}
        _timed(clock, "HDF5 file", store.write_image_features, work / f"{index}.h5", features, plan.coords,
               plan.coverage, attrs)
    _timed(clock, "model input (device)", _model_input, np.concatenate(every_tile))
    return clock


def _model_input(tiles: np.ndarray, batch_size: int = 64) -> None:
    """The embedder's first step on every tile, in batches as extraction runs it: uint8 to normalised floats.

    On the GPU on a GPU host; on the CPU in a CPU run, where the data side's total (all processes) includes it.
    """
    import torch

    from pipeline.embed.preprocessing import Preprocessing, TileTransform

    transform = TileTransform(Preprocessing(224))
    with torch.inference_mode():
        for start in range(0, len(tiles), batch_size):
            transform(torch.from_numpy(tiles[start : start + batch_size]))


_SLOT: list = []  # the hand-over's reused shared-memory buffer, as a worker's TileSlots keeps one


def _hand_over(tiles: np.ndarray) -> None:
    """What a DataLoader worker does to send one image's tiles: into its reused shared-memory slot, then pickled.

    A slot's tensor travels with its first image only (:class:`pipeline.extract.slots.TileSlots`); later images
    send an (n, 0) placeholder, which is what this pickles.
    """
    from multiprocessing.reduction import ForkingPickler

    import torch
    import torch.multiprocessing  # noqa: F401 - registers torch's reductions (storage to shared memory)

    if not _SLOT or len(_SLOT[0]) < len(tiles):
        _SLOT[:] = [torch.empty(tiles.shape, dtype=torch.uint8).share_memory_()]
    slot = _SLOT[0][: len(tiles)]
    np.copyto(slot.numpy(), tiles)
    buffer = io.BytesIO()
    ForkingPickler(buffer, pickle.HIGHEST_PROTOCOL).dump(torch.empty((len(tiles), 0), dtype=torch.uint8))


def measure(data: Path, n_images: int, workers: int | None, work: Path) -> dict:
    """One repeat: the data side (marginal over a quarter of the images), the bare loop and the steps."""
    few = max(1, n_images // 4)
    paths = [(data / "train_data" / f"img_{i:04d}.png", data / "train_data" / f"mask_{i:04d}.png")
             for i in range(n_images)]
    # the bare loop before, between and after the two extractions: the machine's speed drifts while others work
    bare_runs = [bare_pillow(paths)]
    small = extraction(subset(data, few), workers)
    bare_runs.append(bare_pillow(paths))
    large = extraction(data, workers)
    bare_runs.append(bare_pillow(paths))
    bare = statistics.median(bare_runs) / n_images
    extra = large["images"] - small["images"]
    cpu_per_image = (large["cpu"] - small["cpu"]) / extra
    main_per_image = (large["main_cpu"] - small["main_cpu"]) / extra
    tiles_per_image = (large["tiles"] - small["tiles"]) / extra
    step_work = work / "steps"
    step_work.mkdir(exist_ok=True)
    by_step = {name: seconds / n_images for name, seconds in steps(paths, step_work).items()}
    by_step["quality report"] = large["timings"].get("quality", 0.0) / n_images
    return {
        "data_side_cpu_ms_per_image": 1000 * cpu_per_image,
        "data_side_cpu_ms_per_tile": 1000 * cpu_per_image / max(tiles_per_image, 1e-9),
        "main_process_cpu_ms_per_image": 1000 * main_per_image,
        "wall_ms_per_image": 1000 * (large["seconds"] - small["seconds"]) / extra,
        "bare_pillow_cpu_ms_per_image": 1000 * bare,
        "ratio": cpu_per_image / bare,
        "ratio_without_model_input": (cpu_per_image - by_step["model input (device)"]) / bare,
        "tiles_per_image": tiles_per_image,
        "steps_ms": {name: 1000 * seconds for name, seconds in by_step.items()},
    }


def medians(runs: list[dict]) -> dict:
    """The median of every number over the repeats."""
    out = {key: statistics.median(run[key] for run in runs) for key in runs[0] if key != "steps_ms"}
    out["steps_ms"] = {key: statistics.median(run["steps_ms"][key] for run in runs) for key in runs[0]["steps_ms"]}
    return out


def format_table(result: dict) -> str:
    """The medians as a text table."""
    lines = [
        f"data side CPU per image (all processes)   {result['data_side_cpu_ms_per_image']:8.1f} ms",
        f"data side CPU per tile                    {result['data_side_cpu_ms_per_tile']:8.2f} ms "
        f"({result['tiles_per_image']:.1f} tiles per image)",
        f"  of which the main process               {result['main_process_cpu_ms_per_image']:8.1f} ms "
        "(batches, the embedder's input, the HDF5 writer, the report)",
        f"wall per image                            {result['wall_ms_per_image']:8.1f} ms",
        f"bare Pillow loop CPU per image            {result['bare_pillow_cpu_ms_per_image']:8.1f} ms",
        f"ratio data side / bare Pillow loop        {result['ratio']:8.2f}x",
        f"  without the model's input step          {result['ratio_without_model_input']:8.2f}x "
        "(it runs on the GPU on a GPU host)",
        "",
        "steps, one after the other in one process (CPU ms per image):",
    ]
    steps_ms = result["steps_ms"]
    lines += [f"  {name:<24}{ms:8.1f}" for name, ms in steps_ms.items()]
    lines.append(f"  {'sum':<24}{sum(steps_ms.values()):8.1f}")
    return "\n".join(lines)


def main(argv: Sequence[str] | None = None) -> int:
    """Build the images once, measure ``--repeats`` times, print the medians; return the exit status."""
    from pipeline.cli.console import prepare_process

    prepare_process()  # the process as extract.py sets it up (OpenMP waits, the allocator), in the job and the steps
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--images", type=int, default=192,
                        help="images of the large run (a quarter for the small): each run's start-up, seconds of CPU "
                             "that move by a few percent, is spread over 3/4 of them (single repeats: 0.75-1.69x with "
                             "48, 1.13-1.27x with 96, 1.10-1.20x with 192)")
    parser.add_argument("--repeats", type=int, default=5, help="repeats; medians are printed")
    parser.add_argument("--workers", type=int, default=None, help="decoding workers (default: extract.py's)")
    parser.add_argument("--work", type=Path, default=Path(tempfile.gettempdir()) / "bench-data-side",
                        help="where the PNGs are built (kept for the next run)")
    parser.add_argument("--json", type=Path, default=None, help="also write every repeat's numbers here")
    parser.add_argument("--job", default=None, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.job:
        print(RESULT_MARK + json.dumps(run_job(json.loads(args.job))))
        return 0
    data = make_data(args.work / f"png-v2-{args.images}", args.images)  # v2: mosaics without gaps
    runs = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory(prefix="data-side-steps-") as work:
            runs.append(measure(data, args.images, args.workers, Path(work)))
        print(f"repeat {repeat + 1}: ratio {runs[-1]['ratio']:.2f}x", file=sys.stderr)
    result = medians(runs)
    print(f"{args.images} PNG images of {WIDTH}x{HEIGHT} px, medians of {args.repeats} repeats, "
          f"{os.cpu_count()} cores")
    print(format_table(result))
    if args.json:
        args.json.write_text(json.dumps({"runs": runs, "medians": result}, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
