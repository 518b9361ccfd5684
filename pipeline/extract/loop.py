"""The embedding loop of one extraction: decoding workers -> batches across images -> model -> feature files.

The main thread only moves tiles: workers decode and cut them, a reader thread keeps two batches ready
(:class:`~pipeline.extract.batching.Prefetcher`), :meth:`Embedder.embed_batches` submits each batch before the
previous one's results are handled (so a GPU never waits for the host), and finished images go to a
:class:`~pipeline.extract.writer.FeatureWriter`. The time spent waiting for tiles and for the model is recorded,
so a run says what limited it.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator

import numpy as np
import torch
from torch.utils.data import DataLoader

from pipeline import cache
from pipeline.cache.schema import file_attributes
from pipeline.data.records import ImageRecord
from pipeline.embed.embedder import Embedder
from pipeline.errors import ImageReadError
from pipeline.extract.batching import Prefetcher, Slice, ThreadShare, TileQueue
from pipeline.extract.decoding import ImageFailure, ImageTiles, TileDataset, TileStream, keep_as_is
from pipeline.extract.plan import ExtractionPlan
from pipeline.extract.slots import Ticket, TileSlots
from pipeline.extract.summary import ExtractionSummary
from pipeline.extract.writer import FeatureWriter
from pipeline.hygiene.slide_sheet import SlideView
from pipeline.memory import worker_memory
from pipeline.progress import Progress

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
    """An image whose tiles are partly embedded: (n_tiles, D) float32 filled batch by batch, chunk after chunk.

    ``chunks`` holds (end row, ticket) of each queued item of the image (a slide comes in chunks): a chunk's slot is
    released once its last row is embedded; rows come back in order, since a worker's items are queued in order.
    """

    def __init__(self, item: ImageTiles, dim: int) -> None:
        self.item = item
        self.features = np.empty((item.n_tiles, dim), dtype=np.float32)
        self.total, self.queued, self.filled = item.n_tiles, 0, 0
        self.chunks: deque[tuple[int, Ticket | None]] = deque()
        self.failed = False  # a later chunk failed: the rows queued are embedded and dropped, no file is written


class EmbeddingLoop:
    """Embed some images of a plan and hand each finished image's file to a writer.

    Args:
        plan: The resolved run.
        todo: The images to embed (a subset of ``plan.records``).
        writer: Where finished files go.
        summary: Filled with tiles, skips, fallbacks and the ``waiting_for_*`` timings.

    Attributes:
        fresh: Image id -> (file attributes, (D,) float32 mean embedding) of every file handed to the writer, so the
            quality report need not read them back.
        slide_views: The slides' panels (small thumbnail, tissue, tiles) for the slides' contact sheet.
    """

    def __init__(self, plan: ExtractionPlan, todo: list[ImageRecord], writer: FeatureWriter,
                 summary: ExtractionSummary) -> None:
        self.plan, self.todo, self.writer, self.summary = plan, todo, writer, summary
        self.fresh: dict[str, tuple[dict, np.ndarray]] = {}
        self.slide_views: list[SlideView] = []  # a panel of the slides' contact sheet per slide embedded
        self._pending: dict[int, _Pending] = {}
        self._queue = TileQueue()
        self._slots = TileSlots(0)  # replaced by the loader's, which knows the workers
        self._cpu_batch: torch.Tensor | None = None  # the one batch buffer on a CPU (see _take)
        # torchrun's ranks share one terminal, where one rank's log lines would break another's bar: lines only
        self._progress = Progress(len(todo), "extract", enabled=plan.settings.progress,
                                  bar=False if plan.launch is not None else None)

    def run(self) -> None:
        """Embed every image of ``todo``.

        Raises:
            ImageReadError: A bad image under ``--strict`` (the images already embedded keep their files).
            CacheError: A file cannot be written.
        """
        plan = self.plan
        embedder = Embedder(plan.model, plan.device, plan.precision, batch_size=plan.batch_size, compile=plan.compile)
        self._embedder = embedder
        self.summary.timings.update(waiting_for_tiles=0.0, waiting_for_model=0.0)
        try:
            for slices, features in embedder.embed_batches(self._batches()):
                self._store(slices, features)
        finally:
            self.summary.timings["waiting_for_model"] = embedder.model_seconds
            if embedder.compile_seconds:  # within waiting_for_model: the first batch's forward pass compiles
                self.summary.timings["compiling"] = embedder.compile_seconds
            self._progress.close()

    def _loader(self) -> DataLoader:
        plan = self.plan
        workers = plan.workers
        self._slots = TileSlots(workers)
        preprocessing = plan.model.preprocessing
        settings = plan.settings
        dataset = TileDataset(self.todo, settings.tiling, settings.max_pixels, settings.quality_checks,
                              self._slots, (preprocessing.resized_side, preprocessing.interpolation),
                              settings.tissue, plan.target_mpp, settings.input_mpp, plan.cache_dir / cache.TISSUE_DIR)
        return DataLoader(TileStream(dataset), batch_size=None, collate_fn=keep_as_is, num_workers=workers,
                          prefetch_factor=4 if workers else None, worker_init_fn=worker_memory)

    def _batches(self) -> Iterator[tuple[torch.Tensor, list[Slice]]]:
        """Full batches of tiles across images (a short one at the end), each with where its rows came from."""
        size, clock = self.plan.batch_size, self.summary.timings
        # Read ahead in tiles, not images, so the workers keep decoding while the model runs a batch.
        loader = self._loader()  # its slots give the items that carry only a row count their tiles, as they arrive
        # map() calls iter(loader) here, in this thread, which starts the workers (see Prefetcher)
        prefetcher = Prefetcher(map(self._slots.received, loader), max_tiles=2 * size)
        share = ThreadShare(self.plan.workers if self.plan.device.type == "cpu" else 0, size)
        waited = time.perf_counter()
        try:
            for item in prefetcher:
                clock["waiting_for_tiles"] += time.perf_counter() - waited
                if isinstance(item, ImageFailure):
                    self._skip(item)
                else:
                    self._admit(item)
                    while self._queue.size >= size:
                        batch = self._take(size)
                        share.before_batch(self._queue.size + prefetcher.held)
                        yield batch
                waited = time.perf_counter()
            while self._queue.size:
                batch = self._take(size)
                share.before_batch(size)  # the workers are done: every core
                yield batch
        finally:
            share.restore()
            if share.reduced:
                logger.info("%d of %d batches ran on %d thread(s) while the decoding workers were behind",
                            share.reduced, share.batches, share.fewer)

    def _take(self, size: int) -> tuple[torch.Tensor, list[Slice]]:
        # On CUDA the batch is gathered straight into the pinned buffer the embedder sends next. On a CPU the batch is
        # embedded before submit returns, so one buffer serves every batch: a new one per batch cost the kernel's
        # zero-filling of its pages (about 1 ms per tile here, more than cutting the tile).
        out = self._embedder.next_host_buffer(self.plan.tile_shape)
        if out is None and self.plan.device.type == "cpu":
            if self._cpu_batch is None:
                self._cpu_batch = torch.empty((size, *self.plan.tile_shape), dtype=torch.uint8)
            out = self._cpu_batch
        return self._queue.take(size, out=out)

    def _skip(self, failure: ImageFailure) -> None:
        record = self.todo[failure.position]
        if self.plan.settings.strict:
            raise ImageReadError(f"{failure.reason} (--strict stops at the first bad image)")
        entry = self._pending.get(failure.position)
        if entry is not None:  # a slide that failed after some chunks: those still queued are embedded, then dropped
            entry.failed, entry.total = True, entry.queued
            self.slide_views = [view for view in self.slide_views if view is not entry.item.view]
            if entry.filled == entry.total:
                del self._pending[failure.position]
        logger.warning("skipped %s: %s", record.image_id, failure.reason)
        self.summary.skipped[record.image_id] = failure.reason
        # a file from an earlier version of this image would otherwise stand in for the unreadable one
        cache.feature_path(self.plan.cache_dir, record.image_id).unlink(missing_ok=True)
        self._progress.update(1)

    def _admit(self, item: ImageTiles) -> None:
        if item.start:  # a later chunk of a slide: its first made the entry
            self._queue_chunk(self._pending[item.position], item)
            return
        fallback = item.image_attrs["fallback"]
        if fallback:
            record = self.todo[item.position]
            self.summary.fallbacks[record.image_id] = fallback
            logger.info("%s: %s", record.image_id, item.note)
        if item.view is not None:
            self.slide_views.append(item.view)
        self._pending[item.position] = _Pending(item, self.plan.model.dim)
        self._queue_chunk(self._pending[item.position], item)
        item.tiles = torch.empty(0, dtype=torch.uint8)  # the queue holds them; the entry keeps only what is written

    def _queue_chunk(self, entry: _Pending, item: ImageTiles) -> None:
        entry.queued += len(item.tiles)
        entry.chunks.append((entry.queued, item.ticket))
        self._queue.put(item.position, item.tiles, start=item.start)

    def _store(self, slices: list[Slice], features: np.ndarray) -> None:
        """Copy a batch's embeddings to their images; write every image that is now complete."""
        row = 0
        for part in slices:
            entry = self._pending[part.owner]
            entry.features[part.start : part.start + part.count] = features[row : row + part.count]
            entry.filled += part.count
            row += part.count
            while entry.chunks and entry.chunks[0][0] <= entry.filled:  # embedded: the worker may reuse the slot
                self._slots.release(entry.chunks.popleft()[1])
            if entry.filled == entry.total:
                del self._pending[part.owner]
                if not entry.failed:
                    self._finish(part.owner, entry)

    def _finish(self, position: int, entry: _Pending) -> None:
        record = self.todo[position]
        item = entry.item
        attrs = file_attributes(self.plan.run_attrs, item.image_attrs, record.image_id, record.sample_index,
                                len(entry.features))
        path = cache.feature_path(self.plan.cache_dir, record.image_id)
        self.writer.submit(path, entry.features, item.coords, item.coverage, attrs, item.coords_attrs)
        self.fresh[record.image_id] = (attrs, cache.mean_embedding(entry.features))
        self.summary.n_tiles += len(entry.features)
        self._progress.update(1, tiles=len(entry.features))
