"""Which images one process embeds (``--shard I/N`` or its torchrun rank), and the store of a torchrun job.

The partition is computed by every process alone and must come out the same in all of them: the images of the
requested splits (sorted by split and name) are weighed by their pixel count, read from the image headers without
decoding (sizes vary, and so does the work), then dealt longest first to the least loaded shard, ties broken by
image id and shard number (greedy LPT: within 4/3 of the best possible balance). No image is in two shards and the
union is every image. A process launched by ``torchrun`` (it sets ``TORCHELASTIC_RUN_ID``, ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``) embeds shard ``RANK/WORLD_SIZE`` on ``cuda:LOCAL_RANK`` (the CPU without CUDA) and
marks it done in the job's store, where rank 0 waits for every shard before it writes the quality report of the
whole cache (:class:`JobStore`).
"""

from __future__ import annotations

import heapq
import logging
import os
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import TYPE_CHECKING

from pipeline.data.decoders import header_size
from pipeline.data.records import ImageRecord
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# Rank 0 may finish its shard hours before the slowest rank; its wait must not time out. A job whose rank died never
# hangs there: torchrun stops every other rank of the job when one fails.
BARRIER_TIMEOUT = timedelta(days=7)
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


@dataclass(frozen=True)
class Launch:
    """How torchrun started this process: its rank among all processes and on this node, and the job's id."""

    rank: int
    world_size: int
    local_rank: int
    local_world_size: int
    run_id: str
    restart_count: int

    @property
    def label(self) -> str:
        """``rank/world size``, e.g. ``1/8``."""
        return f"{self.rank}/{self.world_size}"


def torchrun_launch(environ: Mapping[str, str] | None = None) -> Launch | None:
    """The :class:`Launch` when torchrun (torch.distributed.elastic) started this process, else None.

    Only torchrun's own variable ``TORCHELASTIC_RUN_ID`` counts: ``RANK`` alone may come from another launcher,
    which serves no store where rank 0 could wait for the others.
    """
    env = os.environ if environ is None else environ
    if not env.get("TORCHELASTIC_RUN_ID") or "RANK" not in env or "WORLD_SIZE" not in env:
        return None
    world_size = int(env["WORLD_SIZE"])
    return Launch(
        rank=int(env["RANK"]),
        world_size=world_size,
        local_rank=int(env.get("LOCAL_RANK", "0")),
        local_world_size=int(env.get("LOCAL_WORLD_SIZE", str(world_size))),
        run_id=env["TORCHELASTIC_RUN_ID"],
        restart_count=int(env.get("TORCHELASTIC_RESTART_COUNT", "0")),
    )


def resolve_shard(requested: Shard | None, launch: Launch | None) -> Shard:
    """The shard this process embeds: the requested one, torchrun's RANK/WORLD_SIZE, or the whole data folder.

    Raises:
        ConfigError: ``--shard`` disagrees with torchrun's rank and world size.
    """
    if launch is None:
        return (requested or Shard()).validate()
    own = Shard(launch.rank, launch.world_size).validate()
    if requested is not None and requested != own:
        raise ConfigError(
            f"--shard {requested.label} disagrees with torchrun's RANK {launch.rank} and WORLD_SIZE "
            f"{launch.world_size}: under torchrun each process embeds the shard of its rank. Leave --shard out."
        )
    return own


def log_prefix(shard: str | None = None, environ: Mapping[str, str] | None = None) -> str:
    """The start of every log line: ``[rank 1/8] `` under torchrun, ``[shard 1/4] `` with ``--shard``, else empty."""
    launch = torchrun_launch(environ)
    if launch is not None:
        return f"[rank {launch.label}] "
    return f"[shard {shard.strip()}] " if shard else ""


def local_device(device: torch.device, launch: Launch | None) -> torch.device:
    """``cuda`` becomes ``cuda:LOCAL_RANK`` under torchrun (modulo the GPUs seen, so ranks may share one)."""
    if launch is None or device.type != "cuda" or device.index is not None:
        return device
    import torch

    return torch.device("cuda", launch.local_rank % max(1, torch.cuda.device_count()))


def pixel_counts(records: list[ImageRecord]) -> list[int]:
    """Width x height of every record's image from its header (no decoding); 0 when the header cannot be read."""

    def pixels(path: Path) -> int:
        try:
            width, height = header_size(path)
        except Exception:  # corrupt files make Pillow raise almost anything; the loop reports them
            return 0
        return width * height

    # Sizes only, without Pillow's process-wide pixel limit (the workers check --max-pixels when they decode);
    # the warnings filter is process-wide too, so a format plugin's warning is left to the decoding, which logs it.
    with ThreadPoolExecutor(max_workers=HEADER_THREADS) as pool:
        return list(pool.map(pixels, [record.image_path for record in records]))


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


class JobStore:
    """The key-value store of a torchrun job, where ranks say that their shard is done; does nothing otherwise.

    Rank 0 writes the report of the whole cache once every shard is done, so it waits for the other ranks' marks.
    The marks live in the store torchrun's agent serves (``MASTER_ADDR:MASTER_PORT``) for the whole job, across
    restarts, and mean "this shard's files are complete", which stays true once said: a mark left by an earlier
    attempt is as good as a new one. (A gloo process group would be the textbook barrier, but torch 2.14 keeps the
    agent's store across restarts without a per-attempt prefix, so restarted ranks that join gloo at different moments
    read the dead ranks' addresses and fail with "Connection refused"; nor is TORCHELASTIC_RESTART_COUNT the same on
    every node to make such a prefix. The marks need no connection between ranks at all.)

    Args:
        launch: How torchrun started this process, or None (then every method does nothing).
        scope: What the marks are about (the cache folder), so that one job's marks never count for another cache.
        environ: The environment (default: ``os.environ``) with ``MASTER_ADDR``, ``MASTER_PORT`` and
            ``TORCHELASTIC_USE_AGENT_STORE``.
    """

    def __init__(self, launch: Launch | None, scope: str, environ: Mapping[str, str] | None = None) -> None:
        self.launch = launch
        self.scope = scope
        self._store = None
        if launch is None:
            return
        from torch.distributed import TCPStore

        env = os.environ if environ is None else environ
        # The agent serves the store itself (the default); otherwise rank 0 hosts it, as torch's env:// does.
        agent_serves = env.get("TORCHELASTIC_USE_AGENT_STORE") == "True"
        self._store = TCPStore(env["MASTER_ADDR"], int(env["MASTER_PORT"]), launch.world_size,
                               is_master=not agent_serves and launch.rank == 0, timeout=BARRIER_TIMEOUT,
                               wait_for_workers=False, multi_tenant=not agent_serves)

    def _key(self, shard: str) -> str:
        return f"pipeline.extract/{self.scope}/{shard}/done"

    def mark_done(self, shard: str) -> None:
        """Say that ``shard`` (a :func:`pipeline.cache.shards.shard_key`) is done."""
        if self._store is not None:
            self._store.set(self._key(shard), "1")

    def wait_for(self, shards: list[str]) -> None:
        """Wait until every one of ``shards`` is marked done (returns at once without torchrun)."""
        if self._store is not None:
            self._store.wait([self._key(shard) for shard in shards], BARRIER_TIMEOUT)
