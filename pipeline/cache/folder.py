"""The cache folder: its name, its settings file, its skipped-images file and which of its files are up to date.

Layout: ``features/<data folder>-<hash>/<model>_t<tile>_s<stride>_c<coverage>_n<max>[_r<seed>]_g<grid>_<precision>/``
(``g<grid>``: the tile layout, e.g. ``gcover1``) holding ``settings.json`` (the extraction settings),
``skipped.json`` (images extraction could not use, with reasons), one HDF5 file per image under ``train/`` and
``test/`` (schema in :mod:`pipeline.cache.schema`), the record of each shard that finished under ``shards/``
(:mod:`pipeline.cache.shards`) and the claims of running ones under ``.claims/``.
"""

from __future__ import annotations

import hashlib
import io
import json
import logging
import re
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.cache import atomic, store
from pipeline.cache.schema import QUALITY_VERSION_KEY, mismatched_keys
from pipeline.data.slide_input import tissue_detector
from pipeline.data.tiling import GRID_LAYOUT, TilingSettings
from pipeline.errors import CacheError

logger = logging.getLogger(__name__)

SETTINGS_FILE = "settings.json"
SLIDE_SHEET = "slides.png"  # the slides' contact sheet: thumbnail, tissue outline and tiles of each slide
TISSUE_DIR = "tissue"  # the tissue masks found automatically: <cache>/tissue/<split>/<stem>.png
SKIPPED_FILE = "skipped.json"

def data_key(data_dir: Path) -> str:
    """The folder that ties caches to one data folder: its name and a short hash of its resolved path.

    e.g. ``lc25000-lung-3f2a9c1e``. Two data folders never share a cache, even with equal names; a data folder that
    is moved or renamed gets a new key, so its images are embedded again rather than mixed with another folder's.
    """
    resolved = Path(data_dir).resolve()
    digest = hashlib.sha256(str(resolved).encode()).hexdigest()[:8]
    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", resolved.name).strip("-.") or "data"
    return f"{name}-{digest}"


def cache_dir(root: Path, data_dir: Path, name: str | None = None) -> Path:
    """``<root>/<data key>/<name>``: where the cache ``name`` (:func:`cache_name`) of ``data_dir`` lives under a root.

    The one place a cache's path is assembled: extraction's plan, ``--verify``, ``--finalize`` and classification's
    lookup all call it. ``name`` None: the data folder's own folder ``<root>/<data key>``, which holds its caches.
    """
    folder = Path(root) / data_key(data_dir)
    return folder if name is None else folder / name


def grid_tag(layout: str = GRID_LAYOUT) -> str:
    """The tile layout's part of a cache name: ``gcover1`` for ``cover-v1``."""
    return "g" + re.sub(r"[^A-Za-z0-9]+", "", layout.replace("-v", ""))


def cache_name(
    model_slug: str, tiling: TilingSettings, precision: str, tissue: str = "auto", target_mpp: float | None = None
) -> str:
    """Folder name from the model, tiling settings and tile layout, e.g. ``phikon_t224_s224_c0.50_n0_gcover1_fp32``.

    Caches made before the layout had a name lack the ``_g<grid>`` part, so they are never found as a current cache.
    ``--tissue`` other than ``auto`` adds ``_tissue<mode>`` and an explicit ``--target-mpp`` adds ``_m<um>``, so the
    common case (images with masks, defaults) keeps the name it had before slides were read.
    """
    name = f"{model_slug}_t{tiling.tile_size}_s{tiling.step}_c{tiling.min_coverage:.2f}_n{tiling.max_tiles}"
    if tiling.max_tiles:
        name += f"_r{tiling.seed}"
    if tissue != "auto":
        name += f"_tissue{tissue}"
    if target_mpp is not None:
        name += f"_m{target_mpp:g}"
    return f"{name}_{grid_tag()}_{precision}"


def feature_path(cache_dir: Path, image_id: str) -> Path:
    """Where one image's file lives: ``<cache>/<split>/<stem>.h5``."""
    return Path(cache_dir) / f"{image_id}.h5"


def stale_reason(path: Path, expected: dict, image_sha256: str | None, mask_sha256: str | None) -> str | None:
    """Why an image must be (re-)embedded, or None when its embeddings can be trusted as they are.

    A file is trusted only when it opens, has the current schema and consistent shapes, holds finite values, was
    made with the expected settings, and records the checksums of the current image and mask files. Its hygiene
    attributes are judged apart (:func:`file_status`): they can be recomputed without the model.
    """
    reason, _, _ = _staleness(Path(path), expected, image_sha256, mask_sha256)
    return reason


