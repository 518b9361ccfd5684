"""Stage 1: data workers -> batches across images -> frozen model -> one HDF5 file per image. Resumable."""

from __future__ import annotations

import logging
import time
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader
from tqdm.auto import tqdm

from pipeline import cache, store
from pipeline.batching import Prefetcher, TileQueue
from pipeline.dataset import ImageRecord, find_records
from pipeline.embedding import Embedder
from pipeline.errors import CacheError, ImageReadError
from pipeline.extraction_settings import (  # noqa: F401 (re-exported: the settings are part of this module's API)
    QUALITY_FILE,
    QUALITY_SHEET,
    ExtractionSettings,
    ExtractionSummary,
    default_workers,
)
from pipeline.hygiene import QualityReport, assess_feature_sets, write_quality_csv
from pipeline.images import file_sha256
from pipeline.loading import ImageFailure, ImageTiles, TileDataset, keep_as_is
from pipeline.locking import FolderLock
from pipeline.models import LoadedModel, load_model
from pipeline.runtime import default_batch_size, resolve_compile, resolve_device, resolve_precision
from pipeline.tiling import TilingSettings

logger = logging.getLogger(__name__)

MAX_PENDING_WRITES = 16  # bounded, so memory does not grow when the disk is slower than the model


def expected_attrs(model: LoadedModel, tiling: TilingSettings, precision: str) -> dict:
    """The run-level attributes every feature file of this cache carries (identity keys included)."""
    return {
        "schema_version": store.SCHEMA_VERSION,
        "model": model.name,
        "model_source": model.source,
        "model_revision": model.revision,
        "model_checksum": model.checksum,
        "preprocessing": model.preprocessing.to_dict(),
        "precision": precision,
        "tile_size": tiling.tile_size,
        "stride": tiling.step,
        "min_coverage": float(tiling.min_coverage),
        "max_tiles": tiling.max_tiles,
        "seed": tiling.seed,
        "feature_dim": model.dim,
    }


def _hash_pairs(records: list[ImageRecord]) -> list[tuple[str | None, str | None]]:
    # hashlib releases the GIL on large buffers, so threads hash files in parallel.
    with ThreadPoolExecutor(max_workers=4) as pool:
        images = list(pool.map(file_sha256, [r.image_path for r in records]))
        masks = list(pool.map(lambda r: file_sha256(r.mask_path) if r.mask_path else None, records))
    return list(zip(images, masks, strict=True))


def run_extraction(settings: ExtractionSettings, model: LoadedModel | None = None) -> ExtractionSummary:
    """Embed every image of the requested splits that has no up-to-date file in the cache.

    Args:
        settings: The run's settings.
        model: An already loaded model (tests, benchmarks); loaded from ``settings.model`` when None.

    Returns:
        The run summary. Bad images are skipped and listed (``--strict`` raises on the first one instead).

    Raises:
        PipelineError: Bad settings, data folder, model or cache (before any work, or with finished files kept).
    """
    settings.validate()
    records = find_records(settings.data_dir, settings.split)
    device = resolve_device(settings.device)
    settings = replace(settings, batch_size=settings.batch_size or default_batch_size(device))
    model = model or load_model(settings.model)
    precision = resolve_precision(settings.precision, device, model.module)
    expected = expected_attrs(model, settings.tiling, precision)
    cache_dir = Path(settings.out_dir) / cache.cache_name(model.slug, settings.tiling, precision)
    summary = ExtractionSummary(cache_dir, len(records))
    started = time.perf_counter()
    with FolderLock(cache_dir):
        for stale in cache_dir.rglob(f".*{store.TEMP_MARKER}*"):
            stale.unlink(missing_ok=True)  # we hold the lock, so any temporary file is from a dead run
        previous = cache.read_settings(cache_dir) if (cache_dir / cache.SETTINGS_FILE).is_file() else None
        if previous is not None and cache.mismatched_keys(previous, expected):
            logger.warning(
                "%s was made with other settings (%s); its files will be re-embedded.",
                cache_dir,
                ", ".join(cache.mismatched_keys(previous, expected)),
            )
        cache.write_json(
            cache_dir / cache.SETTINGS_FILE, {**expected, "data_dir": str(Path(settings.data_dir).resolve())}
        )
        todo = []
        for record, (image_sha, mask_sha) in zip(records, _hash_pairs(records), strict=True):
            path = cache.feature_path(cache_dir, record.image_id)
            if not settings.overwrite and cache.is_up_to_date(path, expected, image_sha, mask_sha):
                summary.n_reused += 1
            else:
                todo.append(record)
        logger.info(
            "%d images up to date, %d to embed with %s (%s, %s) into %s",
            summary.n_reused,
            len(todo),
            model.name,
            device,
            precision,
            cache_dir,
        )
        if todo:
            _embed(todo, settings, model, device, precision, expected, cache_dir, summary)
        _update_skipped(cache_dir, records, summary.skipped)
        summary.quality = _write_quality(cache_dir, settings)
    summary.seconds = time.perf_counter() - started
    return summary


