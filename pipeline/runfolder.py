"""Run folders that are never half-written and never overwritten silently.

Files go into a hidden temporary folder beside the final one, which is renamed into place only when every file is
written: an interrupted run leaves no folder that looks complete.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import TracebackType

from pipeline.errors import ConfigError


def next_free(path: Path) -> Path:
    """``path`` if it does not exist, else ``path_2``, ``path_3``, ... (the first that does not)."""
    path = Path(path)
    candidate, number = path, 1
    while candidate.exists():
        number += 1
        candidate = path.with_name(f"{path.name}_{number}")
    return candidate


class RunFolder:
    """Context manager: write into ``.temp``, rename to ``final`` on success, delete the temporary on failure.

    Args:
        final: The run folder to create.
        overwrite: Replace an existing folder; otherwise an existing folder is an error.
    """

    def __init__(self, final: Path, overwrite: bool = False) -> None:
        self.final = Path(final)
        self.overwrite = overwrite
        self.temp = self.final.with_name(f".{self.final.name}.tmp-{os.getpid()}")

    def __enter__(self) -> Path:
        if self.final.exists() and not self.overwrite:
            raise ConfigError(
                f"Run folder '{self.final}' already exists. Pass another --out, or --overwrite to replace it."
            )
        shutil.rmtree(self.temp, ignore_errors=True)
        self.temp.mkdir(parents=True)
        return self.temp

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            shutil.rmtree(self.temp, ignore_errors=True)
            return
        if self.final.exists():
            old = self.final.with_name(f".{self.final.name}.old-{os.getpid()}")
            os.replace(self.final, old)
            os.replace(self.temp, self.final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.temp, self.final)
