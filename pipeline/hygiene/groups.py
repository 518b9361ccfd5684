"""Duplicate groups: union-find over images that share a key (a checksum, a mask) or are linked pairwise."""

from __future__ import annotations

from collections.abc import Hashable, Sequence

import numpy as np


class _UnionFind:
    def __init__(self, n: int) -> None:
        self.parent = list(range(n))

    def root(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, i: int, j: int) -> None:
        self.parent[self.root(i)] = self.root(j)

    def labels(self) -> np.ndarray:
        """Group ids numbered 0.. in order of first appearance."""
        numbering: dict[int, int] = {}
        return np.array(
            [numbering.setdefault(self.root(i), len(numbering)) for i in range(len(self.parent))], dtype=np.int64
        )


def group_by_shared_keys(*key_columns: Sequence[Hashable | None]) -> np.ndarray:
    """Union images that share any non-None key in any column.

    Args:
        key_columns: Each (n_images,) sequence of keys (e.g. checksums); None never links.

    Returns:
        (n_images,) int64 group ids, numbered 0.. in order of first appearance.
    """
    groups = _UnionFind(len(key_columns[0]) if key_columns else 0)
    for column in key_columns:
        first: dict[Hashable, int] = {}
        for i, key in enumerate(column):
            if key is not None:
                groups.union(i, first.setdefault(key, i))
    return groups.labels()


def link_pairs(groups: np.ndarray, pairs: np.ndarray) -> np.ndarray:
    """Merge existing groups along extra links.

    Args:
        groups: (n,) group ids.
        pairs: (k, 2) indices of linked images.

    Returns:
        (n,) int64 group ids, numbered 0.. in order of first appearance.
    """
    union = _UnionFind(len(groups))
    first: dict[int, int] = {}
    for i, group in enumerate(np.asarray(groups).tolist()):
        union.union(i, first.setdefault(group, i))
    for i, j in np.asarray(pairs, dtype=np.int64).reshape(-1, 2):
        union.union(int(i), int(j))
    return union.labels()
