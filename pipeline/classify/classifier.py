"""A fitted head with everything needed to use it again: classes, level, vote, pool and the cache it was trained on.

Saved as ``model/classifier.json`` next to the head's own ``head.json`` and ``head.npz``: JSON and numpy arrays
only, so loading a model never executes code from the file. ``classify.py --predict`` loads it
(:mod:`pipeline.classify.predict`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pipeline import cache
from pipeline.cache.featureset import FeatureSet
from pipeline.classify.evaluation import BAG, Prediction, Scheme, predict_subset
from pipeline.errors import CacheError, ModelLoadError
from pipeline.heads.persistence import load_head, save_head

CLASSIFIER_FILE = "classifier.json"


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
