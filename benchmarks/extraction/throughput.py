"""What the extraction benchmark measures: tiles/s of the model alone and of a naive loop, drift, FLOPs, memory.

Pure measuring functions, used by :mod:`benchmarks.bench_extraction`; none of them prints.
"""

from __future__ import annotations

import resource
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torch.utils.data import DataLoader

from pipeline.data.images import DEFAULT_MAX_PIXELS
from pipeline.data.records import find_records
from pipeline.data.tiling import TilingSettings
from pipeline.embed.embedder import Embedder
from pipeline.embed.loading import CLSEmbedder
from pipeline.embed.model import LoadedModel
from pipeline.extract.decoding import ImageTiles, TileDataset, keep_as_is
from pipeline.extract.settings import default_workers

_PIL_FILTERS = {"nearest": Image.NEAREST, "bilinear": Image.BILINEAR, "bicubic": Image.BICUBIC}


def centred_cosine(reference: np.ndarray, other: np.ndarray) -> np.ndarray:
    """Cosine of each pair of rows after subtracting each set's mean row.

    Embeddings of one model share a large common direction (for a random-weight network it is most of the vector),
    which makes a plain cosine close to 1 whatever happens to each tile; centring measures what moved.

    Args:
        reference: (n, D) embeddings, e.g. fp32.
        other: (n, D) embeddings of the same tiles, e.g. bf16.

    Returns:
        (n,) float64 cosines.
    """
    a = np.asarray(reference, np.float64) - np.asarray(reference, np.float64).mean(0)
    b = np.asarray(other, np.float64) - np.asarray(other, np.float64).mean(0)
    norms = np.linalg.norm(a, axis=1) * np.linalg.norm(b, axis=1)
    return (a * b).sum(1) / np.maximum(norms, 1e-30)


def matmul_gflops(size: int = 2048, repeats: int = 3, dtype: torch.dtype = torch.float32) -> float:
    """GFLOP/s of a large square matmul on the CPU with torch's current threads: the machine's practical ceiling."""
    a, b = torch.randn(size, size).to(dtype), torch.randn(size, size).to(dtype)
    a @ b
    started = time.perf_counter()
    for _ in range(repeats):
        a @ b
    return 2 * size**3 * repeats / (time.perf_counter() - started) / 1e9


def gflop_per_tile(model: LoadedModel) -> float:
    """GFLOP of one forward pass of one tile (matmuls and convolutions, 2 FLOP per multiply-add)."""
    from torch.utils.flop_counter import FlopCounterMode

    size = model.preprocessing.input_size
    module = model.module
    pixels = torch.zeros(1, 3, size, size, device=next(module.parameters()).device)
    # torch's counter misses the fused CPU attention kernel (1.4 of a ViT-B/16's 35.1 GFLOP): count the same
    # products through a Hugging Face model's plain attention instead.
    config = getattr(getattr(module, "model", None), "config", None)
    attention = getattr(config, "_attn_implementation", None)
    if attention is not None:
        config._attn_implementation = "eager"
    try:
        with torch.inference_mode(), FlopCounterMode(display=False) as counter:
            module(pixels)
    finally:
        if attention is not None:
            config._attn_implementation = attention
    return counter.get_total_flops() / 1e9


def peak_rss_mib() -> float:
    """Peak resident memory of this process (VmHWM; ``ru_maxrss`` where /proc is absent), MiB."""
    status = Path("/proc/self/status")
    if status.is_file():
        for line in status.read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def reset_peak_rss() -> bool:
    """Start the peak-RSS count again from the current RSS (Linux ``clear_refs``); False where unsupported."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def children_peak_rss_mib() -> float:
    """Largest peak RSS among this process's finished child processes (the decoding workers), MiB."""
    return resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss / 1024


