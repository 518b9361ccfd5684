"""Cross-validation over images: fit a head on some images, predict the others.

At tile level every tile inherits its image's label, the head is trained on tiles and tile probabilities are voted
into one prediction per image; at image level each image is the mean of its tile embeddings. Every fitting step
(scaler, class weights, early stopping) happens inside :func:`fit_head` on the training images only.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import f1_score

from pipeline.cache.featureset import FeatureSet
from pipeline.classify.votes import vote
from pipeline.errors import ConfigError

logger = logging.getLogger(__name__)

LEVELS = ("tile", "image")
HeadFactory = Callable[[], object]


@dataclass(frozen=True)
class Scheme:
    """How a head sees the data: ``level`` (tile or image) and, at tile level, the ``vote`` rule."""

    level: str = "tile"
    vote: str = "mean"

    def validate(self) -> Scheme:
        """Raise :class:`ConfigError` on an unknown level; return self."""
        if self.level not in LEVELS:
            raise ConfigError(f"--level must be one of {', '.join(LEVELS)}. Got '{self.level}' instead.")
        vote(np.ones((1, 1)), np.zeros(1, dtype=np.int64), 1, self.vote, np.ones(1))  # checks the rule name
        return self


def fit_head(
    make: HeadFactory, features: FeatureSet, images: np.ndarray, labels: np.ndarray, groups: np.ndarray, scheme: Scheme
) -> object:
    """Fit a new head on some images.

    Args:
        make: Returns a fresh unfitted head.
        features: All images of the split.
        images: (k,) indices of the training images in ``features``.
        labels: (n_images,) int class index of every image of ``features``.
        groups: (n_images,) duplicate-group id of every image (the MLP's inner early-stopping split keeps them).
        scheme: Level and vote.
    """
    subset = features.subset(images)
    image_labels, image_groups = labels[images], groups[images]
    if scheme.level == "image":
        X, y, row_groups = subset.image_embeddings(), image_labels, image_groups
    else:
        X, y, row_groups = subset.embeddings, image_labels[subset.image_index], image_groups[subset.image_index]
    return make().fit(X, y, groups=row_groups)


def predict_images(
    head: object, features: FeatureSet, images: np.ndarray, n_classes: int, scheme: Scheme
) -> np.ndarray:
    """Image probabilities (k, n_classes) for some images, columns in global class order."""
    return predict_tiles_and_images(head, features, images, n_classes, scheme)[1]


def predict_tiles_and_images(
    head: object, features: FeatureSet, images: np.ndarray, n_classes: int, scheme: Scheme
) -> tuple[np.ndarray, np.ndarray]:
    """Tile and image probabilities for some images, columns in global class order.

    Returns:
        (n_tiles_of_subset, C) tile probabilities in the subset's tile order (at image level, every tile carries
        its image's probabilities) and (k, C) image probabilities.
    """
    subset = features.subset(images)
    if scheme.level == "image":
        image_proba = _align(head.predict_proba(subset.image_embeddings()), head.classes_, n_classes)
        return image_proba[subset.image_index], image_proba
    tile_proba = _align(head.predict_proba(subset.embeddings), head.classes_, n_classes)
    return tile_proba, vote(tile_proba, subset.image_index, subset.n_images, scheme.vote, subset.coverage)


def _align(proba: np.ndarray, head_classes: np.ndarray, n_classes: int) -> np.ndarray:
    """Spread a head's columns (its ``classes_``, possibly missing some classes) onto all class indices."""
    full = np.zeros((len(proba), n_classes))
    full[:, np.asarray(head_classes, dtype=np.int64)] = proba
    return full


@dataclass
class CrossValidation:
    """Out-of-fold results.

    Attributes:
        proba: (n_images, C) out-of-fold image probabilities; rows of images never validated are NaN.
        tile_proba: (n_tiles, C) out-of-fold tile probabilities, in the feature set's tile order.
        folds: (n_images,) fold of each image (-1: never validated).
        fold_weighted_f1: Weighted F1 of each fold.
    """

    proba: np.ndarray
    tile_proba: np.ndarray
    folds: np.ndarray
    fold_weighted_f1: list[float]


def cross_validate(
    make: HeadFactory,
    features: FeatureSet,
    labels: np.ndarray,
    groups: np.ndarray,
    folds: np.ndarray,
    scheme: Scheme,
    n_classes: int,
    trainable: np.ndarray | None = None,
) -> CrossValidation:
    """Fit one head per fold on the other folds' images and predict the fold's images.

    Args:
        make: Returns a fresh unfitted head.
        features: All training images.
        labels: (n_images,) int class indices.
        groups: (n_images,) duplicate-group ids.
        folds: (n_images,) fold index of each image, from :func:`pipeline.classify.folds.make_folds`.
        scheme: Level and vote.
        n_classes: Number of classes C.
        trainable: (n_images,) bool, images allowed in training (all by default); all images are validated.
    """
    trainable = np.ones(len(labels), dtype=bool) if trainable is None else trainable
    proba = np.full((len(labels), n_classes), np.nan)
    tile_proba = np.full((len(features.embeddings), n_classes), np.nan)
    scores = []
    for fold in np.unique(folds[folds >= 0]):
        validation = np.nonzero(folds == fold)[0]
        training = np.nonzero((folds != fold) & trainable)[0]
        head = fit_head(make, features, training, labels, groups, scheme)
        tiles, proba[validation] = predict_tiles_and_images(head, features, validation, n_classes, scheme)
        # validation is sorted, so the subset's tiles come in the feature set's order
        tile_proba[np.isin(features.image_index, validation)] = tiles
        scores.append(float(f1_score(labels[validation], proba[validation].argmax(1), average="weighted")))
        logger.info("fold %d: %d training images, weighted F1 %.3f", fold, len(training), scores[-1])
    return CrossValidation(proba, tile_proba, folds, scores)
