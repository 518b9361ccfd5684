"""Stage 1: data workers -> batches across images -> frozen model -> one HDF5 file per image. Resumable."""

from __future__ import annotations

import logging
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path

import numpy as np

from pipeline import cache, store
from pipeline.dataset import ImageRecord, find_records
from pipeline.embedding_loop import embed_images, log_limit
from pipeline.errors import CacheError
from pipeline.extraction_settings import (  # noqa: F401 (re-exported: the settings are part of this module's API)
    QUALITY_FILE,
    QUALITY_SHEET,
    ExtractionSettings,
    ExtractionSummary,
    default_workers,
)
from pipeline.featureset import mean_embedding
from pipeline.hygiene import QualityReport, assess, write_quality_csv
from pipeline.images import file_sha256
from pipeline.locking import FolderLock
from pipeline.models import LoadedModel, load_model
from pipeline.runtime import default_batch_size, resolve_device, resolve_precision
from pipeline.tiling import TilingSettings

logger = logging.getLogger(__name__)


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
        todo, phase = [], time.perf_counter()
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
        summary.timings["checksums"] = time.perf_counter() - phase
        fresh: dict[str, tuple] = {}  # image id -> (attributes, mean embedding) of the files this run writes
        if todo:
            phase = time.perf_counter()
            embed_images(todo, settings, model, device, precision, expected, cache_dir, summary, fresh)
            summary.timings["embedding"] = time.perf_counter() - phase
            log_limit(summary.timings)
        _update_skipped(cache_dir, records, summary.skipped)
        phase = time.perf_counter()
        summary.quality = _write_quality(cache_dir, settings, fresh)
        summary.timings["quality"] = time.perf_counter() - phase
    summary.seconds = time.perf_counter() - started
    return summary


def _write_quality(cache_dir: Path, settings: ExtractionSettings, fresh: dict[str, tuple]) -> QualityReport | None:
    """Assess every cached image (train and test together) and write quality.csv and the contact sheet.

    ``fresh`` maps the ids of the images embedded by this run to (attributes, (D,) mean embedding), so only the
    files this run did not write are read back.
    """
    from pipeline.contact_sheet import write_contact_sheet

    ids, attrs, embeddings = [], [], []
    try:
        for split in ("train", "test"):
            for path in cache.list_image_files(cache_dir, split):
                image_id = f"{split}/{path.stem}"
                if image_id not in fresh:
                    item = store.read_image_features(path)
                    fresh[image_id] = (item.attrs, mean_embedding(item.features))
                ids.append(image_id)
                attrs.append(store.attrs_as_stored(fresh[image_id][0]))  # as a reader of the file would see them
                embeddings.append(fresh[image_id][1])
    except CacheError as exc:
        logger.warning("No quality report: %s", exc)
        return None
    if not ids:
        return None
    sample_index = [a["sample_index"] for a in attrs]
    report = assess(ids, sample_index, attrs, np.stack(embeddings), settings.quality)
    write_quality_csv(cache_dir / QUALITY_FILE, report)
    if write_contact_sheet(cache_dir / QUALITY_SHEET, report, Path(settings.data_dir)):
        logger.info("flagged images: %s (%s)", cache_dir / QUALITY_SHEET, report.summary())
    return report


def _update_skipped(cache_dir: Path, records: list[ImageRecord], skipped: dict[str, str]) -> None:
    processed = {record.image_id: record for record in records}
    kept = {key: value for key, value in cache.read_skipped(cache_dir).items() if key not in processed}
    new = {key: {"sample_index": processed[key].sample_index, "reason": reason} for key, reason in skipped.items()}
    cache.write_json(cache_dir / cache.SKIPPED_FILE, {**kept, **new})
