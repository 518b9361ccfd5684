"""Saving and loading fitted heads as JSON and numpy arrays: no pickle, so loading a file never runs code."""

from __future__ import annotations

import json
import os
from pathlib import Path

import numpy as np

from pipeline.errors import ModelLoadError
from pipeline.heads.base import STATE_VERSION, Head
from pipeline.heads.registry import HEAD_NAMES, head_class


def save_head(head: Head, folder: Path, *, overwrite: bool = False) -> None:
    """Write ``folder/head.json`` and ``folder/head.npz`` (no pickle); each goes to a temporary name first."""
    folder = Path(folder)
    meta, arrays = head.to_state()
    targets = [folder / "head.json", folder / "head.npz"]
    if not overwrite and any(path.exists() for path in targets):
        raise FileExistsError(f"{folder} already holds a saved head; choose a new folder or pass overwrite=True.")
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / "head.npz.tmp", "wb") as file:  # a file object stops numpy from appending ".npz"
        np.savez(file, **arrays)
    (folder / "head.json.tmp").write_text(json.dumps(meta), encoding="utf-8")
    for path in targets:
        os.replace(path.with_name(path.name + ".tmp"), path)


def load_head(folder: Path) -> Head:
    """Read a head written by :func:`save_head`; never unpickles, so a tampered file cannot run code."""
    json_path, npz_path = Path(folder) / "head.json", Path(folder) / "head.npz"
    try:
        meta = json.loads(json_path.read_text(encoding="utf-8"))
        with np.load(npz_path, allow_pickle=False) as data:
            arrays = {key: data[key] for key in data.files}
    except (OSError, ValueError) as err:  # missing file, bad JSON, object arrays
        raise ModelLoadError(f"Cannot read a saved head from {folder}: {err}. Save it with save_head().") from err
    kind, version = (meta.get("kind"), meta.get("version")) if isinstance(meta, dict) else (None, None)
    if kind not in HEAD_NAMES or version != STATE_VERSION:
        raise ModelLoadError(
            f"{json_path} has kind {kind!r} and version {version!r}; expected a kind in "
            f"{', '.join(HEAD_NAMES)} and version {STATE_VERSION}. It was not written by this "
            "version of save_head(), or it has been edited."
        )
    try:
        return head_class(kind).from_state(meta, arrays)
    except (KeyError, TypeError, ValueError, RuntimeError) as err:
        raise ModelLoadError(f"{folder} holds an incomplete or inconsistent {kind} head: {err!r}.") from err
