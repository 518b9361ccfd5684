"""Cross-validation folds over images, with duplicates kept together.

Images that share an identical file, identical decoded pixels or an identical informative mask (one that is
neither empty nor the whole image: a whole-image mask says nothing about the image) form one group, and a group is
never split across folds. Folds are stratified by class over groups (scikit-learn's ``StratifiedGroupKFold``).
"""

from __future__ import annotations

import logging
from collections.abc import Hashable, Sequence

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from pipeline.errors import ConfigError

logger = logging.getLogger(__name__)


def group_by_shared_keys(*key_columns: Sequence[Hashable | None]) -> np.ndarray:
    """Union images that share any non-None key in any column.

    Args:
        key_columns: Each (n_images,) sequence of keys (e.g. checksums); None never links.

    Returns:
        (n_images,) int64 group ids, numbered 0.. in order of first appearance.
    """
    n = len(key_columns[0]) if key_columns else 0
    parent = list(range(n))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for column in key_columns:
        first: dict[Hashable, int] = {}
        for i, key in enumerate(column):
            if key is None:
                continue
            j = first.setdefault(key, i)
            if j != i:
                parent[root(i)] = root(j)
    roots = [root(i) for i in range(n)]
    numbering: dict[int, int] = {}
    return np.array([numbering.setdefault(r, len(numbering)) for r in roots], dtype=np.int64)


def duplicate_groups(image_attrs: Sequence[dict], extra_keys: Sequence[Sequence[Hashable | None]] = ()) -> np.ndarray:
    """Groups of images that must stay in one fold, from their cache attributes.

    Args:
        image_attrs: (n_images,) feature-file attributes (``image_sha256``, ``pixels_sha256``, ``mask_sha256``,
            ``mask_fraction``).
        extra_keys: More key columns that link images (e.g. near-duplicate group ids).

    Returns:
        (n_images,) int64 group ids.
    """
    files = [attrs.get("image_sha256") for attrs in image_attrs]
    pixels = [attrs.get("pixels_sha256") for attrs in image_attrs]
    masks = [
        attrs.get("mask_sha256") if 0.0 < float(attrs.get("mask_fraction", 0.5)) < 1.0 else None
        for attrs in image_attrs
    ]
    return group_by_shared_keys(files, pixels, masks, *extra_keys)


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
