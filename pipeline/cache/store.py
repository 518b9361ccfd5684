"""The HDF5 feature files: the only module that imports h5py.

The schema (datasets and attributes) is defined in :mod:`pipeline.cache.schema`. Files are built in memory, written
under a temporary name in the same folder, flushed to disk, then renamed into place (:mod:`pipeline.cache.atomic`), so
a file with the final name is always complete: a full disk or a killed process leaves at most a hidden temporary file,
which a later run deletes.
The datasets carry Fletcher-32 checksums and the file's metadata is checksummed too (HDF5 1.8 format, readable by
any HDF5 since 2008), so a flipped bit makes a file unreadable instead of silently wrong.
"""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np

from pipeline.cache.atomic import TEMP_MARKER, temp_path_for, write_file_atomic  # noqa: F401 (part of this API)
from pipeline.cache.schema import SCHEMA_VERSION, missing_attributes
from pipeline.errors import CacheError

_STRING = h5py.string_dtype()
FILE_FORMAT = ("v108", "v108")  # HDF5 1.8 format: checksummed metadata, readable by every HDF5 since 1.8
# A corrupt HDF5 file makes h5py raise any of these (seen by flipping bytes and truncating files).
_CORRUPT_FILE_ERRORS = (OSError, RuntimeError, KeyError, TypeError, ValueError, IndexError, AttributeError)


class FileProblem(CacheError):
    """A feature file that cannot be trusted. ``problem`` is the reason alone, without the path and the fix."""

    def __init__(self, path: Path, problem: str, fix: str = "Delete it and run extract.py again.") -> None:
        super().__init__(f"{path}: {problem}. {fix}")
        self.path = Path(path)
        self.problem = problem


@dataclass
class ImageFeatures:
    """One image's cached tiles.

    Attributes:
        features: (n_tiles, D) float32.
        coords: (n_tiles, 2) int32 (x, y).
        coverage: (n_tiles,) float32.
        attrs: The file's attributes as Python values.
        coords_attrs: The ``coords`` dataset's attributes (TRIDENT's: ``patch_size``, ``patch_size_level0``, ...).
    """

    features: np.ndarray
    coords: np.ndarray
    coverage: np.ndarray
    attrs: dict
    coords_attrs: dict = field(default_factory=dict)


def _to_python(value: object) -> object:
    if isinstance(value, bytes):
        return value.decode()
    if isinstance(value, np.generic):
        return value.item()
    if isinstance(value, np.ndarray):
        return value.tolist()
    return value


def attrs_as_stored(attrs: dict) -> dict:
    """The attributes as :func:`read_attrs` returns them once written (dicts and lists as JSON, plain Python types)."""
    stored = {key: json.dumps(v) if isinstance(v, (dict, list, tuple)) else _to_python(v) for key, v in attrs.items()}
    return {**stored, "schema_version": SCHEMA_VERSION}


def encode_image_features(
    features: np.ndarray, coords: np.ndarray, coverage: np.ndarray, attrs: dict, coords_attrs: dict | None = None
) -> bytes:
    """Build one image's HDF5 file in memory (so a failing disk never leaves HDF5 half-way through a write).

    Args:
        features: (n, D) float; stored as float32.
        coords: (n, 2) int; stored as int32.
        coverage: (n,) float; stored as float32.
        attrs: Attribute values (str, int, float, bool); dicts and lists are stored as JSON strings.
        coords_attrs: Attributes of the ``coords`` dataset (where TRIDENT and CLAM read the tile size and scale).

    Returns:
        The bytes of the file.
    """
    features = np.asarray(features, dtype=np.float32)
    coords = np.asarray(coords, dtype=np.int32).reshape(-1, 2)
    coverage = np.asarray(coverage, dtype=np.float32).reshape(-1)
    if features.ndim != 2 or not len(features) == len(coords) == len(coverage):
        raise ValueError(f"features {features.shape}, coords {coords.shape}, coverage {coverage.shape} disagree")
    checksum = {"fletcher32": True} if len(features) else {}  # a checksum needs chunks, which need a row
    buffer = io.BytesIO()
    with h5py.File(buffer, "w", libver=FILE_FORMAT) as handle:
        handle.create_dataset("features", data=features, **checksum)
        coords_set = handle.create_dataset("coords", data=coords, **checksum)
        _write_attributes(coords_set, coords_attrs or {})
        handle.create_dataset("coverage", data=coverage, **checksum)
        _write_attributes(handle, {**attrs, "schema_version": SCHEMA_VERSION})
    return buffer.getvalue()


def _write_attributes(handle: h5py.File | h5py.Dataset, attrs: dict) -> None:
    """Write scalar attributes to a new file or dataset as ``handle.attrs[key] = value`` would, at half its cost.

    The same HDF5 types as h5py's high-level API (UTF-8 variable-length strings, 64-bit numbers, h5py's boolean
    enum), without its checks for an existing attribute of that name: about 1 ms less per file, which on a 2-core CPU
    is 1-2% of the end-to-end extraction rate of one-tile images.
    """
    space = h5py.h5s.create(h5py.h5s.SCALAR)
    for key, value in attrs.items():
        if isinstance(value, (dict, list, tuple)):
            value = json.dumps(value)
        array = np.array(value, dtype=_STRING) if isinstance(value, str) else np.asarray(value)
        file_type, memory_type = _attribute_types(array.dtype)
        attribute = h5py.h5a.create(handle.id, key.encode(), file_type, space)
        try:
            attribute.write(array, mtype=memory_type)
        finally:
            attribute.close()


