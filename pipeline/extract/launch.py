"""How torchrun started this process, which shard and device that gives it, and the job's store of finished shards.

A process launched by ``torchrun`` (it sets ``TORCHELASTIC_RUN_ID``, ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``) embeds
shard ``RANK/WORLD_SIZE`` (:mod:`pipeline.extract.sharding`) on ``cuda:LOCAL_RANK`` (the CPU without CUDA) and marks
it done in the job's store, where rank 0 waits for every shard before it writes the quality report of the whole cache
(:class:`JobStore`).
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import timedelta
from typing import TYPE_CHECKING

from pipeline.errors import ConfigError
from pipeline.extract.sharding import Shard

if TYPE_CHECKING:
    import torch

# Rank 0 may finish its shard hours before the slowest rank; its wait must not time out. A job whose rank died never
# hangs there: torchrun stops every other rank of the job when one fails.
BARRIER_TIMEOUT = timedelta(days=7)


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
