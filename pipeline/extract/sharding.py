"""Which images one process embeds: ``--shard I/N`` (or its torchrun rank, :mod:`pipeline.extract.launch`).

The partition is computed by every process alone and must come out the same in all of them: the images of the
requested splits (sorted by split and name) are weighed by their pixel count, read from the image headers without
decoding (sizes vary, and so does the work), then dealt longest first to the least loaded shard, ties broken by
image id and shard number (greedy LPT: within 4/3 of the best possible balance). No image is in two shards and the
union is every image.
"""

from __future__ import annotations

import heapq
import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from pipeline.data.decoders import header_size
from pipeline.data.records import ImageRecord
from pipeline.data.slides import Slide
from pipeline.errors import ConfigError

logger = logging.getLogger(__name__)

HEADER_THREADS = 8  # header reads are latency-bound on network file systems


@dataclass(frozen=True)
class Shard:
    """Shard ``index`` of ``count`` (0-based, like torchrun's RANK); ``Shard(0, 1)`` is the whole data folder."""

    index: int = 0
    count: int = 1

    @property
    def label(self) -> str:
        """``index/count``, e.g. ``1/4``."""
        return f"{self.index}/{self.count}"

    def validate(self) -> Shard:
        """Raise :class:`ConfigError` unless ``0 <= index < count``; return self."""
        if not 0 <= self.index < self.count:
            raise ConfigError(
                "--shard I/N must have 0 <= I < N (shards are numbered from 0, like torchrun's RANK: the last of 4 "
                f"is 3/4). Got '{self.label}' instead."
            )
        return self


def parse_shard(text: str) -> Shard:
    """Read ``--shard I/N``.

    Raises:
        ConfigError: Not two integers separated by ``/``, or ``I`` outside ``0 .. N-1``.
    """
    parts = str(text).strip().split("/")
    try:
        index, count = (int(part) for part in parts)
    except ValueError:
        raise ConfigError(
            "--shard must be I/N: this process's shard, numbered from 0, and the number of shards, e.g. --shard 0/4. "
            f"Got '{text}' instead."
        ) from None
    return Shard(index, count).validate()


def pixel_counts(records: list[ImageRecord]) -> list[int]:
    """Width x height of every record's image (a slide's level 0) from its header, no decoding; 0 when unreadable.

    A slide's area stands for its tile count, as an image's does (its tissue share is not known before its thumbnail
    is read).
    """

    def pixels(record: ImageRecord) -> int:
        try:
            if record.kind == "slide":  # level 0's size from the slide library (no pixel read)
                with Slide(record.image_path) as slide:
                    width, height = slide.dimensions
            else:
                width, height = header_size(record.image_path)
        except Exception:  # corrupt files make Pillow raise almost anything; the loop reports them
            return 0
        return width * height

    # Sizes only, without Pillow's process-wide pixel limit (the workers check --max-pixels when they decode);
    # the warnings filter is process-wide too, so a format plugin's warning is left to the decoding, which logs it.
    with ThreadPoolExecutor(max_workers=HEADER_THREADS) as pool:
        return list(pool.map(pixels, records))


def partition(weights: list[int], ids: list[str], count: int) -> list[list[int]]:
    """Deal items to ``count`` shards, heaviest first onto the least loaded shard.

    Args:
        weights: (n,) work of each item (pixels); 0 counts as 1, so unreadable images are spread too.
        ids: (n,) unique item ids, to break ties identically in every process.
        count: Number of shards.

    Returns:
        ``count`` lists of item positions, each in ascending order; together they hold every position once.
    """
    loads = [(0, shard) for shard in range(count)]  # a heap of (load, shard): the least loaded, lowest number first
    shards: list[list[int]] = [[] for _ in range(count)]
    for item in sorted(range(len(weights)), key=lambda i: (-max(weights[i], 1), ids[i])):
        load, shard = heapq.heappop(loads)
        shards[shard].append(item)
        heapq.heappush(loads, (load + max(weights[item], 1), shard))
    return [sorted(items) for items in shards]


def shard_records(records: list[ImageRecord], shard: Shard) -> list[ImageRecord]:
    """The records of one shard, in their original order (all of them for a single shard)."""
    if shard.count == 1:
        return list(records)
    positions = partition(pixel_counts(records), [r.image_id for r in records], shard.count)[shard.index]
    return [records[i] for i in positions]
