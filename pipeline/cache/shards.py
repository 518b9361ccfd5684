"""What each extraction process leaves in the cache when it finishes its shard, and what readers make of it.

Many processes may fill one cache at once (``extract.py --shard I/N``, torchrun), so none of them may rewrite a file
the others share. Each writes its own record instead, ``<cache>/shards/<split>-<I>of<N>.json``: the images of its
shard, the ones it skipped (with reasons), its counts and timings, host and pid. Readers merge the records in the
order they were finished over ``skipped.json`` (which caches of earlier versions hold, and which a finishing run or
``extract.py --finalize`` rewrites as the merged view), so no shard's skipped images or timings are lost.
"""

from __future__ import annotations

import json
import logging
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pipeline.cache.folder import SKIPPED_FILE, list_image_files, write_json
from pipeline.data.records import ImageRecord, find_records, resolve_splits, slide_listing
from pipeline.errors import CacheError, PipelineError

logger = logging.getLogger(__name__)

SHARDS_DIR = "shards"
MAX_LISTED = 10  # image ids named in a message before "..."


def shard_key(split: str, index: int, count: int) -> str:
    """The name shared by a shard's record and claim, e.g. ``all-1of4``: a shard is only defined with its split."""
    return f"{split}-{index}of{count}"


def write_shard_record(cache_dir: Path, key: str, record: dict) -> Path:
    """Write (or replace) one shard's record atomically; return its path.

    Args:
        cache_dir: The cache folder.
        key: :func:`shard_key` of the shard.
        record: JSON-able; readers use ``images`` (the shard's image ids), ``skipped`` (``{image_id:
            {"sample_index", "reason"}}``), ``split`` and ``finished`` (seconds since the epoch).
    """
    path = Path(cache_dir) / SHARDS_DIR / f"{key}.json"
    write_json(path, record)
    return path


def read_shard_records(cache_dir: Path) -> list[dict]:
    """Every readable shard record of a cache, oldest first; each gets ``key`` (its file's stem)."""
    records = []
    for path in sorted((Path(cache_dir) / SHARDS_DIR).glob("*.json")):
        try:
            record = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            # Only a report: the shard's next run rewrites it, so a broken one must not stop anything.
            logger.warning("%s is unreadable (%s); ignoring it. Run that shard again to rewrite it.", path, exc)
            continue
        if isinstance(record, dict):
            records.append({**record, "key": path.stem})
    return sorted(records, key=lambda r: (float(r.get("finished", 0.0)), r["key"]))


def read_skipped(cache_dir: Path) -> dict[str, dict]:
    """``{image_id: {"sample_index": ..., "reason": ...}}`` for the images extraction skipped (empty when none).

    ``skipped.json`` merged with every shard record, the newest record of an image winning: an image skipped once
    and embedded by a later run is no longer listed.
    """
    path = Path(cache_dir) / SKIPPED_FILE
    skipped: dict = {}
    if path.is_file():
        try:
            skipped = json.loads(path.read_text())
        except (OSError, ValueError) as exc:
            # Only a report: the next extraction rewrites it, so a broken one must not stop a run.
            logger.warning("%s is unreadable (%s); ignoring it. Run extract.py again to rewrite it.", path, exc)
        skipped = skipped if isinstance(skipped, dict) else {}
    for record in read_shard_records(cache_dir):
        for image_id in record.get("images", []):
            skipped.pop(image_id, None)
        skipped.update(record.get("skipped", {}))
    return skipped


def write_skipped(cache_dir: Path) -> dict[str, dict]:
    """Rewrite ``skipped.json`` as the merged view of :func:`read_skipped`; return it."""
    skipped = read_skipped(cache_dir)
    write_json(Path(cache_dir) / SKIPPED_FILE, skipped)
    return skipped


def unembedded(cache_dir: Path, records: list[ImageRecord]) -> list[str]:
    """Ids of the images that have neither a feature file nor a skip entry: no extraction has done them yet."""
    done = {f"{split}/{p.stem}" for split in {r.split for r in records} for p in list_image_files(cache_dir, split)}
    skipped = read_skipped(cache_dir)
    return [r.image_id for r in records if r.image_id not in done and r.image_id not in skipped]


def check_complete(cache_dir: Path, cache_settings: dict) -> None:
    """Refuse a cache that lacks images of its data folder, naming them (a shard that has not finished, say).

    The splits checked are those the cache's extractions were asked for (from the shard records; for caches of
    earlier versions, the splits that have files). Nothing is checked when the data folder is gone.

    Raises:
        CacheError: Some images of those splits have neither a file nor a skip entry.
    """
    data_dir = cache_settings.get("data_dir")
    if not data_dir:
        return
    requested = {split for r in read_shard_records(cache_dir) for split in resolve_splits(r.get("split", "all"))}
    splits = requested or {split for split in ("train", "test") if list_image_files(cache_dir, split)}
    try:
        # under --tissue mask (its settings say "tissue" only when not auto) only slides with a mask file are listed
        slides = slide_listing(cache_settings.get("tissue", "auto"))
        records = [r for r in find_records(data_dir, "all", slides=slides) if r.split in splits]
    except PipelineError as exc:
        logger.debug("not checking %s for missing images: %s", cache_dir, exc)
        return
    missing = unembedded(cache_dir, records)
    if missing:
        named = ", ".join(missing[:MAX_LISTED]) + (" ..." if len(missing) > MAX_LISTED else "")
        raise CacheError(
            f"'{cache_dir}' lacks {len(missing)} image(s) of {data_dir} that no extraction has embedded yet: {named}. "
            "If extract.py ran in shards (--shard, torchrun), some have not finished: run them again (finished "
            "images are kept) or run extract.py with the same flags without --shard, then classify again; "
            "extract.py --finalize lists what is missing."
        )


def skip_causes(reasons: Sequence[str]) -> str:
    """Why images were skipped, counted by cause, with the first reason of the commonest cause in full (its fix).

    Reasons read ``<file>: <problem> (<detail>). <fix>``; the result reads e.g. ``20 no mask found, 3 file is empty;
    e.g. data/train_data/img_0000.png: no mask found (expected ...). ...``.
    """
    causes = Counter(_cause(reason) for reason in reasons)
    if not causes:
        return "no image skipped"
    commonest = causes.most_common(1)[0][0]
    example = next(reason for reason in reasons if _cause(reason) == commonest)
    return f"{', '.join(f'{n} {cause}' for cause, n in causes.most_common())}; e.g. {example}"


def _cause(reason: str) -> str:
    text = reason.split(": ", 1)[1] if ": " in reason else reason  # drop the file name
    return re.split(r" \(|\. |: ", text, maxsplit=1)[0].rstrip(".")
