"""Finding the cache a classification run should read: the one made from ``--data``, named by ``--features``.

Caches live at ``<root>/<data folder key>/<cache name>/`` (see :func:`pipeline.cache.folder.data_key`); caches made
before data folders had their own key sit directly under the root and are found too, by the data folder their
``settings.json`` records.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

from pipeline.cache.folder import SETTINGS_FILE, cache_dir, data_key
from pipeline.defaults import DEFAULT_DATA_DIR, DEFAULT_FEATURES_DIR
from pipeline.errors import CacheError


def is_cache(folder: Path) -> bool:
    """True when ``folder`` holds a ``settings.json`` written by extraction."""
    return (Path(folder) / SETTINGS_FILE).is_file()


def find_caches(root: Path) -> list[Path]:
    """Cache folders directly under ``root`` or one level deeper (``<root>/<data key>/<cache>``), sorted."""
    root = Path(root)
    if not root.is_dir():
        return []
    found = []
    for child in sorted(p for p in root.iterdir() if p.is_dir()):
        if is_cache(child):
            found.append(child)
        else:
            found.extend(sorted(p for p in child.iterdir() if p.is_dir() and is_cache(p)))
    return found


def enclosing_cache(folder: Path) -> Path | None:
    """The cache folder that ``folder`` lies inside (not ``folder`` itself), or None."""
    return next((parent for parent in Path(folder).absolute().parents if is_cache(parent)), None)


def check_out(out: Path) -> None:
    """Refuse an ``extract.py --out`` that lies inside a cache folder (every mode: a cache never holds another).

    Raises:
        CacheError: ``out`` is inside a cache folder.
    """
    inside = enclosing_cache(out)
    if inside is not None:
        raise CacheError(
            f"--out {out} lies inside the cache folder {inside}. Pass --out with the cache root "
            f"({DEFAULT_FEATURES_DIR} by default) or the cache folder {inside} itself."
        )


def extraction_cache_dir(out: Path, data_dir: Path, name: str | None = None) -> Path:
    """The cache folder that extraction with these flags writes: ``<out>/<data key>/<name>``.

    ``out`` is the cache root; it may also be the data folder's own folder under a root (``<root>/<data key>``), or
    a cache folder, which is used when it is the cache these flags make (``name``, of ``data_dir``) and refused
    otherwise: a cache is never nested in another, nor filled with other settings.

    Args:
        out: ``--out``. data_dir: ``--data``. name: The cache name the flags make (None: not known yet, before the
            model is loaded; only the checks that need no name are made).

    Raises:
        CacheError: ``out`` is inside a cache folder, a cache of another data folder or of other flags, or the
            folder of another data folder's caches; the message names the ``--out`` to pass.
    """
    out, key = Path(out), data_key(data_dir)
    check_out(out)
    if is_cache(out):
        root = out.parent.parent if _is_data_folder_dir(out.parent) else out.parent
        recorded = recorded_data_dir(out)
        if recorded is not None and recorded != Path(data_dir).resolve():
            raise CacheError(
                f"--out {out} is a cache folder of another data folder ({recorded}), not of --data {data_dir}. "
                f"Pass --out {root} (the root that holds the caches of every data folder)."
            )
        if name is not None and out.name != name:
            raise CacheError(
                f"--out {out} is a cache folder made with other flags ({out.name}); these flags make {name}. Pass "
                f"--out {root} (the root that holds caches) to make that cache, or the flags that made {out.name}."
            )
        return out
    if out.name == key:  # the data folder's own folder under a root
        return cache_dir(out.parent, data_dir, name)
    if _is_data_folder_dir(out):
        raise CacheError(
            f"--out {out} holds the caches of another data folder ({recorded_data_dir(find_caches(out)[0])}), not "
            f"of --data {data_dir}. Pass --out {out.parent} (the root that holds the caches of every data folder)."
        )
    return cache_dir(out, data_dir, name)


def _is_data_folder_dir(folder: Path) -> bool:
    """True for a ``<root>/<data key>`` folder: named ``<name>-<8 hex digits>`` and holding caches."""
    folder = Path(folder)
    if not folder.is_dir() or is_cache(folder) or not re.search(r"-[0-9a-f]{8}$", folder.name):
        return False
    return any(is_cache(child) for child in folder.iterdir() if child.is_dir())


def recorded_data_dir(cache_dir: Path) -> Path | None:
    """The data folder a cache's ``settings.json`` records (None when unreadable or absent)."""
    try:
        recorded = json.loads((Path(cache_dir) / SETTINGS_FILE).read_text()).get("data_dir")
    except (OSError, ValueError, AttributeError):
        return None
    return Path(recorded) if recorded else None


def data_name(cache_settings: dict) -> str:
    """The name of the data folder a cache's ``settings.json`` records (the default's, ``data``, when none)."""
    return Path(str(cache_settings.get("data_dir") or DEFAULT_DATA_DIR)).name


def caches_of(root: Path, data_dir: Path) -> list[Path]:
    """The caches under ``root`` that were made from ``data_dir``."""
    resolved = Path(data_dir).resolve()
    keyed = cache_dir(root, data_dir)
    return [
        cache
        for cache in find_caches(root)
        if cache.parent == keyed or (cache.parent == Path(root) and recorded_data_dir(cache) == resolved)
    ]


def resolve_cache(features: Path, data_dir: Path | None = None) -> Path:
    """The cache folder to classify.

    Args:
        features: A cache folder; a cache's name under ``features/``; or a root holding caches.
        data_dir: The data folder whose cache is wanted. None (not given): the cache of ``data/`` if there is one,
            else the root's only cache.

    Raises:
        CacheError: No cache, or several (the message lists them and says how to choose).
    """
    features = Path(features)
    if is_cache(features):
        return features
    if not features.exists() and len(features.parts) == 1:
        named = [cache for cache in find_caches(DEFAULT_FEATURES_DIR) if cache.name == features.name]
        if len(named) > 1 and data_dir is not None:  # one per data folder: --data says which
            of_data = caches_of(DEFAULT_FEATURES_DIR, data_dir)
            named = [cache for cache in named if cache in of_data] or named
        if len(named) == 1:
            return named[0]
        if named:
            raise CacheError(
                f"--features {features}: several caches have that name ({', '.join(map(str, named))}). Pass one "
                "of those paths, or --data with the data folder whose cache to use."
            )
    if not features.is_dir():
        raise CacheError(
            f"--features {features} does not exist. Pass a cache folder written by extract.py (or the root that "
            "holds them, features/ by default); run extract.py first if there is none."
        )
    every = find_caches(features)
    candidates = caches_of(features, data_dir or DEFAULT_DATA_DIR)
    if not candidates and data_dir is None:
        candidates = every
    if len(candidates) == 1:
        return candidates[0]
    if candidates:
        raise CacheError(
            f"'{features}' holds several caches{_of(data_dir)}: {', '.join(map(str, candidates))}. Choose one with "
            "--features CACHE_FOLDER."
        )
    if not every:
        raise CacheError(f"No feature cache under '{features}'. Run extract.py first, or pass --features CACHE_FOLDER.")
    others = sorted({str(recorded_data_dir(cache) or "?") for cache in every})
    raise CacheError(
        f"No feature cache{_of(data_dir)} under '{features}'; its caches were made from {', '.join(others)}. Run "
        f"extract.py --data {data_dir}, pass the --data the cache was made from, or --features CACHE_FOLDER."
    )


def _of(data_dir: Path | None) -> str:
    return f" of --data {data_dir}" if data_dir is not None else ""
