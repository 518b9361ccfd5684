"""Shared-memory slots that carry tiles from the decoding workers to the main process, reused image after image."""

from __future__ import annotations

import logging
import os

import numpy as np
import torch
from torch.utils.data import get_worker_info

logger = logging.getLogger(__name__)

SLOT_BYTES_PER_WORKER = 128 * 2**20  # shared memory one worker keeps for reuse (about 44 images of 19 tiles)
Ticket = tuple[int, int, int]  # (worker id, the worker's item number, its slot or -1)


class TileSlots:
    """Shared-memory buffers that carry tiles from the decoding workers to the main process, reused image after image.

    A worker's tensor goes to the main process through shared memory: a new one per image costs the worker a new
    segment whose every page the kernel zero-fills on first touch (about 8 ms of CPU for 19 tiles of 224 px on the
    2-core machine here, as much as decoding the image's mask and hashing it) and the main process a new mapping.
    Instead each worker cuts an image's tiles into one of its own buffers (slots), which stay mapped in both processes.

    A slot is reused only once the main process has embedded the last item that used it: the main process raises
    ``released[w]`` past each item of worker ``w`` whose features are out (:meth:`release`); a worker's items are
    embedded in order, so every item below it is done too. A worker never waits: without a free slot, beyond
    :data:`SLOT_BYTES_PER_WORKER` or outside a worker it gets a fresh tensor, as before.

    A slot's tensor travels once, with its first item: sending a shared tensor passes a file descriptor over a socket
    each time (about 0.35 ms of CPU in each process per item here, a tenth of a one-tile image's data side). Later
    items carry only their row count (:meth:`carried`); the main process keeps every slot it has seen and gives
    such an item its rows (:meth:`received`), in order, as a worker's items arrive in the order it made them.

    Args:
        workers: DataLoader workers (0: no worker, no slot).
    """

    def __init__(self, workers: int) -> None:
        self.released = torch.zeros(max(1, workers), dtype=torch.int64)  # (workers,) item numbers done
        if workers:
            self.released.share_memory_()  # before the workers start, so that they see the main process's writes
        self._slots: list[tuple[torch.Tensor, int]] = []  # in a worker: (buffer, the item that last used it)
        self._sent: set[int] = set()  # in a worker: the slots whose tensor the main process has (see carried)
        self._mapped: dict[tuple[int, int], torch.Tensor] = {}  # in the main process: (worker, slot) -> the slot
        self._items = 0
        self._view: tuple[int, np.ndarray] | None = None  # (pid, numpy view of released): see _released

    def _released(self) -> np.ndarray:
        """``released`` as numpy: this process's view of the shared memory, made once per process.

        Indexing the tensor from Python cost the main process 0.5 ms per image (a tenth of its time per one-tile
        image). Per process, since a spawned worker unpickles the tensor, not the view.
        """
        if self._view is None or self._view[0] != os.getpid():
            self._view = (os.getpid(), self.released.numpy())
        return self._view[1]

    def buffer(self, n: int, shape: tuple[int, ...]) -> tuple[torch.Tensor, Ticket | None]:
        """(n, *shape) uint8 to fill with one image's tiles, and the ticket to :meth:`release` once it is embedded."""
        info = get_worker_info()
        if info is None:
            return torch.empty((n, *shape), dtype=torch.uint8), None
        item, self._items = self._items, self._items + 1
        done = int(self._released()[info.id])
        for index, (slot, last) in enumerate(self._slots):
            if last < done and len(slot) >= n and tuple(slot.shape[1:]) == tuple(shape):
                self._slots[index] = (slot, item)
                return slot[:n], (info.id, item, index)
        held = sum(slot.numel() for slot, _ in self._slots)
        if n and held + n * int(np.prod(shape)) <= SLOT_BYTES_PER_WORKER:
            try:
                slot = torch.empty((n, *shape), dtype=torch.uint8).share_memory_()
            except RuntimeError:  # shared memory full (a small /dev/shm): the fresh tensor below fails or not as before
                logger.debug("no shared memory for a tile slot", exc_info=True)
            else:
                self._slots.append((slot, item))
                return slot, (info.id, item, len(self._slots) - 1)
        return torch.empty((n, *shape), dtype=torch.uint8), (info.id, item, -1)

    def carried(self, tiles: torch.Tensor, ticket: Ticket | None) -> torch.Tensor:
        """In a worker: what an item sends for ``tiles`` filled in the buffer of ``ticket``.

        The slot itself the first time (it is then whole: a new slot has exactly its first item's rows), afterwards
        an (n, 0) placeholder that :meth:`received` replaces by the slot's first n rows.
        """
        if ticket is None or ticket[2] < 0:
            return tiles
        if ticket[2] in self._sent:
            return torch.empty((len(tiles), 0), dtype=torch.uint8)
        self._sent.add(ticket[2])
        return tiles

    def received(self, item: object) -> object:
        """In the main process, for every item as it arrives: give a placeholder (:meth:`carried`) its tiles."""
        ticket = getattr(item, "ticket", None)  # an ImageTiles (a failure has none)
        if ticket is not None and ticket[2] >= 0:
            key = (ticket[0], ticket[2])
            if item.tiles.dim() == 2:  # (n, 0): the rows of a slot sent before
                item.tiles = self._mapped[key][: len(item.tiles)]
            else:  # the slot's first item; keeping it also keeps this process's mapping of its shared memory
                self._mapped[key] = item.tiles
        return item

    def release(self, ticket: Ticket | None) -> None:
        """In the main process: the item of ``ticket`` is embedded, its slot may be filled again."""
        if ticket is not None:
            worker, item, _ = ticket
            released = self._released()
            if released[worker] < item + 1:
                released[worker] = item + 1