_TYPES: dict[np.dtype, tuple] = {}


def _attribute_types(dtype: np.dtype) -> tuple:
    """(file type, memory type) of an attribute's dtype, made once per process.

    Making them for every attribute was a third of writing a file's attributes (0.45 of 1.2 ms for 35 of them); the
    file's bytes are the same either way.
    """
    types = _TYPES.get(dtype)
    if types is None:
        types = _TYPES[dtype] = (h5py.h5t.py_create(dtype, logical=True), h5py.h5t.py_create(dtype))
    return types


def write_image_features(
    path: Path, features: np.ndarray, coords: np.ndarray, coverage: np.ndarray, attrs: dict,
    coords_attrs: dict | None = None,
) -> None:
    """Write one image's file atomically (arrays as in :func:`encode_image_features`; its folder is created).

    Raises:
        CacheError: The file cannot be written (disk full, permissions); no partial file is left behind.
    """
    write_file_atomic(Path(path), encode_image_features(features, coords, coverage, attrs, coords_attrs))


def update_attributes(path: Path, update: dict, keep: Callable[[str], bool] = lambda key: True) -> ImageFeatures:
    """Rewrite one image's file atomically with the same arrays and updated attributes.

    Args:
        path: The feature file.
        update: Attributes to set (as :func:`encode_image_features` takes them).
        keep: Which of the file's other attributes to keep (by name); the rest are dropped.

    Returns:
        The file as a reader now sees it.

    Raises:
        FileProblem: The file is unreadable or has another schema version (it is left as it is).
        CacheError: The file cannot be written (disk full, permissions); the old file is left as it is.
    """
    path = Path(path)
    item = read_image_features(path)
    attrs = {**{key: value for key, value in item.attrs.items() if keep(key)}, **update}
    write_file_atomic(path, encode_image_features(item.features, item.coords, item.coverage, attrs, item.coords_attrs))
    return ImageFeatures(item.features, item.coords, item.coverage, attrs_as_stored(attrs), item.coords_attrs)


def read_attrs(path: Path) -> dict:
    """Read only the attributes of a feature file.

    Raises:
        FileProblem: The file is missing, truncated, corrupt or not HDF5.
    """
    try:
        with h5py.File(path, "r") as handle:
            return {key: _to_python(value) for key, value in handle.attrs.items()}
    except _CORRUPT_FILE_ERRORS as exc:
        raise FileProblem(path, f"not a readable feature file ({exc})") from exc


def read_image_features(path: Path) -> ImageFeatures:
    """Read one image's file and check its shapes and schema version.

    Raises:
        FileProblem: Unreadable file (truncated, corrupt, failed checksum), missing dataset, other schema version or
            inconsistent shapes.
    """
    try:
        with h5py.File(path, "r") as handle:
            attrs = {key: _to_python(value) for key, value in handle.attrs.items()}
            if attrs.get("schema_version") != SCHEMA_VERSION:
                raise FileProblem(
                    path,
                    f"cache schema version {attrs.get('schema_version')}; this version reads {SCHEMA_VERSION}",
                    "Re-run extract.py to rebuild the cache.",
                )
            features = handle["features"][()]
            coords = handle["coords"][()]
            coords_attrs = {key: _to_python(value) for key, value in handle["coords"].attrs.items()}
            coverage = handle["coverage"][()]
    except FileProblem:
        raise
    except _CORRUPT_FILE_ERRORS as exc:
        raise FileProblem(path, f"not a readable feature file ({exc})") from exc
    if (
        getattr(features, "ndim", 0) != 2
        or getattr(coords, "shape", None) != (len(features), 2)
        or getattr(coverage, "shape", None) != (len(features),)
    ):
        raise FileProblem(
            path,
            f"inconsistent shapes features {np.shape(features)}, coords {np.shape(coords)}, coverage "
            f"{np.shape(coverage)}",
        )
    return ImageFeatures(features, coords, coverage, attrs, coords_attrs)


def value_problem(item: ImageFeatures) -> str | None:
    """What makes a readable file's content untrustworthy, or None.

    Checks finite embeddings and coverage, the required attributes of the schema, and that the file's ``n_tiles``
    and ``feature_dim`` attributes (when present) match its arrays.
    """
    features = item.features
    if not np.issubdtype(features.dtype, np.floating):
        return f"embeddings of type {features.dtype}, expected float32"
    bad = int(features.size - np.count_nonzero(np.isfinite(features)))
    if bad:
        return f"{bad} of {features.size} embedding values are NaN or infinite"
    if not np.isfinite(item.coverage).all():
        return "NaN or infinite tile coverage"
    missing = missing_attributes(item.attrs)
    if missing:
        return f"attributes missing: {', '.join(missing)}"
    n_tiles, dim = item.attrs.get("n_tiles"), item.attrs.get("feature_dim")
    if n_tiles is not None and n_tiles != len(features):
        return f"{len(features)} tiles but the attribute n_tiles says {n_tiles}"
    if dim is not None and dim != features.shape[1]:
        return f"{features.shape[1]}-d embeddings but the attribute feature_dim says {dim}"
    return None
