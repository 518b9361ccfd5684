"""The in-memory table of one split's cached tiles, as the heads consume it, and its loading from a cache folder."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from pipeline.cache import store
from pipeline.cache.folder import SETTINGS_FILE, list_image_files, read_settings
from pipeline.cache.lookup import resolve_cache
from pipeline.cache.pooling import pool_tiles
from pipeline.cache.schema import mismatched_keys
from pipeline.cache.shards import check_complete, read_skipped, skip_causes
from pipeline.errors import CacheError


def mean_embedding(features: np.ndarray) -> np.ndarray:
    """(D,) float32 mean of one image's (n_tiles, D) tile embeddings, summed in float64 as image_embeddings does."""
    return features.mean(0, dtype=np.float64).astype(np.float32)  # summed in float64 without a float64 copy


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

    def image_embeddings(self, stats: Sequence[str] = ("mean",)) -> np.ndarray:
        """(n_images, D * len(stats)) float32 per-image statistics of the tile embeddings (default: their mean).

        Args:
            stats: Any of "mean", "max", "std", in the order wanted (:func:`pipeline.cache.pooling.pool_tiles`).
        """
        return pool_tiles(self.embeddings, self.image_index, self.n_images, stats)

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


def concat_image_features(sets: Sequence[FeatureSet], stats: Sequence[str] = ("mean",)) -> FeatureSet:
    """One row per image: the pooled tile statistics of every set, side by side (``--fusion concat``).

    The result is a feature set with one "tile" per image, so an image-level head with the mean pool sees exactly
    these rows (the mean of one row is the row).

    Args:
        sets: Feature sets of the same images in the same order (other encoders or tile sizes); the caller checks.
        stats: Statistics pooled from each set's tiles (:func:`pipeline.cache.pooling.pool_tiles`).

    Returns:
        A feature set whose embeddings are (n_images, sum_k D_k * len(stats)) float32, in the order of ``sets``;
        image ids and sample names of the first set; no per-image attributes (the rows belong to no single cache).
    """
    first = sets[0]
    n_images = first.n_images
    rows = np.concatenate([features.image_embeddings(stats) for features in sets], axis=1)
    return FeatureSet(
        embeddings=rows.astype(np.float32, copy=False),
        image_index=np.arange(n_images, dtype=np.int64),
        coverage=np.ones(n_images, dtype=np.float32),
        coords=np.zeros((n_images, 2), dtype=np.int32),
        image_ids=list(first.image_ids),
        sample_index=list(first.sample_index),
    )


def load_split(cache_dir: Path, split: str) -> FeatureSet:
    """Load every cached image of one split into a :class:`FeatureSet`.

    Raises:
        CacheError: The split has no file, a file is unreadable or has non-finite values, or files were made with
            other settings than the cache's ``settings.json`` (the message lists them).
    """
    settings = read_settings(cache_dir)
    paths = list_image_files(cache_dir, split)
    if not paths:
        skipped = [value.get("reason", "?") for key, value in read_skipped(cache_dir).items()
                   if key.startswith(f"{split}/")]
        if skipped:  # extraction ran on this split and could use none of its images: say why
            raise CacheError(
                f"'{cache_dir}' holds no {split} image: extraction skipped all {len(skipped)} of them "
                f"({skip_causes(skipped)}). Fix those files, then run extract.py again."
            )
        raise CacheError(
            f"'{cache_dir}' holds no {split} image ({Path(cache_dir) / split}/*.h5). Run extract.py --split {split}."
        )
    items, mixed, broken, inconsistent = [], [], [], []
    for path in paths:
        item = store.read_image_features(path)
        keys = mismatched_keys(item.attrs, settings)
        problem = store.value_problem(item)
        if keys:
            mixed.append(f"{path.name} ({', '.join(keys)})")
        elif not np.isfinite(item.features).all():
            broken.append(path.name)
        elif problem:
            inconsistent.append(f"{path.name} ({problem})")
        items.append(item)
    if mixed:
        raise CacheError(
            f"'{cache_dir}' mixes settings: {len(mixed)} {split} file(s) differ from its {SETTINGS_FILE}: "
            f"{', '.join(mixed[:10])}{' ...' if len(mixed) > 10 else ''}. Run extract.py with the cache's settings "
            "to re-embed them, or delete them."
        )
    if broken:
        raise CacheError(
            f"'{cache_dir}': {len(broken)} {split} file(s) hold NaN or infinite embeddings: {', '.join(broken[:10])}. "
            "Delete them and run extract.py again."
        )
    if inconsistent:
        raise CacheError(
            f"'{cache_dir}': {len(inconsistent)} {split} file(s) disagree with themselves: "
            f"{', '.join(inconsistent[:10])}. Delete them and run extract.py again."
        )
    dims = {item.features.shape[1] for item in items}
    if len(dims) > 1:
        raise CacheError(f"'{cache_dir}' mixes embedding sizes {sorted(dims)}. Delete it and run extract.py again.")
    counts = [len(item.features) for item in items]
    return FeatureSet(
        embeddings=np.concatenate([item.features for item in items]).astype(np.float32, copy=False),
        image_index=np.repeat(np.arange(len(items), dtype=np.int64), counts),
        coverage=np.concatenate([item.coverage for item in items]),
        coords=np.concatenate([item.coords for item in items]),
        image_ids=[item.attrs["image_id"] for item in items],
        sample_index=[item.attrs["sample_index"] for item in items],
        image_attrs=[item.attrs for item in items],
    )


@dataclass
class CacheData:
    """One ``--features`` cache: its folder, ``settings.json``, skipped images and both splits."""

    cache_dir: Path
    settings: dict
    skipped: dict[str, dict]
    train: FeatureSet
    test: FeatureSet | None = None


def open_cache(features: Path, data_dir: Path | None) -> CacheData:
    """Resolve one ``--features`` value and load its training images (the test images come after the labels).

    Raises:
        CacheError: No such cache, an unfinished sharded extraction, or unreadable or mixed files.
    """
    cache_dir = resolve_cache(features, data_dir)
    cache_settings = read_settings(cache_dir)
    check_complete(cache_dir, cache_settings)  # names images a shard of extract.py has not embedded yet
    skipped = read_skipped(cache_dir)
    return CacheData(Path(cache_dir), cache_settings, skipped, load_split(cache_dir, "train"))
