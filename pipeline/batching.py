"""Batches that span images: tiles of consecutive images are queued and taken out in fixed-size batches."""

from __future__ import annotations

from collections import deque
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

    def put(self, owner: int, tiles: torch.Tensor) -> None:
        """Queue all tiles (n, ...) of one image."""
        if len(tiles):
            self._pieces.append((owner, 0, tiles))
            self.size += len(tiles)

    def take(self, n: int) -> tuple[torch.Tensor, list[Slice]]:
        """Remove up to ``n`` tiles from the front.

        Returns:
            The tiles concatenated, (k, ...) with k = min(n, size), and the slices they came from, in order.
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
        batch = parts[0] if len(parts) == 1 else torch.cat(parts) if parts else torch.empty(0)
        return batch, slices
