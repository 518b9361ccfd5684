"""Re-score feature files made before the current hygiene checks: decode the image again, no model.

A file whose embeddings are up to date but whose ``q_version`` is not :data:`~pipeline.hygiene.checks.QUALITY_VERSION`
(a cache made by an older version) gets its image decoded and checked again, and is rewritten atomically with the
same arrays and the new hygiene attributes (old ``q_*`` and ``phashes`` dropped, so versions never mix in one file).
Decoding is the cost (a few ms for a 600x400 PNG, more for large images), so many files are spread over processes.
"""

from __future__ import annotations

import logging
import multiprocessing
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.cache import store
from pipeline.cache.featureset import mean_embedding
from pipeline.data.images import read_image, read_mask
from pipeline.data.records import ImageRecord
from pipeline.errors import PipelineError
from pipeline.hygiene.checks import image_quality
from pipeline.progress import Progress

logger = logging.getLogger(__name__)

MIN_FILES_FOR_PROCESSES = 32  # fewer files are re-scored in this process: starting processes would cost more


@dataclass
class Rescored:
    """What a re-scoring did.

    Attributes:
        fresh: Image id -> (the file's attributes, (D,) mean embedding) of every rewritten file.
        failed: Image id -> reason, for files left as they were (their scores stay missing; the next run retries).
    """

    fresh: dict[str, tuple[dict, np.ndarray]] = field(default_factory=dict)
    failed: dict[str, str] = field(default_factory=dict)


def _is_hygiene(key: str) -> bool:
    return key.startswith("q_") or key == "phashes"


def score_image(record: ImageRecord, max_pixels: int) -> tuple[str, dict | str]:
    """(the image file's SHA-256, its hygiene attributes), or ("", reason) when it cannot be decoded."""
    try:
        image = read_image(record.image_path, max_pixels)
        height, width = image.pixels.shape[:2]
        if record.mask_path is None:
            return "", "no mask file"
        mask = read_mask(record.mask_path, (width, height), max_pixels)
        return image.file_sha256, image_quality(image.pixels, mask.inside)
    except (PipelineError, MemoryError, ValueError, OSError) as exc:
        return "", str(exc)


def _scores(records: list[ImageRecord], max_pixels: int, workers: int) -> Iterator[tuple[str, dict | str]]:
    if workers <= 1 or len(records) < MIN_FILES_FOR_PROCESSES:
        yield from (score_image(record, max_pixels) for record in records)
        return
    # spawn, as the writer processes: no inherited CUDA context or lock, and no threads forked mid-operation
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(max_workers=workers, mp_context=context) as pool:
        yield from pool.map(score_image, records, [max_pixels] * len(records), chunksize=4)


def rescore_files(
    records: list[ImageRecord], paths: list[Path], max_pixels: int, workers: int = 0, progress: bool = True
) -> Rescored:
    """Recompute the hygiene attributes of these images and rewrite their files with the same arrays.

    Args:
        records: The images, whose files' embeddings are up to date.
        paths: (len(records),) their feature files.
        max_pixels: Header pixel-count limit, as for extraction.
        workers: Decoding processes (used from :data:`MIN_FILES_FOR_PROCESSES` files on); 0 or 1: this process.
        progress: Show progress.

    Returns:
        The rewritten files and the failures. A file whose image changed since the checksums were taken is left
        alone (the next run re-embeds it).

    Raises:
        CacheError: A file cannot be written (disk full, permissions); files already rewritten are kept.
    """
    done = Rescored()
    bar = Progress(len(records), "re-score", enabled=progress)
    try:
        for record, path, (image_sha, attrs) in zip(records, paths, _scores(records, max_pixels, workers),
                                                   strict=True):
            bar.update(1)
            if isinstance(attrs, str):
                done.failed[record.image_id] = attrs
                continue
            try:
                if store.read_attrs(path).get("image_sha256") != image_sha:
                    done.failed[record.image_id] = "the image file changed since it was embedded"
                    continue
                item = store.update_attributes(path, attrs, keep=lambda key: not _is_hygiene(key))
            except store.FileProblem as exc:
                done.failed[record.image_id] = exc.problem
                continue
            done.fresh[record.image_id] = (item.attrs, mean_embedding(item.features))
    finally:
        bar.close()
    for image_id, reason in done.failed.items():
        logger.warning("could not re-score %s (%s); its hygiene scores stay missing", image_id, reason)
    return done
