"""A fitted head with everything needed to use it again: classes, level, vote, pool and the cache it was trained on.

Saved as ``model/classifier.json`` next to the head's own ``head.json`` and ``head.npz``: JSON and numpy arrays
only, so loading a model never executes code from the file. ``classify.py --predict`` loads it
(:mod:`pipeline.classify.predict`). A run on several caches (``--features A B``) saves a :class:`FusedClassifier`:
``model/fusion.json`` (mode, every cache's identity, in ``--features`` order) and one classifier folder per member
under ``model/members/<k>/``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import cache
from pipeline.cache.featureset import FeatureSet, concat_image_features
from pipeline.classify.evaluation import BAG, Prediction, Scheme, predict_subset
from pipeline.classify.settings import FUSION_MODES
from pipeline.errors import CacheError, ModelLoadError
from pipeline.heads.persistence import load_head, save_head

CLASSIFIER_FILE = "classifier.json"
FUSION_FILE = "fusion.json"


@dataclass
class Classifier:
    """A fitted head bound to its class names, scheme and cache identity.

    Attributes:
        fill_class: The class given to test images without features (the training majority), or None.
    """

    head: object
    head_name: str
    classes: list[str]
    scheme: Scheme
    cache_identity: dict
    fill_class: str | None = None

    def check_features(self, features: FeatureSet) -> None:
        """Refuse embeddings of another model, other tiling settings or another size than the head was trained on.

        Raises:
            CacheError: The features were made with another model or other tiling settings, or their size differs.
        """
        if features.image_attrs:
            keys = cache.mismatched_keys(features.image_attrs[0], self.cache_identity)
            if keys:
                raise CacheError(
                    f"This model was trained on embeddings made with other settings ({', '.join(keys)}); "
                    "predict with features from the same cache settings."
                )
        expected = getattr(self.head, "n_features_in_", None)
        dim = features.dim * (len(self.scheme.pool) if self.scheme.level == "image" else 1)
        if expected is not None and len(features.embeddings) and dim != expected:
            raise CacheError(
                f"This model expects {expected} features per {'image' if self.scheme.level == 'image' else 'tile'}; "
                f"these embeddings give {dim}. Predict with features from the cache settings the model was trained on."
            )

    def predict_all(self, features: FeatureSet) -> Prediction:
        """Tile and image probabilities (and a bag head's attention) of every image, columns in ``classes`` order.

        Raises:
            CacheError: The features were made with another model, other tiling settings or another size.
        """
        self.check_features(features)
        return predict_subset(self.head, features, np.arange(features.n_images), len(self.classes), self.scheme)

    def predict_proba(self, features: FeatureSet) -> np.ndarray:
        """(n_images, C) image probabilities, columns in ``classes`` order.

        Raises:
            CacheError: The features were made with another model, other tiling settings or another size.
        """
        return self.predict_all(features).image_proba

    def predict(self, features: FeatureSet) -> list[str]:
        """Class name of every image."""
        return [self.classes[i] for i in self.predict_proba(features).argmax(axis=1)]

    def save(self, folder: Path) -> None:
        """Write the head and ``classifier.json`` into ``folder``."""
        folder = Path(folder)
        save_head(self.head, folder)
        meta = {
            "head": self.head_name,
            "classes": self.classes,
            "level": self.scheme.level,
            "vote": self.scheme.vote,
            "pool": list(self.scheme.pool),
            "fill_class": self.fill_class,
            "cache_identity": cache.identity(self.cache_identity),
        }
        (folder / CLASSIFIER_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> Classifier:
        """Read a classifier written by :meth:`save`.

        Raises:
            ModelLoadError: Missing or unreadable files.
        """
        path = Path(folder) / CLASSIFIER_FILE
        try:
            meta = json.loads(path.read_text())
            default_pool = [] if meta["level"] == BAG else ["mean"]  # written before --pool existed: the mean
            scheme = Scheme(meta["level"], meta["vote"], tuple(meta.get("pool", default_pool))).validate()
            return cls(load_head(folder), meta["head"], list(meta["classes"]), scheme, meta["cache_identity"],
                       meta.get("fill_class"))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"{path}: cannot load the saved classifier ({exc}). Re-run classify.py.") from exc


def average_proba(probas: Sequence[np.ndarray]) -> np.ndarray:
    """(n, C) mean of several (n, C) probability arrays: late fusion (NaN rows stay NaN)."""
    return np.mean(np.stack(probas), axis=0)


@dataclass
class FusedClassifier:
    """Heads fitted on several caches of the same images, used together (``classify.py --features A B ...``).

    Attributes:
        mode: ``late``: one classifier per cache, their image probabilities averaged; ``concat``: one classifier on
            each image's pooled statistics of every cache side by side (:func:`pipeline.cache.concat_image_features`).
        members: late: one per cache, in ``--features`` order, each bound to its cache; concat: the one classifier
            on the concatenated rows.
        identities: The cache identity of each ``--features`` cache, in order.
        pool: concat: the statistics each cache's tiles are pooled with before concatenation.
    """

    mode: str
    members: list[Classifier]
    identities: list[dict]
    pool: tuple[str, ...] = ("mean",)

    @property
    def head_name(self) -> str:
        """The head (the same in every member)."""
        return self.members[0].head_name

    @property
    def classes(self) -> list[str]:
        """Class names, column order."""
        return self.members[0].classes

    @property
    def fill_class(self) -> str | None:
        """The class given to test images without features."""
        return self.members[0].fill_class

    @property
    def scheme(self) -> Scheme:
        """How each cache is read: the members' scheme (late) or image level with ``pool`` (concat)."""
        inner = self.members[0].scheme
        return inner if self.mode == "late" else Scheme("image", inner.vote, self.pool)

    def check_features(self, sets: Sequence[FeatureSet]) -> None:
        """Refuse another number of caches, or a cache made with other settings than the one in its place.

        Raises:
            CacheError: The caches do not match the model's, in number, order, settings or size.
        """
        n = len(self.identities)
        if len(sets) != n:
            raise CacheError(f"This model fuses {n} caches; got {len(sets)}. Pass the caches it was trained on, in "
                             "the order of its config.json (--features A B ...).")
        for k, (features, expected) in enumerate(zip(sets, self.identities, strict=True), start=1):
            keys = cache.mismatched_keys(features.image_attrs[0], expected) if features.image_attrs else []
            if keys:
                raise CacheError(f"Cache {k} of {n} was made with other settings than the model's cache {k} "
                                 f"({', '.join(keys)}); pass the caches in the order the model was trained on (its "
                                 "config.json lists them).")
        if self.mode == "late":
            for member, features in zip(self.members, sets, strict=True):
                member.check_features(features)

    def predict_proba(self, sets: Sequence[FeatureSet]) -> np.ndarray:
        """(n_images, C) image probabilities of the same images in every cache, columns in ``classes`` order.

        Raises:
            CacheError: The caches do not match the model's.
        """
        self.check_features(sets)
        if self.mode == "late":
            return average_proba([member.predict_proba(features) for member, features in zip(self.members, sets,
                                                                                                strict=True)])
        return self.members[0].predict_proba(concat_image_features(sets, self.pool))

    def predict(self, sets: Sequence[FeatureSet]) -> list[str]:
        """Class name of every image."""
        return [self.classes[i] for i in self.predict_proba(sets).argmax(axis=1)]

    def save(self, folder: Path) -> None:
        """Write ``fusion.json`` and each member under ``members/<k>/`` into ``folder``."""
        folder = Path(folder)
        for k, member in enumerate(self.members):
            (folder / "members" / str(k)).mkdir(parents=True, exist_ok=True)
            member.save(folder / "members" / str(k))
        meta = {
            "fusion": self.mode,
            "head": self.head_name,
            "classes": self.classes,
            "pool": list(self.pool),
            "caches": [cache.identity(identity) for identity in self.identities],
            "members": [f"members/{k}" for k in range(len(self.members))],
        }
        (folder / FUSION_FILE).write_text(json.dumps(meta, indent=2) + "\n")

    @classmethod
    def load(cls, folder: Path) -> FusedClassifier:
        """Read a fused classifier written by :meth:`save`.

        Raises:
            ModelLoadError: Missing or unreadable files.
        """
        path = Path(folder) / FUSION_FILE
        try:
            meta = json.loads(path.read_text())
            if meta["fusion"] not in FUSION_MODES:
                raise ValueError(f"unknown fusion {meta['fusion']!r}")
            members = [Classifier.load(Path(folder) / member) for member in meta["members"]]
            return cls(meta["fusion"], members, list(meta["caches"]), tuple(meta["pool"]))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise ModelLoadError(f"{path}: cannot load the saved classifier ({exc}). Re-run classify.py.") from exc


def load_classifier(folder: Path) -> Classifier | FusedClassifier:
    """The classifier saved in a model folder: fused when it holds ``fusion.json``, else a single-cache one.

    Raises:
        ModelLoadError: Missing or unreadable files.
    """
    if (Path(folder) / FUSION_FILE).is_file():
        return FusedClassifier.load(folder)
    return Classifier.load(folder)
