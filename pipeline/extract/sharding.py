"""Which images one process embeds (``--shard I/N`` or its torchrun rank), and the process group of a torchrun job.

The partition is computed by every process alone and must come out the same in all of them: the images of the
requested splits (sorted by split and name) are weighed by their pixel count, read from the image headers without
decoding (sizes vary, and so does the work), then dealt longest first to the least loaded shard, ties broken by
image id and shard number (greedy LPT: within 4/3 of the best possible balance). No image is in two shards and the
union is every image. A process launched by ``torchrun`` (it sets ``TORCHELASTIC_RUN_ID``, ``RANK``,
``WORLD_SIZE``, ``LOCAL_RANK``) embeds shard ``RANK/WORLD_SIZE`` on ``cuda:LOCAL_RANK`` (the CPU without CUDA) and
joins a gloo process group, used only for the barrier before rank 0 writes the quality report of the whole cache.
"""

from __future__ import annotations

import heapq
import logging
import os
import uuid
import warnings
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING

from pipeline.data.records import ImageRecord
from pipeline.errors import ConfigError

if TYPE_CHECKING:
    import torch

logger = logging.getLogger(__name__)

# A rank may reach the final barrier hours before the slowest one; the wait must not time out. A job whose rank died
# never hangs there: torchrun stops every other rank of the job when one fails.
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
    and a gloo group would then wait for peers that never come.
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
    from PIL import Image

    def pixels(path: Path) -> int:
        try:
            with Image.open(path) as image:
                width, height = image.size
        except Exception:  # corrupt files make Pillow raise almost anything; the loop reports them
            return 0
        return width * height

    # Sizes only: Pillow's decompression-bomb limit and warnings are for decoding, which the workers guard.
    previous = Image.MAX_IMAGE_PIXELS
    Image.MAX_IMAGE_PIXELS = None
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            with ThreadPoolExecutor(max_workers=HEADER_THREADS) as pool:
                return list(pool.map(pixels, [record.image_path for record in records]))
    finally:
        Image.MAX_IMAGE_PIXELS = previous


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


class JobGroup:
    """The gloo process group of a torchrun job, joined on entry and left on exit; does nothing otherwise.

    Attributes:
        token: ``<run id>/<round>`` under torchrun, shared by every rank of this attempt and new at each restart
            (rank 0 draws it), so that claims of an earlier attempt are known to be dead; None otherwise.
    """

    def __init__(self, launch: Launch | None) -> None:
        self.launch = launch
        self.token: str | None = None
        self._joined = False

    def __enter__(self) -> JobGroup:
        if self.launch is None:
            return self
        import torch.distributed as dist

        # gloo needs no GPU and carries only the barrier and this token; env:// reads torchrun's variables
        dist.init_process_group("gloo", timeout=BARRIER_TIMEOUT)
        self._joined = True
        token = [uuid.uuid4().hex if self.launch.rank == 0 else None]
        dist.broadcast_object_list(token, src=0)
        self.token = f"{self.launch.run_id}/{token[0]}"
        logger.debug("joined the gloo group of torchrun job %s as rank %s", self.token, self.launch.label)
        return self

    def barrier(self) -> None:
        """Wait until every rank got here (no-op without torchrun)."""
        if self._joined:
            import torch.distributed as dist

            dist.barrier()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._joined:
            import torch.distributed as dist

            dist.destroy_process_group()
            self._joined = False