def read_tiles(data_dir: Path, n_images: int, tile_size: int) -> tuple[torch.Tensor, list[Path]]:
    """Decode and tile the first images of a data folder through the extraction's own data path.

    Returns:
        (n_tiles, T, T, 3) uint8 tiles in image order, and the image files they came from (one per image).
    """
    records = find_records(data_dir, "all")[:n_images]
    dataset = TileDataset(records, TilingSettings(tile_size=tile_size), DEFAULT_MAX_PIXELS)
    workers = min(default_workers(), len(records) - 1)  # decoding in processes, as extraction does
    items = list(DataLoader(dataset, batch_size=None, collate_fn=keep_as_is, num_workers=max(0, workers)))
    kept = [item for item in items if isinstance(item, ImageTiles)]
    if not kept:
        raise ValueError(f"No image of {data_dir} gave a tile; check the folder.")
    return torch.cat([item.tiles for item in kept]), [records[item.position].image_path for item in kept]


WARMUP_BATCHES = 3  # untimed batches first: first-call allocations, kernel choice, compiling
TIMED_BATCHES = 9  # at least this many batches are timed; their median is the rate


def full_batch(tiles: torch.Tensor, batch_size: int) -> torch.Tensor:
    """(batch_size, ...): the first ``batch_size`` rows of ``tiles``, repeated when there are fewer."""
    return torch.cat([tiles[:batch_size]] * -(-batch_size // len(tiles)))[:batch_size]


def _steady_rate(batch_seconds: list[float], batch_size: int) -> float:
    """Tiles/s of the median full batch: what the model sustains, without a slow first call or a noisy neighbour."""
    return batch_size / float(np.median(batch_seconds))


def model_only(
    embedder: Embedder, tiles: torch.Tensor, batch_size: int, warmup_tiles: int | None = None, min_tiles: int = 0,
    timed_batches: int = TIMED_BATCHES,
) -> tuple[float, np.ndarray]:
    """Tiles/s of the embedder on tiles already in memory: the median of at least ``timed_batches`` full batches.

    Warm-up: ``warmup_tiles`` tiles (default :data:`WARMUP_BATCHES` batches). One pass over all tiles gives the
    embeddings; the tiles are then embedded again until at least ``min_tiles`` tiles and ``timed_batches`` full
    batches were timed. The time of a batch is the time from one batch's embeddings to the next's, with one
    batch in flight while the next is submitted, as extraction runs them. (Before, the figure was the mean of one
    pass after a one-batch warm-up: four batches for 64 one-tile images, 25% under a bare compiled loop's median.)

    Returns:
        (tiles per second, (n, D) float32 embeddings of all tiles, from the first pass).
    """
    warmup = warmup_tiles or WARMUP_BATCHES * batch_size
    first = full_batch(tiles, batch_size)
    for start in range(0, warmup, batch_size):  # first-call allocations, kernel choice, compiling: not throughput
        embedder(first[: min(batch_size, warmup - start)])
    starts = list(range(0, len(tiles), batch_size))
    full = sum(1 for start in starts if start + batch_size <= len(tiles))
    passes = max(1, -(-min_tiles // len(tiles)), -(-timed_batches // max(full, 1)))
    batches = ((tiles[start : start + batch_size], start) for start in starts * passes)
    parts, timed = [], []  # (tiles, seconds) of every batch
    last = time.perf_counter()
    for _, embeddings in embedder.embed_batches(batches):
        now = time.perf_counter()
        timed.append((len(embeddings), now - last))
        last = now
        parts.append(embeddings)
    full_seconds = [seconds for n, seconds in timed if n == batch_size]
    if full_seconds:
        rate = _steady_rate(full_seconds, batch_size)
    else:  # fewer tiles than a batch: the short batches are all there is
        rate = sum(n for n, _ in timed) / max(sum(seconds for _, seconds in timed), 1e-9)
    return rate, np.concatenate(parts[: len(starts)])


def bare_forward(model: LoadedModel, tiles: torch.Tensor, batch_size: int, precision: str, compiled: bool,
                 device: torch.device) -> Callable[[], None]:
    """One full batch through the plain recipe, as a user would write it: the model's module (compiled with freezing
    when ``compiled``), autocast in ``precision``, on tiles normalised beforehand (once, here). The yardstick of
    :func:`model_only`.
    """
    import copy

    from pipeline.embed.preprocessing import TileTransform
    from pipeline.embed.runtime import inference_context

    module = copy.deepcopy(model.module).to(device).eval()
    forward = torch.compile(module, dynamic=False, options={"freezing": True}) if compiled else module
    with torch.inference_mode():
        pixels = full_batch(TileTransform(model.preprocessing)(tiles[:batch_size]).contiguous().to(device), batch_size)

    def run() -> None:
        with inference_context(device, precision):
            forward(pixels).float().cpu()

    return run


def paired_rates(embedder: Embedder, model: LoadedModel, tiles: torch.Tensor, batch_size: int, precision: str,
                 compiled: bool, device: torch.device, pairs: int = TIMED_BATCHES) -> tuple[float, float]:
    """(the embedder's tiles/s, :func:`bare_forward`'s tiles/s), timed batch by batch in turn on the same full batch.

    A shared VM's speed drifts by 10% from one minute to the next, so two loops timed one after the other differ by
    that much; alternating their batches gives both the same minutes. Medians of ``pairs`` batches each, after
    :data:`WARMUP_BATCHES` of each.
    """
    run = bare_forward(model, tiles, batch_size, precision, compiled, device)
    batch = full_batch(tiles, batch_size)
    ours, theirs = [], []
    for index in range(WARMUP_BATCHES + pairs):
        started = time.perf_counter()
        embedder(batch)
        middle = time.perf_counter()
        run()
        if index >= WARMUP_BATCHES:
            ours.append(middle - started)
            theirs.append(time.perf_counter() - middle)
    return _steady_rate(ours, batch_size), _steady_rate(theirs, batch_size)


def naive_preprocess(model: LoadedModel) -> Callable[[Path], torch.Tensor]:
    """What a first script does per tile file, returning (1, 3, S, S) float32.

    PIL, then the Hugging Face image processor (ViT-like models) or torchvision transforms (others), with the
    model's own size, filter, mean and std.
    """
    pre = model.preprocessing
    if isinstance(model.module, CLSEmbedder):
        from transformers import ViTImageProcessor

        processor = ViTImageProcessor(
            size={"height": pre.input_size, "width": pre.input_size},
            image_mean=list(pre.mean),
            image_std=list(pre.std),
            resample=_PIL_FILTERS[pre.interpolation],
        )
        return lambda path: processor(images=Image.open(path).convert("RGB"), return_tensors="pt")["pixel_values"]
    from torchvision import transforms

    transform = transforms.Compose(
        [
            transforms.Resize(pre.resize_size or pre.input_size,
                              interpolation=transforms.InterpolationMode(pre.interpolation)),
            transforms.CenterCrop(pre.input_size),
            transforms.ToTensor(),
            transforms.Normalize(pre.mean, pre.std),
        ]
    )
    return lambda path: transform(Image.open(path).convert("RGB")).unsqueeze(0)


def naive_loop(model: LoadedModel, paths: Sequence[Path], device: torch.device) -> tuple[float, np.ndarray]:
    """Tiles/s of one tile at a time: read, preprocess per tile, fp32 forward pass of batch 1, after one warm-up.

    Returns:
        (tiles per second, (n, D) float32 embeddings).
    """
    preprocess = naive_preprocess(model)
    module = model.module.to(device)
    with torch.inference_mode():
        module(preprocess(paths[0]).to(device))
        started = time.perf_counter()
        embeddings = [module(preprocess(path).to(device)).float().cpu().numpy() for path in paths]
    return len(paths) / (time.perf_counter() - started), np.concatenate(embeddings)
