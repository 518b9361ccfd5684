"""Stage 1: data workers -> batches across images -> frozen model -> one HDF5 file per image. Resumable."""

from __future__ import annotations

import logging
import time
from pathlib import Path

from pipeline import cache
from pipeline.cache import store
from pipeline.cache.schema import mismatched_keys
from pipeline.data.records import ImageRecord, file_checksums
from pipeline.embed.model import LoadedModel
from pipeline.errors import CacheError, Interrupted
from pipeline.extract.locking import FolderLock
from pipeline.extract.loop import EmbeddingLoop, log_limit
from pipeline.extract.plan import ExtractionPlan, plan_extraction
from pipeline.extract.quality_report import write_quality_report
from pipeline.extract.settings import ExtractionSettings
from pipeline.extract.summary import ExtractionSummary
from pipeline.extract.writer import FeatureWriter
from pipeline.hygiene.checks import QUALITY_VERSION
from pipeline.hygiene.rescore import rescore_files
from pipeline.provenance import versions

logger = logging.getLogger(__name__)


def run_extraction(settings: ExtractionSettings, model: LoadedModel | None = None) -> ExtractionSummary:
    """Embed every image of the requested splits that has no up-to-date file in the cache.

    Args:
        settings: The run's settings.
        model: An already loaded model (tests, benchmarks); loaded from ``settings.model`` when None.

    Returns:
        The run summary. Bad images are skipped and listed (``--strict`` raises on the first one instead).

    Raises:
        PipelineError: Bad settings, data folder, model or cache (before any work, or with finished files kept).
        Interrupted: Ctrl-C; finished files are kept and the message says how many.
    """
    plan = plan_extraction(settings, model)
    try:
        return _run(plan)
    except KeyboardInterrupt:
        done = sum(len(cache.list_image_files(plan.cache_dir, split)) for split in ("train", "test"))
        raise Interrupted(
            f"interrupted; {done} finished feature files are kept in {plan.cache_dir}; run the same command to "
            "resume"
        ) from None


def _run(plan: ExtractionPlan) -> ExtractionSummary:
    summary = ExtractionSummary(plan.cache_dir, len(plan.records))
    started = time.perf_counter()
    fresh: dict[str, tuple] = {}  # image id -> (attributes, mean embedding) of the files this run writes
    with FolderLock(plan.cache_dir):
        for stale in plan.cache_dir.rglob(f".*{store.TEMP_MARKER}*"):
            stale.unlink(missing_ok=True)  # we hold the lock, so any temporary file is from a dead run
        _write_settings(plan)
        todo, rescore = _todo(plan, summary)
        if todo:
            phase = time.perf_counter()
            _embed(plan, todo, summary, fresh)
            summary.timings["embedding"] = time.perf_counter() - phase
            log_limit(summary.timings)
        if rescore:
            phase = time.perf_counter()
            _rescore(plan, rescore, summary, fresh)
            summary.timings["rescoring"] = time.perf_counter() - phase
        _update_skipped(plan.cache_dir, plan.records, summary.skipped)
        phase = time.perf_counter()
        paths = {record.image_id: record.image_path for record in plan.records}
        summary.quality = write_quality_report(plan.cache_dir, plan.settings.quality, paths, fresh)
        summary.timings["quality"] = time.perf_counter() - phase
    summary.seconds = time.perf_counter() - started
    return summary


def _write_settings(plan: ExtractionPlan) -> None:
    """Write ``settings.json``; refuse a cache folder made from another data folder."""
    settings_path = plan.cache_dir / cache.SETTINGS_FILE
    data_dir = str(Path(plan.settings.data_dir).resolve())
    previous = cache.read_settings(plan.cache_dir) if settings_path.is_file() else None
    if previous is not None and previous.get("data_dir") not in (None, data_dir):
        raise CacheError(
            f"{plan.cache_dir} holds the features of {previous['data_dir']}, not of --data {data_dir}; it is left "
            "as it is. Use another --out for this data folder."
        )
    if previous is not None and mismatched_keys(previous, plan.run_attrs):
        logger.warning("%s was made with other settings (%s); its files will be re-embedded.", plan.cache_dir,
                       ", ".join(mismatched_keys(previous, plan.run_attrs)))
    cache.write_json(settings_path, {**plan.run_attrs, "data_dir": data_dir, "versions": versions()})


def _todo(plan: ExtractionPlan, summary: ExtractionSummary) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """The images to embed, and those whose file needs only its hygiene scores recomputed.

    Images without an up-to-date file are embedded (all of them with ``--overwrite``); a file made by an older
    hygiene version is re-scored (unless the checks are off), without the model.
    """
    phase, todo, rescore = time.perf_counter(), [], []
    for record, (image_sha, mask_sha) in zip(plan.records, file_checksums(plan.records), strict=True):
        path = cache.feature_path(plan.cache_dir, record.image_id)
        status = "embed" if plan.settings.overwrite else cache.file_status(
            path, plan.run_attrs, image_sha, mask_sha, QUALITY_VERSION)[0]
        if status == "embed":
            todo.append(record)
        else:
            summary.n_reused += 1
            if status == "rescore" and plan.settings.quality_checks:
                rescore.append(record)
    logger.info("%d images up to date (%d of them to re-score), %d to embed with %s (%s, %s) into %s",
                summary.n_reused, len(rescore), len(todo), plan.model.name, plan.device, plan.precision,
                plan.cache_dir)
    summary.timings["checksums"] = time.perf_counter() - phase
    return todo, rescore


def _rescore(plan: ExtractionPlan, records: list[ImageRecord], summary: ExtractionSummary, fresh: dict) -> None:
    """Recompute the hygiene attributes of files made by an older version, without the model."""
    paths = [cache.feature_path(plan.cache_dir, record.image_id) for record in records]
    done = rescore_files(records, paths, plan.settings.max_pixels, plan.workers, plan.settings.progress)
    summary.n_rescored = len(done.fresh)
    fresh.update(done.fresh)


def _embed(plan: ExtractionPlan, todo: list[ImageRecord], summary: ExtractionSummary, fresh: dict) -> None:
    def written(path: Path) -> None:
        summary.n_embedded += 1

    with FeatureWriter(plan.settings.write_processes, on_done=written) as writer:
        loop = EmbeddingLoop(plan, todo, writer, summary)
        try:
            loop.run()
            writer.finish()
        finally:
            fresh.update(loop.fresh)


def _update_skipped(cache_dir: Path, records: list[ImageRecord], skipped: dict[str, str]) -> None:
    processed = {record.image_id: record for record in records}
    kept = {key: value for key, value in cache.read_skipped(cache_dir).items() if key not in processed}
    new = {key: {"sample_index": processed[key].sample_index, "reason": reason} for key, reason in skipped.items()}
    cache.write_json(cache_dir / cache.SKIPPED_FILE, {**kept, **new})
