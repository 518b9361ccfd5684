"""What made a result: the versions of Python, the main libraries and this project (with its git commit)."""

from __future__ import annotations

import platform
from importlib import metadata
from pathlib import Path

PACKAGES = ("torch", "transformers", "timm", "scikit-learn", "lightgbm", "numpy", "h5py", "pillow")
PROJECT = "pathology-pipeline"


def git_commit(start: Path | None = None) -> str:
    """The commit checked out in the git repository holding this package ("" when it is not a checkout).

    Read from ``.git`` directly: no subprocess, and nothing when git is absent.
    """
    folder = (start or Path(__file__)).resolve()
    for parent in [folder, *folder.parents]:
        git = parent / ".git"
        if git.is_dir():
            try:
                head = (git / "HEAD").read_text().strip()
                if not head.startswith("ref: "):
                    return head
                ref = head[len("ref: ") :]
                if (git / ref).is_file():
                    return (git / ref).read_text().strip()
                for line in (git / "packed-refs").read_text().splitlines():
                    if line.endswith(" " + ref):
                        return line.split()[0]
            except OSError:
                return ""
            return ""
    return ""


def versions() -> dict[str, str]:
    """``{"python": ..., "torch": ..., ..., "pathology-pipeline": ..., "git_commit": ...}``; absent packages are ""."""
    found = {"python": platform.python_version()}
    for name in (*PACKAGES, PROJECT):
        try:
            found[name] = metadata.version(name)
        except metadata.PackageNotFoundError:
            found[name] = ""
    found["git_commit"] = git_commit()
    return found
