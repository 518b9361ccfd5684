"""Cross-validation folds over images, with duplicate groups kept whole.

Duplicate groups (exact copies, near-duplicates, images sharing an informative mask) come from
:mod:`pipeline.hygiene.groups`; a group is never split across folds. Folds are stratified by class over groups
(scikit-learn's ``StratifiedGroupKFold``).
"""

from __future__ import annotations

import logging

import numpy as np
from sklearn.model_selection import StratifiedGroupKFold

from pipeline.errors import ConfigError

logger = logging.getLogger(__name__)


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
        advice = (
            f"Use --folds {n_groups} or fewer."
            if n_groups >= 2
            else "No --folds can work: check the duplicate_group column of quality.csv (identical files or pixels, or "
            "one informative mask shared by every image) and fix the data."
        )
        raise ConfigError(
            f"Only {n_groups} group(s) of distinct images for --folds {n_folds} (duplicates stay together). {advice}"
        )
    folds = np.full(len(labels), -1, dtype=np.int64)
    splitter = StratifiedGroupKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    for fold, (_, validation) in enumerate(splitter.split(np.zeros(len(labels)), labels, groups)):
        folds[validation] = fold
    if n_groups < len(labels):
        logger.info("%d images form %d duplicate groups; each group stays in one fold.", len(labels), n_groups)
    return folds
