"""Cross-validation over images: fit a head on some images, predict the others.

At tile level every tile inherits its image's label, the head is trained on tiles and tile probabilities are voted
into one prediction per image; at image level each image is one row of pooled tile statistics (the mean by default,
``--pool``); at bag level (heads such as abmil that take whole images) each image is a bag of its tiles with one
label, and the head also says how much attention each tile got. Every fitting step (scaler, class weights, early
stopping) happens inside :func:`fit_head` on the training images only.

Each image weighs the same at every level: at tile level each tile gets the sample weight 1 / (its image's tile
count), scaled to mean 1 (:func:`tile_weights`), so an image of 1,000 tiles counts as much as one of 10, and the
heads' balanced class weights, computed with these weights, count images rather than tiles.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
from sklearn.metrics import f1_score

from pipeline.cache.featureset import FeatureSet
from pipeline.cache.pooling import check_stats
from pipeline.classify.settings import LEVELS
from pipeline.classify.votes import vote
from pipeline.errors import ConfigError
from pipeline.heads.registry import head_entry

logger = logging.getLogger(__name__)

BAG = "bag"
HeadFactory = Callable[[], object]


@dataclass(frozen=True)
class Scheme:
    """How a head sees the data: ``level`` (tile, image or bag), the tile ``vote`` rule and the image ``pool``."""

    level: str = "tile"
    vote: str = "mean"
    pool: tuple[str, ...] = ("mean",)

    def validate(self) -> Scheme:
        """Raise :class:`ConfigError` on an unknown level, vote or pool, or a pool other than mean off image level.

        Returns self.
        """
        if self.level not in (*LEVELS, BAG):
            raise ConfigError(f"--level must be one of {', '.join(LEVELS)}. Got '{self.level}' instead.")
        if self.level == BAG:
            return self
        vote(np.ones((1, 1)), np.zeros(1, dtype=np.int64), 1, self.vote, np.ones(1))  # checks the rule name
        if check_stats(self.pool) != ("mean",) and self.level != "image":
            raise ConfigError(f"--pool {','.join(self.pool)} needs --level image (tiles are not pooled at tile "
                              "level). Add --level image or leave --pool out.")
        return self

    def for_head(self, name: str) -> Scheme:
        """The scheme head ``name`` runs with: bag heads (abmil) always see bags, whatever --level says."""
        return Scheme(BAG, "attention", ()) if head_entry(name).bags else self

    def describe(self) -> str:
        """E.g. ``tile level, mean vote``, ``image level, mean+max pool`` or ``bags of tiles (attention)``."""
        if self.level == BAG:
            return "bags of tiles (attention)"
        if self.level == "image":
            return f"image level, {'+'.join(self.pool)} pool"
        return f"tile level, {self.vote} vote"


def fit_head(
    make: HeadFactory, features: FeatureSet, images: np.ndarray, labels: np.ndarray, groups: np.ndarray, scheme: Scheme
) -> object:
    """Fit a new head on some images.

    Args:
        make: Returns a fresh unfitted head.
        features: All images of the split.
        images: (k,) indices of the training images in ``features``.
        labels: (n_images,) int class index of every image of ``features``.
        groups: (n_images,) duplicate-group id of every image (the inner early-stopping splits keep them whole).
        scheme: Level, vote and pool.
    """
    subset = features.subset(images)
    image_labels, image_groups = labels[images], groups[images]
    if scheme.level == BAG:
        return make().fit(subset.embeddings, image_labels, bag_index=subset.image_index, groups=image_groups)
    if scheme.level == "image":
        X, y, row_groups = subset.image_embeddings(scheme.pool), image_labels, image_groups
    else:
        X, y, row_groups = subset.embeddings, image_labels[subset.image_index], image_groups[subset.image_index]
        weights = tile_weights(subset.image_index, subset.n_images)
        return make().fit(X, y, groups=row_groups, sample_weight=weights)
    return make().fit(X, y, groups=row_groups)


def tile_weights(image_index: np.ndarray, n_images: int) -> np.ndarray:
    """(n_tiles,) float64 sample weight of each tile: 1 / its image's tile count, scaled to mean 1.

    Every image then carries the same total weight in a tile-level fit whatever its tile count, and a head's balanced
    class weights (computed with the sample weights, :func:`pipeline.heads.base.balanced_class_weights`) are over
    images. Mean 1 keeps the total weight at the number of tiles, so the heads' regularisation means what it did.

    Args:
        image_index: (n_tiles,) int, the image of each tile, in ``[0, n_images)``.
        n_images: Number of images.
    """
    counts = np.bincount(image_index, minlength=n_images)
    weights = 1.0 / counts[image_index]
    return weights * (len(weights) / weights.sum())


@dataclass
class Prediction:
    """A head's output on some images, columns in global class order.

    Attributes:
        tile_proba: (n_tiles_of_subset, C) tile probabilities in the subset's tile order: the tile head's own at
            tile level, each tile's own class at bag level, the image's probabilities at image level.
        image_proba: (k, C) image probabilities.
        attention: (n_tiles_of_subset,) attention weight of each tile (summing to 1 per image) from a bag head,
            else None.
    """

    tile_proba: np.ndarray
    image_proba: np.ndarray
    attention: np.ndarray | None = None


def predict_images(
    head: object, features: FeatureSet, images: np.ndarray, n_classes: int, scheme: Scheme
) -> np.ndarray:
    """Image probabilities (k, n_classes) for some images, columns in global class order."""
    return predict_subset(head, features, images, n_classes, scheme).image_proba


def predict_subset(
    head: object, features: FeatureSet, images: np.ndarray, n_classes: int, scheme: Scheme
) -> Prediction:
    """Tile and image probabilities (and a bag head's attention) for some images."""
    subset = features.subset(images)
    if scheme.level == BAG:
        out = head.predict_bags(subset.embeddings, subset.image_index, subset.n_images)
        return Prediction(_align(out.tile_proba, head.classes_, n_classes),
                          _align(out.proba, head.classes_, n_classes), out.attention)
    if scheme.level == "image":
        image_proba = _align(head.predict_proba(subset.image_embeddings(scheme.pool)), head.classes_, n_classes)
        return Prediction(image_proba[subset.image_index], image_proba)
    tile_proba = _align(head.predict_proba(subset.embeddings), head.classes_, n_classes)
    return Prediction(tile_proba, vote(tile_proba, subset.image_index, subset.n_images, scheme.vote,
                                       subset.coverage))


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
        tile_attention: (n_tiles,) out-of-fold attention of each tile (bag heads), else None.
    """

    proba: np.ndarray
    tile_proba: np.ndarray
    folds: np.ndarray
    fold_weighted_f1: list[float]
    tile_attention: np.ndarray | None = None


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
        scheme: Level, vote and pool.
        n_classes: Number of classes C.
        trainable: (n_images,) bool, images allowed in training (all by default); all images are validated.
    """
    trainable = np.ones(len(labels), dtype=bool) if trainable is None else trainable
    proba = np.full((len(labels), n_classes), np.nan)
    tile_proba = np.full((len(features.embeddings), n_classes), np.nan)
    attention = np.full(len(features.embeddings), np.nan) if scheme.level == BAG else None
    scores = []
    for fold in np.unique(folds[folds >= 0]):
        validation = np.nonzero(folds == fold)[0]
        training = np.nonzero((folds != fold) & trainable)[0]
        head = fit_head(make, features, training, labels, groups, scheme)
        out = predict_subset(head, features, validation, n_classes, scheme)
        proba[validation] = out.image_proba
        # validation is sorted, so the subset's tiles come in the feature set's order
        rows = np.isin(features.image_index, validation)
        tile_proba[rows] = out.tile_proba
        if attention is not None:
            attention[rows] = out.attention
        scores.append(float(f1_score(labels[validation], proba[validation].argmax(1), average="weighted")))
        logger.info("fold %d: %d training images, weighted F1 %.3f", fold, len(training), scores[-1])
    return CrossValidation(proba, tile_proba, folds, scores, attention)
