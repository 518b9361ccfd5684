"""The feature-file schema, defined once: which attributes a file carries and which of them make a cache.

Schema version 1, one HDF5 file per image (``<cache>/<split>/<image stem>.h5``):

- ``features``: (n_tiles, D) float32 tile embeddings.
- ``coords``: (n_tiles, 2) int32, (x, y) of each tile's top-left corner in original image pixels.
- ``coverage``: (n_tiles,) float32, fraction of each tile's pixels inside the mask.
- attributes: :data:`RUN_ATTRS` (the same in every file of a cache, also written to ``settings.json``),
  :data:`IMAGE_ATTRS` (this image) and the hygiene attributes (``q_version``, ``q_*`` scores, ``phashes``; see
  :mod:`pipeline.hygiene.checks`). Hygiene attributes can be rewritten without touching the arrays: a file whose
  ``q_version`` is not the current one is re-scored by extraction, not re-embedded, and stays schema version 1.

Extraction builds the attributes with :func:`run_attributes` and :func:`file_attributes`; readers compare caches with
:func:`identity` and :func:`mismatched_keys`. :mod:`pipeline.cache.store` writes and reads the files.
"""

from __future__ import annotations

import json
from typing import TYPE_CHECKING

from pipeline.data.tiling import GRID_LAYOUT

if TYPE_CHECKING:  # a type only: the cache does not need torch
    from pipeline.data.tiling import TilingSettings
    from pipeline.embed.model import LoadedModel
    from pipeline.embed.preprocessing import Preprocessing

SCHEMA_VERSION = 1

# Settings of the run that made the file: equal in every file of one cache.
RUN_ATTRS = (
    "schema_version",
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
    "grid",
    "feature_dim",
    "tissue",
    "target_mpp",
)
# What identifies the image and how its tiles were chosen. ``tissue_detector`` only in files whose tiles lie on
# detected tissue (no mask file): :func:`pipeline.data.slide_input.tissue_detector`, compared on resume by
# :func:`pipeline.cache.folder.stale_reason` (per file, not an identity key, so caches of images with mask files
# keep their name and files when the detector changes).
IMAGE_ATTRS = (
    "image_id",
    "split",
    "sample_index",
    "n_tiles",
    "image_width",
    "image_height",
    "image_sha256",
    "mask_sha256",
    "pixels_xxh3",
    "mask_fraction",
    "fallback",
    "tissue_detector",
)
# The decoded pixels' checksum, newest kind first: files written before ``pixels_xxh3`` carry ``pixels_sha256``,
# which stands for it. The two kinds differ in length (32 and 64 hex digits), so they never match each other.
PIXEL_CHECKSUMS = ("pixels_xxh3", "pixels_sha256")
# The version of the hygiene attributes (an int; absent in files made before it existed). Its current value is
# pipeline.hygiene.checks.QUALITY_VERSION; the cache only compares it.
QUALITY_VERSION_KEY = "q_version"
# Attributes that must be equal for two files to belong to the same cache (model weights and tiling settings).
# ``tissue`` (``--tissue`` other than ``auto``) and ``target_mpp`` (an explicit ``--target-mpp``; the registry's
# default follows from the model) are written only when not default, so files of the common case, made before
# slides were read, keep their identity (absent reads as None on both sides).
# ``grid`` is the tile layout (:data:`pipeline.data.tiling.GRID_LAYOUT`); files made before it existed lack it, read
# as None, and so never match a cache of the current layout.
IDENTITY_KEYS = (
    "schema_version",
    "model_checksum",
    "preprocessing",
    "precision",
    "tile_size",
    "stride",
    "min_coverage",
    "max_tiles",
    "seed",
    "grid",
    "tissue",
    "target_mpp",
)


def run_attributes(
    model: LoadedModel, tiling: TilingSettings, precision: str, tissue: str = "auto", target_mpp: float | None = None
) -> dict:
    """The run-level attributes every feature file of one cache carries (identity keys included).

    ``tissue`` and ``target_mpp`` appear only when not default (see :data:`IDENTITY_KEYS`).
    """
    optional = {"tissue": tissue} if tissue != "auto" else {}
    if target_mpp is not None:
        optional["target_mpp"] = float(target_mpp)
    return {
        "schema_version": SCHEMA_VERSION,
        "model": model.name,
        "model_source": model.source,
        "model_revision": model.revision,
        "model_checksum": model.checksum,
        "preprocessing": preprocessing_attribute(model.preprocessing, tiling.tile_size),
        "precision": precision,
        "tile_size": tiling.tile_size,
        "stride": tiling.step,
        "min_coverage": float(tiling.min_coverage),
        "max_tiles": tiling.max_tiles,
        "seed": tiling.seed,
        "grid": GRID_LAYOUT,
        "feature_dim": model.dim,
        **optional,
    }


def preprocessing_attribute(preprocessing: Preprocessing, tile_size: int) -> dict:
    """The ``preprocessing`` attribute: the model's, with ``"resized_by": "pillow"`` when tiles are resized.

    Tiles of another size than the encoder's are resized with Pillow in the decoding workers (as the authors' PIL
    transforms do); caches made when the device resized them differ by up to a few levels of 255 and must not match.
    """
    values = preprocessing.to_dict()
    if tile_size != preprocessing.resized_side:
        values["resized_by"] = "pillow"
    return values


def file_attributes(run: dict, image: dict, image_id: str, sample_index: str, n_tiles: int) -> dict:
    """All attributes of one image's file.

    Args:
        run: :func:`run_attributes` of the cache.
        image: What decoding found (size, checksums, mask fraction, fallback, hygiene statistics).
        image_id: ``<split>/<stem>``, e.g. ``train/img_0000``.
        sample_index: The file name, e.g. ``img_0000.png``.
        n_tiles: Rows of ``features``.
    """
    split = image_id.split("/", 1)[0]
    return {**run, **image, "image_id": image_id, "split": split, "sample_index": sample_index, "n_tiles": n_tiles}


def missing_attributes(attrs: dict) -> list[str]:
    """Required attributes a file lacks (``feature_dim``, ``n_tiles`` and ``grid`` are checked only when present).

    A file without ``grid`` predates the attribute: it is readable, and its identity differs from the current
    layout's (see :data:`IDENTITY_KEYS`).
    """
    optional = ("feature_dim", "n_tiles", "grid", "tissue", "target_mpp", "tissue_detector")
    if pixel_checksum(attrs) is not None:  # a file written before pixels_xxh3 has its older kind
        optional = (*optional, PIXEL_CHECKSUMS[0])
    return [key for key in (*RUN_ATTRS, *IMAGE_ATTRS) if key not in optional and key not in attrs]


def pixel_checksum(attrs: dict) -> str | None:
    """The file's checksum of its decoded pixels, of whichever kind it carries (:data:`PIXEL_CHECKSUMS`)."""
    return next((attrs[key] for key in PIXEL_CHECKSUMS if attrs.get(key)), None)


def identity(attrs: dict) -> dict:
    """The identity part of a file's or a cache's attributes, with JSON strings parsed."""
    values = {key: attrs.get(key) for key in IDENTITY_KEYS}
    if isinstance(values["preprocessing"], str):
        try:
            values["preprocessing"] = json.loads(values["preprocessing"])
        except ValueError:
            pass  # a damaged value stays a string, which matches nothing: the file is re-embedded or refused
    return values


def mismatched_keys(attrs: dict, expected: dict) -> list[str]:
    """Identity keys on which a file's attributes differ from the expected ones."""
    found, wanted = identity(attrs), identity(expected)
    return [key for key in IDENTITY_KEYS if found[key] != wanted[key]]
