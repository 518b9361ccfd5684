"""The HDF5 feature files: the only module that imports h5py.

Schema version 1, one file per image (``<cache>/<split>/<image stem>.h5``):

- ``features``: (n_tiles, D) float32 tile embeddings.
- ``coords``: (n_tiles, 2) int32, (x, y) of each tile's top-left corner in original image pixels.
- ``coverage``: (n_tiles,) float32, fraction of each tile's pixels inside the mask.
- attributes: see :data:`REQUIRED_ATTRS` and the README.

Files are written under a temporary name in the same folder, flushed to disk, then renamed into place, so a file
with the final name is always complete.
"""

from __future__ import annotations

import json
import os
import uuid
from dataclasses import dataclass
from pathlib import Path

import h5py
import numpy as np

from pipeline.errors import CacheError

SCHEMA_VERSION = 1
TEMP_MARKER = ".tmp-"
REQUIRED_ATTRS = (
    "schema_version",
    "image_id",
    "split",
    "sample_index",
    "model",
    "model_source",
    "model_revision",
    "model_checksum",
    "preprocessing",
    "precision",
    "tile_size",
    "stride",
    "min_coverage",
    "max_tiles",
    "seed",
    "image_width",
    "image_height",
    "image_sha256",
    "mask_sha256",
    "pixels_sha256",
    "mask_fraction",
    "fallback",
)


@dataclass
class ImageFeatures:
    """One image's cached tiles.

    Attributes:
        features: (n_tiles, D) float32.
        coords: (n_tiles, 2) int32 (x, y).
        coverage: (n_tiles,) float32.
        attrs: The file's attributes as Python values.
    """

    features: np.ndarray
    coords: np.ndarray
    coverage: np.ndarray
    attrs: dict


def _to_python(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def temp_path_for(path: Path) -> Path:
    """A unique temporary name next to ``path``, hidden and marked so that stale ones can be found."""
    return path.with_name(f".{path.name}{TEMP_MARKER}{os.getpid()}-{uuid.uuid4().hex[:8]}")


def write_image_features(
    path: Path, features: np.ndarray, coords: np.ndarray, coverage: np.ndarray, attrs: dict
) -> None:
    """Write one image's file atomically (temporary name, fsync, rename).

    Args:
        path: Final file path; its folder is created.
        features: (n, D) float; stored as float32.
        coords: (n, 2) int; stored as int32.
        coverage: (n,) float; stored as float32.
        attrs: Attribute values (str, int, float, bool); dicts and lists are stored as JSON strings.

    Raises:
        CacheError: The file cannot be written (disk full, permissions); no partial file is left behind.
    """
    features = np.asarray(features, dtype=np.float32)
    coords = np.asarray(coords, dtype=np.int32).reshape(-1, 2)
    coverage = np.asarray(coverage, dtype=np.float32).reshape(-1)
    if features.ndim != 2 or not len(features) == len(coords) == len(coverage):
        raise ValueError(f"features {features.shape}, coords {coords.shape}, coverage {coverage.shape} disagree")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = temp_path_for(path)
    try:
        with h5py.File(temp, "w") as handle:
            handle.create_dataset("features", data=features)
            handle.create_dataset("coords", data=coords)
            handle.create_dataset("coverage", data=coverage)
            for key, value in attrs.items():
                handle.attrs[key] = json.dumps(value) if isinstance(value, (dict, list, tuple)) else value
            handle.attrs["schema_version"] = SCHEMA_VERSION
        fd = os.open(temp, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(temp, path)
    except OSError as exc:
        temp.unlink(missing_ok=True)
        raise CacheError(
            f"{path}: cannot write the feature file ({exc}). Free disk space or fix permissions, then run again: "
            "finished images are kept."
        ) from exc
    except BaseException:
        temp.unlink(missing_ok=True)
        raise


def read_attrs(path: Path) -> dict:
    """Read only the attributes of a feature file.

    Raises:
        CacheError: The file is missing, truncated or not HDF5.
    """
    try:
        with h5py.File(path, "r") as handle:
            return {key: _to_python(value) for key, value in handle.attrs.items()}
    except (OSError, KeyError) as exc:
        raise CacheError(f"{path}: not a readable feature file ({exc}). Delete it and run extract.py again.") from exc


def read_image_features(path: Path) -> ImageFeatures:
    """Read one image's file and check its shapes and schema version.

    Raises:
        CacheError: Unreadable file, missing dataset, other schema version or inconsistent shapes.
    """
    try:
        with h5py.File(path, "r") as handle:
            attrs = {key: _to_python(value) for key, value in handle.attrs.items()}
            if attrs.get("schema_version") != SCHEMA_VERSION:
                raise CacheError(
                    f"{path}: cache schema version {attrs.get('schema_version')}; this version reads "
                    f"{SCHEMA_VERSION}. Re-run extract.py to rebuild the cache."
                )
            features = handle["features"][()]
            coords = handle["coords"][()]
            coverage = handle["coverage"][()]
    except CacheError:
        raise
    except (OSError, KeyError) as exc:
        raise CacheError(f"{path}: not a readable feature file ({exc}). Delete it and run extract.py again.") from exc
    if features.ndim != 2 or coords.shape != (len(features), 2) or coverage.shape != (len(features),):
        raise CacheError(
            f"{path}: inconsistent shapes features {features.shape}, coords {coords.shape}, coverage "
            f"{coverage.shape}. Delete it and run extract.py again."
        )
    return ImageFeatures(features, coords, coverage, attrs)
