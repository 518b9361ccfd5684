"""The report of a whole cache, written by one process once every shard is done.

That is ``skipped.json`` merged from the shards' records, ``quality.csv`` and the contact sheet, and the list of
images no shard has embedded yet. A single process writes it at the end of its run; under torchrun rank 0 does,
after the barrier; after independent shards (``--shard I/N``, Slurm arrays) ``extract.py --finalize`` does
(:func:`finalize_cache`), without a model.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline import cache
from pipeline.cache import store
from pipeline.cache.claims import live_claims
from pipeline.data.records import ImageRecord, find_records, slide_listing
from pipeline.errors import CacheError
from pipeline.extract.settings import ExtractionSettings
from pipeline.extract.summary import listed
from pipeline.extract.verify import find_cache_dir
from pipeline.hygiene.assessment import QUALITY_FILE, QUALITY_SHEET, QualityReport, assess
from pipeline.hygiene.contact_sheet import write_contact_sheet
from pipeline.hygiene.quality_file import write_quality_csv
from pipeline.hygiene.settings import QualitySettings
from pipeline.hygiene.slide_stats import add_slide_statistics

logger = logging.getLogger(__name__)


def write_quality_report(
    cache_dir: Path, settings: QualitySettings, image_paths: dict[str, Path], fresh: dict[str, tuple]
) -> QualityReport | None:
    """Assess every cached image (train and test together) and write quality.csv and the contact sheet.

    Args:
        cache_dir: The cache folder.
        settings: The hygiene thresholds.
        image_paths: Image id -> image file, for the contact sheet's thumbnails.
        fresh: Image id -> (attributes, (D,) mean embedding) of the files this run wrote; only the other files are
            read back. Filled in with what is read.

    Returns:
        The report, or None when the cache holds no image or a file cannot be read (logged).
    """
    ids, attrs, embeddings = [], [], []
    try:
        for split in ("train", "test"):
            for path in cache.list_image_files(cache_dir, split):
                image_id = f"{split}/{path.stem}"
                if image_id not in fresh:
                    item = store.read_image_features(path)
                    fresh[image_id] = (item.attrs, cache.mean_embedding(item.features))
                ids.append(image_id)
                attrs.append(store.attrs_as_stored(fresh[image_id][0]))  # as a reader of the file would see them
                embeddings.append(fresh[image_id][1])
    except CacheError as exc:
        logger.warning("No quality report: %s", exc)
        return None
    if not ids:
        return None
    by_id = dict(zip(ids, attrs, strict=True))  # slides' tissue and pen statistics, once per slide file
    if add_slide_statistics(image_paths, {i: cache.feature_path(cache_dir, i) for i in ids}, by_id):
        attrs = [by_id[i] for i in ids]
        fresh.update({i: (by_id[i], fresh[i][1]) for i in ids})
    sample_index = [a["sample_index"] for a in attrs]
    report = assess(ids, sample_index, attrs, np.stack(embeddings), settings)
    if report.unscored_warning():
        logger.warning("%s", report.unscored_warning())
    write_quality_csv(cache_dir / QUALITY_FILE, report)
    if write_contact_sheet(cache_dir / QUALITY_SHEET, report, image_paths):
        logger.info("flagged images: %s (%s)", cache_dir / QUALITY_SHEET, report.summary())
    return report


def finish_cache(
    cache_dir: Path, records: list[ImageRecord], settings: QualitySettings, fresh: dict[str, tuple]
) -> tuple[QualityReport | None, list[str]]:
    """Merge the shards' skipped images into ``skipped.json``, find what is missing, write the quality report.

    Args:
        cache_dir: The cache folder.
        records: The images of the requested splits.
        settings: The hygiene thresholds.
        fresh: As for :func:`write_quality_report`.

    Returns:
        The quality report (or None), and the ids of ``records`` that have neither a file nor a skip entry.
    """
    cache.write_skipped(cache_dir)
    missing = cache.unembedded(cache_dir, records)
    if missing:
        logger.warning("%d image(s) have no feature file yet (a shard has not finished?): %s", len(missing),
                       listed(missing))
    paths = {record.image_id: record.image_path for record in records}
    return write_quality_report(cache_dir, settings, paths, fresh), missing


@dataclass
class FinalizeReport:
    """What ``extract.py --finalize`` found and wrote.

    Attributes:
        cache_dir: The cache folder.
        n_images: Images of the requested splits in the data folder.
        n_files: Of those, the ones with a feature file.
        skipped: ``{image_id: reason}`` of the images extraction skipped as bad input.
        missing: Ids of the images no shard has embedded yet.
        shards: The records of the shards that finished (see :mod:`pipeline.cache.shards`), oldest first.
        running: The claims of shards running now.
        absent: Shards (``I/N``) of the requested split with neither a record nor a running claim.
        quality: The report written, or None (no image in the cache).
    """

    cache_dir: Path
    n_images: int = 0
    n_files: int = 0
    skipped: dict[str, str] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    shards: list[dict] = field(default_factory=list)
    running: list[dict] = field(default_factory=list)
    absent: list[str] = field(default_factory=list)
    quality: QualityReport | None = None

    @property
    def ok(self) -> bool:
        """True when every image has a file or was skipped as bad input."""
        return not self.missing

    def text(self) -> str:
        """The printed report."""
        lines = [
            f"cache: {self.cache_dir}",
            f"{self.n_images} images: {self.n_files} embedded, {len(self.skipped)} skipped as bad input, "
            f"{len(self.missing)} not embedded yet",
        ]
        for record in self.shards:
            timings = record.get("timings", {})
            lines.append(
                f"  shard {record.get('shard', '?')} ({record.get('split', '?')}) on {record.get('host', '?')}: "
                f"{record.get('n_embedded', 0)} embedded, {record.get('n_reused', 0)} up to date, "
                f"{record.get('n_tiles', 0)} tiles in {timings.get('embedding', 0.0):.1f} s"
            )
        lines += [f"  skipped {image_id}: {reason}" for image_id, reason in self.skipped.items()]
        if self.missing:
            lines.append(f"  not embedded yet: {listed(self.missing)}")
        lines += [f"  running now: shard {c.get('shard', c['key'])} (host {c.get('host', '?')}, pid "
                  f"{c.get('pid', '?')})" for c in self.running]
        if self.absent:
            lines.append(f"  no shard record yet from {', '.join(self.absent)}")
        if self.quality:
            lines.append(f"quality: {self.quality.summary()} -> {self.cache_dir / QUALITY_FILE}")
        if self.ok:
            lines.append("result: every image is embedded or skipped; the report covers the whole cache.")
        else:
            lines.append(
                f"result: {len(self.missing)} image(s) are not embedded yet: run the shards that did not finish "
                "(extract.py --shard I/N with the same flags; finished images are kept), then --finalize again."
            )
        return "\n".join(lines)


def finalize_cache(settings: ExtractionSettings) -> FinalizeReport:
    """Write the report of a cache filled by independent shards; say which images no shard has embedded yet.

    Args:
        settings: The extraction flags (``--out``, ``--model``, tiling, ``--precision``, ``--data``, ``--split``,
            the quality thresholds). No model is loaded and no image is embedded.

    Raises:
        PipelineError: Bad flags, no such cache, or a bad data folder.
    """
    settings = settings.resolved()  # --mpp: the tile size it implies
    cache_dir = find_cache_dir(settings)
    records = find_records(settings.data_dir, settings.split, slides=slide_listing(settings.tissue))
    report = FinalizeReport(cache_dir, n_images=len(records))
    report.quality, report.missing = finish_cache(cache_dir, records, settings.quality, {})
    skipped = cache.read_skipped(cache_dir)
    ids = {record.image_id for record in records}
    report.skipped = {key: value.get("reason", "?") for key, value in skipped.items() if key in ids}
    files = {f"{split}/{p.stem}" for split in ("train", "test") for p in cache.list_image_files(cache_dir, split)}
    report.n_files = len(ids & files)
    report.shards = [r for r in cache.read_shard_records(cache_dir) if r.get("split") == settings.split]
    report.running = live_claims(cache_dir)
    report.absent = _absent_shards(settings.split, report.shards, report.running)
    return report


def _absent_shards(split: str, shards: list[dict], running: list[dict]) -> list[str]:
    """``I/N`` of the shards of ``split`` with neither a record nor a claim, for every N that was used."""
    seen = {entry["key"] for entry in [*shards, *running]}
    counts = {int(found[1]) for key in seen if (found := re.fullmatch(rf"{re.escape(split)}-\d+of(\d+)", key))}
    return [f"{i}/{n}" for n in sorted(counts) for i in range(n) if cache.shard_key(split, i, n) not in seen]
