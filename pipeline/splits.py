"""Cross-validation folds over images, with duplicates kept together.

Duplicate groups (exact copies, near-duplicates, images sharing an informative mask; see :mod:`pipeline.hygiene`)
are built by union-find from shared keys and linked pairs, and a group is never split across folds. Folds are
stratified by class over groups (scikit-learn's ``StratifiedGroupKFold``).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from pipeline.errors import ConfigError

logger = logging.getLogger(__name__)


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


def make_folds(labels: np.ndarray, groups: np.ndarray, n_folds: int, seed: int) -> np.ndarray:
    """Assign every image to one of ``n_folds`` validation folds, stratified by class, groups kept whole.

    Args:
        labels: (n_images,) class of each image.
        groups: (n_images,) duplicate-group id of each image.
        n_folds: Number of folds K (>= 2).
        seed: Seed of the shuffle.

    Returns:
        (n_images,) int64 fold index in [0, K).

    Raises:
        ConfigError: K < 2, fewer groups than folds, or a class with fewer images than folds.
    """
    labels, groups = np.asarray(labels), np.asarray(groups)
    if n_folds < 2:
        raise ConfigError(f"--folds must be at least 2. Got {n_folds} instead.")
    classes, counts = np.unique(labels, return_counts=True)
    small = [f"'{c}' ({n})" for c, n in zip(classes, counts, strict=True) if n < n_folds]
    if small:
        raise ConfigError(
            f"Every class needs at least --folds {n_folds} images; these have fewer: {', '.join(small)}. "
            f"Use --folds {max(2, int(counts.min()))} or add images of those classes."
        )
    n_groups = len(np.unique(groups))
    if n_groups < n_folds:
        raise ConfigError(
            f"Only {n_groups} groups of distinct images for --folds {n_folds} (duplicates stay together). "
            f"Use --folds {max(2, n_groups)} or fewer."
        )
    folds = np.full(len(labels), -1, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for fold, (_, validation) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        folds[validation] = fold
    if n_groups < len(labels):
        logger.info("%d images form %d duplicate groups; each group stays in one fold.", len(labels), n_groups)
    return folds
