"""The embedding loop of one extraction: decoding workers -> batches across images -> model -> feature files.

The main thread only moves tiles: workers decode and cut them, a reader thread keeps two batches ready
(:class:`~pipeline.batching.Prefetcher`), each batch is submitted to the model before the previous one's results are
handled (so a GPU never waits for the host), and finished images go to a
:class:`~pipeline.feature_writer.FeatureWriter`.
The time spent waiting for tiles and for the model is recorded, so a run says what limited it.
"""

from __future__ import annotations

import contextlib
import logging
import time
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from pipeline import cache
from pipeline.batching import Prefetcher, TileQueue
from pipeline.dataset import ImageRecord
from pipeline.embedding import Embedder, InFlight
from pipeline.errors import ImageReadError
from pipeline.extraction_settings import ExtractionSettings, ExtractionSummary, default_workers
from pipeline.feature_writer import FeatureWriter
from pipeline.featureset import mean_embedding
from pipeline.loading import ImageFailure, ImageTiles, TileDataset, keep_as_is
from pipeline.models import LoadedModel
from pipeline.runtime import resolve_compile

logger = logging.getLogger(__name__)


def log_limit(timings: dict[str, float]) -> None:
    """Say what held the embedding loop back: the decoding workers or the model."""
    tiles, model = timings.get("waiting_for_tiles", 0.0), timings.get("waiting_for_model", 0.0)
    logger.info(
        "embedding took %.1f s, of which %.1f s waiting for decoded tiles%s and %.1f s in or waiting for the model",
        timings["embedding"],
        tiles,
        " (more --workers would help, if there are idle cores)" if tiles > 0.3 * timings["embedding"] else "",
        model,
    )


class _Pending:
    """An image whose tiles are partly embedded."""

    def __init__(self, item: ImageTiles, dim: int) -> None:
        self.item = item
        self.features = np.empty((len(item.tiles), dim), dtype=np.float32)
        self.filled = 0


def embed_images(
    todo: list[ImageRecord],
    settings: ExtractionSettings,
    model: LoadedModel,
    device: torch.device,
    precision: str,
    expected: dict,
    cache_dir: Path,
    summary: ExtractionSummary,
    fresh: dict[str, tuple],
) -> None:
    """Embed ``todo`` images and write one file each; fill ``summary`` (tiles, skips, timings) and ``fresh``.

    Args:
        fresh: Filled with image id -> (attributes, (D,) mean embedding) of every file written, so the quality
            report need not read them back.

    Raises:
        ImageReadError: A bad image with ``settings.strict`` (the files of the images before it are kept).
        CacheError: A file cannot be written.
    """
    workers = default_workers(device.type) if settings.workers is None else settings.workers
    loader = DataLoader(
        TileDataset(todo, settings.tiling, settings.max_pixels, settings.quality_checks),
        batch_size=None,
        collate_fn=keep_as_is,
        num_workers=workers,
        prefetch_factor=4 if workers else None,
    )
    compiled = resolve_compile(settings.compile, device, precision)
    embedder = Embedder(model, device, precision, batch_size=settings.batch_size, compile=compiled)
    queue, pending, in_flight = TileQueue(), {}, []
    clock = summary.timings
    tile_shape = (settings.tiling.tile_size, settings.tiling.tile_size, 3)
    clock.update(waiting_for_tiles=0.0, waiting_for_model=0.0)
    bar = tqdm(total=len(todo), unit="img", disable=not settings.progress, desc="extract")
    embed_started = time.perf_counter()

    def written(path: Path) -> None:
        summary.n_embedded += 1

    def run_batch(size: int) -> None:
        # Submit this batch before handling the previous one's results, so the GPU is never idle meanwhile.
        tiles, slices = queue.take(size, out=embedder.next_host_buffer(tile_shape))
        started = time.perf_counter()
        launched = embedder.submit(tiles)
        clock["waiting_for_model"] += time.perf_counter() - started
        if in_flight:
            store_batch(*in_flight.pop())
        in_flight.append((launched, slices))

    def store_batch(launched: InFlight, slices: list) -> None:
        started = time.perf_counter()
        features = embedder.collect(launched)
        clock["waiting_for_model"] += time.perf_counter() - started
        row = 0
        for part in slices:
            entry = pending[part.owner]
            entry.features[part.start : part.start + part.count] = features[row : row + part.count]
            entry.filled += part.count
            row += part.count
            if entry.filled == len(entry.item.tiles):
                del pending[part.owner]
                contents = _file_contents(todo[part.owner], entry, expected, cache_dir)
                writer.submit(*contents)
                fresh[todo[part.owner].image_id] = (contents[-1], mean_embedding(entry.features))
                summary.n_tiles += entry.filled
                bar.update(1)
                bar.set_postfix(tiles_per_s=f"{summary.n_tiles / (time.perf_counter() - embed_started):.1f}")

    with FeatureWriter(settings.write_processes, on_done=written) as writer:
        try:
            # Read ahead in tiles, not images, so the workers keep decoding while the model runs a batch.
            waited = time.perf_counter()
            for item in Prefetcher(loader, max_tiles=2 * settings.batch_size):
                clock["waiting_for_tiles"] += time.perf_counter() - waited
                if isinstance(item, ImageFailure):
                    record = todo[item.position]
                    if settings.strict:
                        raise ImageReadError(f"{item.reason} (--strict stops at the first bad image)")
                    logger.warning("skipped %s: %s", record.image_id, item.reason)
                    summary.skipped[record.image_id] = item.reason
                    # a file from an earlier version of this image would otherwise stand in for the unreadable one
                    cache.feature_path(cache_dir, record.image_id).unlink(missing_ok=True)
                    bar.update(1)
                    continue
                if item.image_attrs["fallback"]:
                    record = todo[item.position]
                    summary.fallbacks[record.image_id] = item.image_attrs["fallback"]
                    logger.info(
                        "%s: no tile reaches min coverage %.2f; kept one %s tile (coverage %.2f)",
                        record.image_id,
                        settings.tiling.min_coverage,
                        item.image_attrs["fallback"],
                        float(item.coverage[0]),
                    )
                pending[item.position] = _Pending(item, model.dim)
                queue.put(item.position, item.tiles)
                while queue.size >= settings.batch_size:
                    run_batch(settings.batch_size)
                waited = time.perf_counter()
            while queue.size:
                run_batch(settings.batch_size)
            if in_flight:
                store_batch(*in_flight.pop())
            writer.finish()
        except BaseException:
            # Keep what is already embedded (--strict, Ctrl-C): the batch in flight finishes its images' files.
            with contextlib.suppress(Exception):
                if in_flight:
                    store_batch(*in_flight.pop())
            raise
        finally:
            bar.close()


def _file_contents(record: ImageRecord, entry: _Pending, expected: dict, cache_dir: Path) -> tuple:
    """The arguments of :meth:`FeatureWriter.submit` for one finished image: path, arrays, attributes."""
    attrs = {
        **expected,
        **entry.item.image_attrs,
        "image_id": record.image_id,
        "split": record.split,
        "sample_index": record.sample_index,
        "n_tiles": len(entry.features),
    }
    path = cache.feature_path(cache_dir, record.image_id)
    return path, entry.features, entry.item.coords, entry.item.coverage, attrs
