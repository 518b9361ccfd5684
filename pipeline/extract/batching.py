"""Batches that span images (tiles of consecutive images, taken out in fixed-size batches) and a read-ahead of them."""

from __future__ import annotations

import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Slice:
    """Where rows of a batch come from: ``count`` tiles of image ``owner`` starting at its tile ``start``."""

    owner: int
    start: int
    count: int


class TileQueue:
    """FIFO of tiles from several images; :meth:`take` returns up to ``n`` tiles and where each came from."""

    def __init__(self) -> None:
        self._pieces: deque[tuple[int, int, torch.Tensor]] = deque()
        self.size = 0

    def put(self, owner: int, tiles: torch.Tensor, start: int = 0) -> None:
        """Queue tiles (n, ...) of one image, rows ``start`` to ``start + n`` of it (a slide comes in chunks)."""
        if len(tiles):
            self._pieces.append((owner, start, tiles))
            self.size += len(tiles)

    def take(self, n: int, out: torch.Tensor | None = None) -> tuple[torch.Tensor, list[Slice]]:
        """Remove up to ``n`` tiles from the front.

        Args:
            n: Tiles wanted.
            out: Where to put them (at least ``n`` rows, e.g. a pinned buffer), instead of a new tensor.

        Returns:
            The tiles concatenated, (k, ...) with k = min(n, size) (a view of ``out`` when given), and the slices
            they came from, in order.
        """
        parts, slices, wanted = [], [], n
        while wanted and self._pieces:
            owner, start, tiles = self._pieces[0]
            count = min(wanted, len(tiles))
            parts.append(tiles[:count])
            slices.append(Slice(owner, start, count))
            if count == len(tiles):
                self._pieces.popleft()
            else:
                self._pieces[0] = (owner, start + count, tiles[count:])
            wanted -= count
        self.size -= n - wanted
        if out is not None and parts:
            batch = out[: n - wanted]
            torch.cat(parts, out=batch)
        else:
            batch = parts[0] if len(parts) == 1 else torch.cat(parts) if parts else torch.empty(0)
        return batch, slices


class Prefetcher:
    """Iterate over ``items`` from a background thread that keeps up to ``max_tiles`` tiles ready ahead.

    A DataLoader's own read-ahead counts images, not tiles: with one-tile images it holds a few tiles, far less than
    a batch, so the decoding workers stop while the model runs a batch and the model then waits for them. A thread
    that keeps pulling keeps the workers busy during the forward pass; the bound in tiles keeps memory flat whatever
    the images' sizes (at most ``max_tiles`` plus one image's tiles wait here).

    Args:
        items: The iterable (a DataLoader); ``iter(items)`` is called in the caller's thread, so worker processes are
            started from there, not from the background thread.
        max_tiles: Tiles held ready at most (another item is pulled only while fewer are held).
        size_of: Tiles in one item; items without ``tiles`` (failures) count as 0.
    """

    def __init__(self, items: Iterable, max_tiles: int, size_of: Callable[[object], int] | None = None) -> None:
        self.items = items
        self.max_tiles = max(1, max_tiles)
        self.size_of = size_of or (lambda item: len(getattr(item, "tiles", ())))
        self.held = 0  # tiles ready now (read without the lock: a hint, see ThreadShare)

    def __iter__(self) -> Iterator:
        source = iter(self.items)
        ready: deque = deque()
        state = {"held": 0, "done": False, "stop": False, "error": None}
        condition = threading.Condition()

        def pull() -> None:
            try:
                for item in source:
                    size = self.size_of(item)
                    with condition:
                        while state["held"] >= self.max_tiles and not state["stop"]:
                            condition.wait()
                        if state["stop"]:
                            return
                        ready.append((item, size))
                        state["held"] += size
                        self.held = state["held"]
                        condition.notify_all()
            except BaseException as exc:  # noqa: BLE001 - handed to the consumer, which re-raises it
                state["error"] = exc
            finally:
                with condition:
                    state["done"] = True
                    condition.notify_all()

        thread = threading.Thread(target=pull, name="tile-prefetch", daemon=True)
        thread.start()
        try:
            while True:
                with condition:
                    while not ready and not state["done"]:
                        condition.wait()
                    if not ready:
                        break
                    item, size = ready.popleft()
                    state["held"] -= size
                    self.held = state["held"]
                    condition.notify_all()
                yield item
            if state["error"] is not None:
                raise state["error"]
        finally:
            with condition:
                state["stop"] = True
                condition.notify_all()
            thread.join()


class ThreadShare:
    """The model's OpenMP threads on a CPU: every core while tiles wait, one per idle core while the workers are behind.

    The decoding workers and the model share the CPU. When the next batch is not ready, the workers are decoding:
    a model on every core then fights them for the cores, and OpenMP threads that lose theirs stall the others at
    each barrier. On the 2-core machine with one worker and a model that costs nothing, the main process spent twice
    the CPU per image with two threads as with one (22.6-24.2 ms against 10.1-11.0), its normalising spinning at
    barriers. So the forward pass of a batch taken while fewer than ``batch_size`` tiles wait behind it runs on the
    cores the workers leave (at least one), and on all of them while the workers are ahead.

    Args:
        workers: Decoding worker processes (0: no share is given up).
        batch_size: Tiles per batch.
    """

    def __init__(self, workers: int, batch_size: int) -> None:
        self.all = torch.get_num_threads()
        self.fewer = max(1, self.all - workers)
        self.batch_size = batch_size
        self.now = self.all
        self.reduced = 0  # batches run on fewer threads
        self.batches = 0

    def before_batch(self, waiting: int) -> None:
        """Set the threads for the next forward pass, given the tiles ready behind it."""
        wanted = self.fewer if waiting < self.batch_size else self.all
        self.batches += 1
        self.reduced += wanted < self.all
        if wanted != self.now:
            torch.set_num_threads(wanted)
            self.now = wanted

    def restore(self) -> None:
        """Give the process its threads back."""
        if self.now != self.all:
            torch.set_num_threads(self.all)
            self.now = self.all
