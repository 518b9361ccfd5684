"""The in-memory table of one split's cached tiles, as the heads consume it."""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


def mean_embedding(features: np.ndarray) -> np.ndarray:
    """(D,) float32 mean of one image's (n_tiles, D) tile embeddings, summed in float64 as image_embeddings does."""
    return features.astype(np.float64).mean(0).astype(np.float32)


@dataclass
class FeatureSet:
    """All tiles of a set of images, concatenated.

    Attributes:
        embeddings: (n_tiles, D) float32 tile embeddings.
        image_index: (n_tiles,) int64, row of each tile's image in ``image_ids``.
        coverage: (n_tiles,) float32 mask coverage of each tile.
        coords: (n_tiles, 2) int32 (x, y) of each tile.
        image_ids: (n_images,) ids such as ``"train/img_0000"``.
        sample_index: (n_images,) file names as in ``train_labels.csv`` (``"img_0000.png"``).
        image_attrs: (n_images,) the attributes of each image's feature file.
    """

    embeddings: np.ndarray
    image_index: np.ndarray
    coverage: np.ndarray
    coords: np.ndarray
    image_ids: list[str]
    sample_index: list[str]
    image_attrs: list[dict] = field(default_factory=list)

    @property
    def n_images(self) -> int:
        """Number of images."""
        return len(self.image_ids)

    @property
    def dim(self) -> int:
        """Embedding size D."""
        return int(self.embeddings.shape[1])

    def attr(self, key: str) -> list:
        """One attribute for every image, e.g. ``attr("mask_sha256")``."""
        return [attrs.get(key) for attrs in self.image_attrs]

    def tiles_per_image(self) -> np.ndarray:
        """(n_images,) int64 tile counts."""
        return np.bincount(self.image_index, minlength=self.n_images)

    def image_embeddings(self) -> np.ndarray:
        """(n_images, D) float32 mean of each image's tile embeddings."""
        sums = np.zeros((self.n_images, self.dim), dtype=np.float64)
        np.add.at(sums, self.image_index, self.embeddings)
        return (sums / np.maximum(self.tiles_per_image(), 1)[:, None]).astype(np.float32)

    def subset(self, images: np.ndarray) -> FeatureSet:
        """Keep some images (and their tiles), in the given order.

        Args:
            images: (k,) int indices of the images to keep.
        """
        images = np.asarray(images, dtype=np.int64)
        new_index = np.full(self.n_images, -1, dtype=np.int64)
        new_index[images] = np.arange(len(images))
        rows = np.nonzero(new_index[self.image_index] >= 0)[0]
        order = rows[np.argsort(new_index[self.image_index[rows]], kind="stable")]
        return FeatureSet(
            embeddings=self.embeddings[order],
            image_index=new_index[self.image_index[order]],
            coverage=self.coverage[order],
            coords=self.coords[order],
            image_ids=[self.image_ids[i] for i in images],
            sample_index=[self.sample_index[i] for i in images],
            image_attrs=[self.image_attrs[i] for i in images] if self.image_attrs else [],
        )
