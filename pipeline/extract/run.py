"""Stage 1: data workers -> batches across images -> frozen model -> one HDF5 file per image. Resumable.

One process embeds one shard of the images (all of them unless ``--shard I/N`` or torchrun say otherwise) under a
claim on that shard (:mod:`pipeline.cache.claims`), so many processes fill one cache at once. Each leaves a record
of its shard (:mod:`pipeline.cache.shards`). The report of the whole cache (``skipped.json``, ``quality.csv``, the
contact sheet) is written by a single process at the end, by rank 0 once every rank is done under torchrun, and by
``extract.py --finalize`` after independent shards.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path

from pipeline import cache
from pipeline.cache.atomic import host_name
from pipeline.cache.claims import ShardClaim, remove_dead_temporaries
from pipeline.cache.folder import create_json
from pipeline.cache.schema import mismatched_keys
from pipeline.data.records import ImageRecord, file_checksums
from pipeline.embed.model import LoadedModel
from pipeline.errors import CacheError, Interrupted
from pipeline.extract.launch import JobStore, torchrun_launch
from pipeline.extract.loop import EmbeddingLoop, log_limit
from pipeline.extract.plan import ExtractionPlan, plan_extraction
from pipeline.extract.quality_report import finish_cache
from pipeline.extract.settings import ExtractionSettings
from pipeline.extract.summary import ExtractionSummary
from pipeline.extract.writer import FeatureWriter
from pipeline.hygiene.checks import QUALITY_VERSION
from pipeline.hygiene.rescore import rescore_files
from pipeline.hygiene.slide_sheet import write_slide_sheet
from pipeline.provenance import versions

logger = logging.getLogger(__name__)


def run_extraction(settings: ExtractionSettings, model: LoadedModel | None = None) -> ExtractionSummary:
    """Embed every image of this process's shard that has no up-to-date file in the cache.

    Args:
        settings: The run's settings.
        model: An already loaded model (tests, benchmarks); loaded from ``settings.model`` when None.

    Returns:
        The run summary. Bad images are skipped and listed (``--strict`` raises on the first one instead).

    Raises:
        PipelineError: Bad settings, data folder, model or cache (before any work, or with finished files kept).
        Interrupted: Ctrl-C; finished files are kept and the message says how many.
    """
    plan = plan_extraction(settings, model, torchrun_launch())
    try:
        return _run(plan)
    except KeyboardInterrupt:
        done = sum(len(cache.list_image_files(plan.cache_dir, split)) for split in ("train", "test"))
        raise Interrupted(
            f"interrupted; {done} finished feature files are kept in {plan.cache_dir}; run the same command to "
            "resume"
        ) from None


def _run(plan: ExtractionPlan) -> ExtractionSummary:
    shard, launch = plan.shard, plan.launch
    job = JobStore(launch, cache.data_key(plan.cache_dir))  # connects now: a broken job fails before any work
    summary = ExtractionSummary(plan.cache_dir, len(plan.shard_records), shard=shard.label if shard.count > 1 else "")
    started = time.perf_counter()
    fresh: dict[str, tuple] = {}  # image id -> (attributes, mean embedding) of the files this run writes
    key = cache.shard_key(plan.settings.split, shard.index, shard.count)
    # under torchrun a claim on this rank's shard by the same job can only be an earlier attempt's
    with ShardClaim(plan.cache_dir, key, shard.label, launch.run_id if launch else None):
        remove_dead_temporaries(plan.cache_dir)
        _write_settings(plan)
        todo, rescore = _todo(plan, summary)
        if todo:
            phase = time.perf_counter()
            _embed(plan, todo, summary, fresh)
            summary.timings["embedding"] = time.perf_counter() - phase
            if summary.n_embedded:  # with every image skipped, waiting for tiles says nothing about --workers
                log_limit(summary.timings)
        if rescore:
            phase = time.perf_counter()
            _rescore(plan, rescore, summary, fresh)
            summary.timings["rescoring"] = time.perf_counter() - phase
        _write_record(plan, key, summary)
    job.mark_done(key)
    if launch is not None and launch.rank == 0:
        logger.info("shard %s done; waiting for the other ranks to write the report of the whole cache", shard.label)
        job.wait_for([cache.shard_key(plan.settings.split, rank, shard.count) for rank in range(shard.count)])
    if shard.count == 1 or (launch is not None and launch.rank == 0):
        phase = time.perf_counter()
        summary.quality, summary.missing = finish_cache(plan.cache_dir, plan.records, plan.settings.quality, fresh)
        summary.timings["quality"] = time.perf_counter() - phase
    elif launch is None:
        summary.next_step = (
            "when every shard has finished, run extract.py --finalize with the same flags (without --shard) to "
            "write the quality report of the whole cache"
        )
    summary.seconds = time.perf_counter() - started
    return summary


def _write_settings(plan: ExtractionPlan) -> None:
    """Create ``settings.json`` once; refuse a cache folder made from another data folder.

    Shards create it at the same time: the first one wins and the others check theirs against it. It is rewritten
    only when the cache was made with other settings (its files are then re-embedded).
    """
    settings_path = plan.cache_dir / cache.SETTINGS_FILE
    data_dir = str(Path(plan.settings.data_dir).resolve())
    content = {**plan.run_attrs, "data_dir": data_dir, "versions": versions()}
    if not settings_path.is_file() and create_json(settings_path, content):
        return
    previous = cache.read_settings(plan.cache_dir)
    if previous.get("data_dir") not in (None, data_dir):
        raise CacheError(
            f"{plan.cache_dir} holds the features of {previous['data_dir']}, not of --data {data_dir}; it is left "
            "as it is. Use another --out for this data folder."
        )
    keys = mismatched_keys(previous, plan.run_attrs)
    if keys:
        logger.warning("%s was made with other settings (%s); its files will be re-embedded.", plan.cache_dir,
                       ", ".join(keys))
    if keys or "data_dir" not in previous:
        cache.write_json(settings_path, content)


def _todo(plan: ExtractionPlan, summary: ExtractionSummary) -> tuple[list[ImageRecord], list[ImageRecord]]:
    """The images of the shard to embed, and those whose file needs only its hygiene scores recomputed.

    Images without an up-to-date file are embedded (all of them with ``--overwrite``); a file made by an older
    hygiene version is re-scored (unless the checks are off), without the model.
    """
    phase, todo, rescore, records = time.perf_counter(), [], [], plan.shard_records
    paths = [cache.feature_path(plan.cache_dir, record.image_id) for record in records]
    # Only an existing file needs the checksums of its image and mask: an image without one is embedded anyway (its
    # worker hashes the bytes it decodes), so a new cache's files are read once, not twice.
    checked = [] if plan.settings.overwrite else [i for i, path in enumerate(paths) if path.is_file()]
    checksums = dict(zip(checked, file_checksums([records[i] for i in checked]), strict=True))
    for position, (record, path) in enumerate(zip(records, paths, strict=True)):
        status = "embed" if position not in checksums else cache.file_status(
            path, plan.run_attrs, *checksums[position], QUALITY_VERSION)[0]
        if status == "embed":
            todo.append(record)
        else:
            summary.n_reused += 1
            if status == "rescore" and plan.settings.quality_checks:
                rescore.append(record)
    shard = f" of shard {plan.shard.label}" if plan.shard.count > 1 else ""
    logger.info("%d images%s up to date (%d of them to re-score), %d to embed with %s (%s, %s) into %s",
                summary.n_reused, shard, len(rescore), len(todo), plan.model.name, plan.device, plan.precision,
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
            if loop.slide_views:
                _write_slide_sheet(plan, loop.slide_views)


def _write_slide_sheet(plan: ExtractionPlan, views: list) -> None:
    """The contact sheet of the slides this process embedded (one per shard when sharded)."""
    name = cache.SLIDE_SHEET
    if plan.shard.count > 1:
        name = name.replace(".png", f"_shard{plan.shard.index}of{plan.shard.count}.png")
    views = sorted(views, key=lambda view: view.name)
    write_slide_sheet(plan.cache_dir / name, views)
    logger.info("slides' contact sheet (tissue outline and tiles): %s", plan.cache_dir / name)


def _write_record(plan: ExtractionPlan, key: str, summary: ExtractionSummary) -> None:
    """What this shard did, for readers that merge every shard's skipped images and timings."""
    samples = {record.image_id: record.sample_index for record in plan.shard_records}
    cache.write_shard_record(plan.cache_dir, key, {
        "shard": plan.shard.label,
        "split": plan.settings.split,
        "images": list(samples),
        "skipped": {key: {"sample_index": samples[key], "reason": why} for key, why in summary.skipped.items()},
        "fallbacks": summary.fallbacks,
        "n_embedded": summary.n_embedded,
        "n_reused": summary.n_reused,
        "n_tiles": summary.n_tiles,
        "timings": summary.timings,
        "device": str(plan.device),
        "host": host_name(),
        "pid": os.getpid(),
        "torchrun": {"run_id": plan.launch.run_id, "rank": plan.launch.rank,
                     "restart_count": plan.launch.restart_count} if plan.launch else None,
        "finished": time.time(),
    })
