"""Tile probabilities -> one probability vector per image."""

from __future__ import annotations

import numpy as np

from pipeline.errors import ConfigError

VOTES = ("mean", "majority", "coverage")
_TIE_BREAK = 1e-6  # majority ties go to the class with the higher mean probability


def vote(
    proba: np.ndarray, image_index: np.ndarray, n_images: int, rule: str = "mean", coverage: np.ndarray | None = None
) -> np.ndarray:
    """Aggregate tile probabilities per image.

    Args:
        proba: (n_tiles, C) tile class probabilities.
        image_index: (n_tiles,) int image row of each tile, in [0, n_images).
        n_images: Number of images.
        rule: ``mean`` (average probability), ``majority`` (share of tiles whose top class is each class; ties go
            to the higher mean probability) or ``coverage`` (mean weighted by each tile's mask coverage).
        coverage: (n_tiles,) mask coverage; needed by ``coverage``.

    Returns:
        (n_images, C) float64 rows summing to 1; the image's prediction is the argmax.

    Raises:
        ConfigError: Unknown rule. ValueError: an image has no tile.
    """
    if rule not in VOTES:
        raise ConfigError(f"--vote must be one of {', '.join(VOTES)}. Got '{rule}' instead.")
    proba = np.asarray(proba, dtype=np.float64)
    counts = np.bincount(image_index, minlength=n_images).astype(np.float64)
    if (counts == 0).any():
        raise ValueError(f"images without tiles: {np.nonzero(counts == 0)[0][:10].tolist()}")
    mean = _weighted_mean(proba, image_index, n_images, np.ones(len(proba)))
    if rule == "mean":
        return mean
    if rule == "coverage":
        if coverage is None:
            raise ValueError("the coverage vote needs each tile's coverage")
        weights = np.asarray(coverage, dtype=np.float64)
        # a fallback tile on an empty mask has coverage 0: give every tile a floor so no image is left without weight
        return _weighted_mean(proba, image_index, n_images, np.maximum(weights, 1e-6))
    top = np.zeros_like(proba)
    top[np.arange(len(proba)), proba.argmax(axis=1)] = 1.0
    share = _weighted_mean(top, image_index, n_images, np.ones(len(proba)))
    scores = share + _TIE_BREAK * mean
    return scores / scores.sum(axis=1, keepdims=True)


def _weighted_mean(values: np.ndarray, image_index: np.ndarray, n_images: int, weights: np.ndarray) -> np.ndarray:
    sums = np.zeros((n_images, values.shape[1]))
    np.add.at(sums, image_index, values * weights[:, None])
    totals = np.bincount(image_index, weights=weights, minlength=n_images)
    return sums / totals[:, None]
