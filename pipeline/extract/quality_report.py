"""The hygiene report written next to a cache at the end of every extraction: ``quality.csv`` and a contact sheet."""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pipeline import cache
from pipeline.cache import store
from pipeline.errors import CacheError
from pipeline.hygiene.assessment import QUALITY_FILE, QUALITY_SHEET, QualityReport, assess
from pipeline.hygiene.contact_sheet import write_contact_sheet
from pipeline.hygiene.quality_file import write_quality_csv
from pipeline.hygiene.settings import QualitySettings

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
    sample_index = [a["sample_index"] for a in attrs]
    report = assess(ids, sample_index, attrs, np.stack(embeddings), settings)
    if report.unscored_warning():
        logger.warning("%s", report.unscored_warning())
    write_quality_csv(cache_dir / QUALITY_FILE, report)
    if write_contact_sheet(cache_dir / QUALITY_SHEET, report, image_paths):
        logger.info("flagged images: %s (%s)", cache_dir / QUALITY_SHEET, report.summary())
    return report