def _staleness(
    path: Path, expected: dict, image_sha: str | None, mask_sha: str | None
) -> tuple[str | None, bool, dict]:
    """(reason or None, whether the file itself is broken rather than out of date, its attributes when readable)."""
    if not path.is_file():
        return "no feature file", False, {}
    if image_sha is None:
        return "the image file cannot be read", False, {}
    if mask_sha is None:
        return "the mask file is missing or cannot be read", False, {}
    try:
        item = store.read_image_features(path)
    except store.FileProblem as exc:
        return exc.problem, True, {}
    problem = store.value_problem(item)
    if problem:
        return problem, True, item.attrs
    keys = mismatched_keys(item.attrs, expected)
    if keys:
        return f"made with other settings ({', '.join(keys)})", False, item.attrs
    if item.attrs.get("image_sha256") != image_sha:
        return "the image file changed since it was embedded", False, item.attrs
    if item.attrs.get("mask_sha256") != mask_sha:
        if not mask_sha:  # "": no mask file now (tissue is found automatically), one when the file was made
            return "the mask file is missing", False, item.attrs
        return "the mask file changed since it was embedded", False, item.attrs
    # tiles placed on detected tissue (no mask file, --tissue auto): the detector that placed them must be this one
    if not mask_sha and expected.get("tissue") in (None, "auto"):
        detector = tissue_detector()
        if item.attrs.get("tissue_detector") != detector:
            return (f"its tissue was found by another tissue detector ({item.attrs.get('tissue_detector') or 'none'}, "
                    f"now {detector})"), False, item.attrs
    return None, False, item.attrs


def is_up_to_date(path: Path, expected: dict, image_sha256: str | None, mask_sha256: str | None) -> bool:
    """True when :func:`stale_reason` finds nothing; a broken file (truncated, NaN, ...) is logged as a warning."""
    reason, broken, _ = _staleness(Path(path), expected, image_sha256, mask_sha256)
    if broken:
        logger.warning("%s: %s; it will be re-embedded.", path, reason)
    return reason is None


def file_status(
    path: Path, expected: dict, image_sha256: str | None, mask_sha256: str | None, q_version: int, warn: bool = True
) -> tuple[str, str | None]:
    """What one image's file needs: ``("current", None)``, ``("rescore", reason)`` or ``("embed", reason)``.

    ``rescore``: the embeddings are up to date (:func:`stale_reason` finds nothing) but the hygiene attributes are
    missing or older than ``q_version`` (:data:`~pipeline.cache.schema.QUALITY_VERSION_KEY`), so only the image
    needs decoding again, not the model. With ``warn``, a broken file is logged as by :func:`is_up_to_date`.
    """
    reason, broken, attrs = _staleness(Path(path), expected, image_sha256, mask_sha256)
    if broken and warn:
        logger.warning("%s: %s; it will be re-embedded.", path, reason)
    if reason is not None:
        return "embed", reason
    found = attrs.get(QUALITY_VERSION_KEY)
    if found != q_version:
        return "rescore", f"hygiene scores of version {found if found is not None else 'none'}, not {q_version}"
    return "current", None


def write_json(path: Path, payload: object) -> None:
    """Write JSON atomically (temporary name, fsync, rename).

    Raises:
        CacheError: The file cannot be written (disk full, permissions); no partial file is left behind.
    """
    store.write_file_atomic(Path(path), _json_bytes(payload))


def create_json(path: Path, payload: object) -> bool:
    """Write JSON unless the file exists, atomically also against other processes; True when this call wrote it.

    Raises:
        CacheError: The file cannot be written (disk full, permissions); no partial file is left behind.
    """
    return atomic.create_file_atomic(Path(path), _json_bytes(payload))


def _json_bytes(payload: object) -> bytes:
    return (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode()


def read_settings(cache_dir: Path) -> dict:
    """Read ``settings.json`` of a cache folder.

    Raises:
        CacheError: The folder has no readable settings file.
    """
    path = Path(cache_dir) / SETTINGS_FILE
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise CacheError(
            f"'{cache_dir}' is not a feature cache: it has no {SETTINGS_FILE}. Run extract.py first, or pass "
            "--features with a folder that extract.py wrote."
        ) from None
    except (OSError, json.JSONDecodeError) as exc:
        raise CacheError(
            f"{path}: unreadable ({exc}). Delete it and run extract.py again to rewrite it (finished feature files "
            "are checked and kept)."
        ) from exc


def list_image_files(cache_dir: Path, split: str) -> list[Path]:
    """The finished feature files of one split, sorted by name (temporary files are ignored)."""
    folder = Path(cache_dir) / split
    if not folder.is_dir():
        return []
    return sorted(p for p in folder.glob("*.h5") if not p.name.startswith("."))


def write_tissue_mask(tissue_dir: Path | None, image_id: str, mask: np.ndarray) -> None:
    """Save a mask found automatically as ``<tissue_dir>/<split>/<stem>.png`` (white: tissue), atomically.

    Args:
        tissue_dir: ``<cache>/tissue``; None saves nothing.
        image_id: ``<split>/<stem>``.
        mask: (h, w) bool, at the resolution it was found (a slide's thumbnail, an image's reduced copy or itself).
    """
    if tissue_dir is None:
        return
    buffer = io.BytesIO()
    Image.fromarray(np.asarray(mask, bool)).save(buffer, format="PNG")
    store.write_file_atomic(Path(tissue_dir) / f"{image_id}.png", buffer.getvalue())