def _write_quality(cache_dir: Path, settings: ExtractionSettings) -> QualityReport | None:
    """Assess every cached image (train and test together) and write quality.csv and the contact sheet."""
    from pipeline.contact_sheet import write_contact_sheet

    try:
        sets = [cache.load_split(cache_dir, s) for s in ("train", "test") if cache.list_image_files(cache_dir, s)]
    except CacheError as exc:
        logger.warning("No quality report: %s", exc)
        return None
    if not sets:
        return None
    report = assess_feature_sets(sets, settings.quality)
    write_quality_csv(cache_dir / QUALITY_FILE, report)
    if write_contact_sheet(cache_dir / QUALITY_SHEET, report, Path(settings.data_dir)):
        logger.info("flagged images: %s (%s)", cache_dir / QUALITY_SHEET, report.summary())
    return report


def _update_skipped(cache_dir: Path, records: list[ImageRecord], skipped: dict[str, str]) -> None:
    processed = {record.image_id: record for record in records}
    kept = {key: value for key, value in cache.read_skipped(cache_dir).items() if key not in processed}
    new = {key: {"sample_index": processed[key].sample_index, "reason": reason} for key, reason in skipped.items()}
    cache.write_json(cache_dir / cache.SKIPPED_FILE, {**kept, **new})


class _Pending:
    """An image whose tiles are partly embedded."""

    def __init__(self, item: ImageTiles, dim: int) -> None:
        self.item = item
        self.features = np.empty((len(item.tiles), dim), dtype=np.float32)
        self.filled = 0


def _embed(
    todo: list[ImageRecord],
    settings: ExtractionSettings,
    model: LoadedModel,
    device: torch.device,
    precision: str,
    expected: dict,
    cache_dir: Path,
    summary: ExtractionSummary,
) -> None:
    workers = default_workers() if settings.workers is None else settings.workers
    loader = DataLoader(
        TileDataset(todo, settings.tiling, settings.max_pixels, settings.quality_checks),
        batch_size=None,
        collate_fn=keep_as_is,
        num_workers=workers,
        prefetch_factor=4 if workers else None,
        pin_memory=device.type == "cuda",
    )
    compiled = resolve_compile(settings.compile, device, precision)
    embedder = Embedder(model, device, precision, batch_size=settings.batch_size, compile=compiled)
    queue, pending, writes = TileQueue(), {}, []
    writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="h5-writer")
    bar = tqdm(total=len(todo), unit="img", disable=not settings.progress, desc="extract")
    embed_started = time.perf_counter()

    def run_batch(size: int) -> None:
        tiles, slices = queue.take(size)
        features = embedder(tiles)
        row = 0
        for part in slices:
            entry = pending[part.owner]
            entry.features[part.start : part.start + part.count] = features[row : row + part.count]
            entry.filled += part.count
            row += part.count
            if entry.filled == len(entry.item.tiles):
                del pending[part.owner]
                writes.append(writer.submit(_write, todo[part.owner], entry, expected, cache_dir))
                summary.n_tiles += entry.filled
                bar.update(1)
                bar.set_postfix(tiles_per_s=f"{summary.n_tiles / (time.perf_counter() - embed_started):.1f}")
        while len(writes) > MAX_PENDING_WRITES or (writes and writes[0].done()):
            _finish_write(writes.pop(0), summary)

    try:
        # Read ahead in tiles, not images, so the workers keep decoding while the model runs a batch.
        for item in Prefetcher(loader, max_tiles=2 * settings.batch_size):
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
        while queue.size:
            run_batch(settings.batch_size)
        for future in writes:
            _finish_write(future, summary)
    finally:
        writer.shutdown(wait=True)
        bar.close()


def _write(record: ImageRecord, entry: _Pending, expected: dict, cache_dir: Path) -> None:
    attrs = {
        **expected,
        **entry.item.image_attrs,
        "image_id": record.image_id,
        "split": record.split,
        "sample_index": record.sample_index,
        "n_tiles": len(entry.features),
    }
    path = cache.feature_path(cache_dir, record.image_id)
    store.write_image_features(path, entry.features, entry.item.coords, entry.item.coverage, attrs)


def _finish_write(future: Future, summary: ExtractionSummary) -> None:
    future.result()  # re-raises a CacheError (disk full, ...) from the writer thread
    summary.n_embedded += 1
