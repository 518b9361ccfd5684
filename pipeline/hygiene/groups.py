"""Duplicate groups: union-find over shared keys (a checksum, a mask) and pairwise links; near-duplicate search."""

from __future__ import annotations

from collections.abc import Callable, Hashable, Sequence

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


NEAR_BLOCK_BYTES = 4 * 2**20  # rows of hash distances computed at once: their (rows, n, 8) uint64 XOR stays in cache


def near_duplicates(
    hashes: np.ndarray, hashed: np.ndarray, exact_groups: np.ndarray, max_distance: int,
    distance_of: Callable[[np.ndarray, np.ndarray], np.ndarray],
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Pairs of images whose hashes are within ``max_distance`` bits under some flip or rotation, one row at a time.

    The distance of images i and j is the smaller of (i's hash against j's 8 dihedral hashes) and (j's against
    i's), as a copy may be a flip of the original or the other way round. A dense (n, n) matrix needed 8 bytes per
    pair: 5 GB for 25,000 images; these rows need O(n).

    Args:
        hashes: (n, 8) uint64 dihedral hashes, identity first.
        hashed: (n,) bool, images with hashes (the others are 64 bits from everything).
        exact_groups: (n,) group of identical files or pixels: such pairs are exact, not near, duplicates.
        max_distance: Bits.
        distance_of: Bit differences of broadcast uint64 arrays (:func:`pipeline.hygiene.checks.hamming`).

    Returns:
        (k, 2) int64 near pairs (i < j), (n,) int64 the distance to the nearest other image (64 without one) and
        (n,) int64 its index (the first of equals; 0 when nothing is nearer than 64 bits).
    """
    n = len(hashes)
    nearest_distance, nearest_index = np.full(n, 64, dtype=np.int64), np.zeros(n, dtype=np.int64)
    rows = np.nonzero(hashed)[0]
    identity, every, exact = hashes[rows, 0], hashes[rows], exact_groups[rows]
    block = max(1, NEAR_BLOCK_BYTES // max(64 * len(rows), 1))
    pairs = []
    for start in range(0, len(rows), block):
        mine = rows[start : start + block]
        mine_in_theirs = distance_of(hashes[mine, 0][:, None, None], every[None]).min(axis=2)  # (b, m)
        theirs_in_mine = distance_of(hashes[mine][:, None, :], identity[None, :, None]).min(axis=2)
        distance = np.minimum(mine_in_theirs, theirs_in_mine).astype(np.int64)
        distance[np.arange(len(mine)), np.arange(start, start + len(mine))] = 64  # not its own neighbour
        best = distance.argmin(axis=1)
        found = distance[np.arange(len(mine)), best] < 64
        nearest_distance[mine[found]] = distance[np.arange(len(mine)), best][found]
        nearest_index[mine[found]] = rows[best[found]]
        close = (distance <= max_distance) & (exact[start : start + len(mine), None] != exact[None, :])
        first, second = np.nonzero(close)
        first, second = mine[first], rows[second]
        pairs.append(np.stack([first, second], axis=1)[first < second])
    return (np.concatenate(pairs) if pairs else np.zeros((0, 2), dtype=np.int64)), nearest_distance, nearest_index


def shared_key_pairs(keys: Sequence[Hashable | None], exact_groups: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Images sharing a key (a mask file) with an image of other pixels, without an (n, n) matrix.

    Args:
        keys: (n,) keys; None never links.
        exact_groups: (n,) group of identical files or pixels (sharing with a copy of oneself does not count).

    Returns:
        (n,) bool: the image shares its key with an image of another exact group; (k, 2) pairs that link every
        such key's images into one group.
    """
    members: dict[Hashable, list[int]] = {}
    for i, key in enumerate(keys):
        if key is not None:
            members.setdefault(key, []).append(i)
    shared = np.zeros(len(keys), dtype=bool)
    pairs = []
    for images in members.values():
        if len({int(exact_groups[i]) for i in images}) > 1:
            shared[images] = True
            pairs.extend(zip(images[:-1], images[1:], strict=True))
    return shared, np.array(pairs, dtype=np.int64).reshape(-1, 2)
