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
        movable: When ``final`` appears while the run writes (another run took the name), use the next free name
            instead (for default names); otherwise that is an error, and the results stay in the temporary folder.
    """

    def __init__(self, final: Path, overwrite: bool = False, movable: bool = False) -> None:
        self.final = Path(final)
        self.overwrite = overwrite
        self.movable = movable
        self.temp = self.final.with_name(f".{self.final.name}.tmp-{os.getpid()}")

    def __enter__(self) -> Path:
        if self.final.exists() and not self.overwrite:
            raise ConfigError(
                f"Run folder '{self.final}' already exists. Pass another --out, or --overwrite to replace it."
            )
        _remove_orphans(self.final)
        shutil.rmtree(self.temp, ignore_errors=True)
        self.temp.mkdir(parents=True)
        return self.temp

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            shutil.rmtree(self.temp, ignore_errors=True)
            return
        if self.final.exists() and not self.overwrite:
            if not self.movable:
                raise ConfigError(
                    f"Run folder '{self.final}' was created by another run meanwhile; this run's files are in "
                    f"'{self.temp}'. Rename that folder to keep them."
                )
            self.final = next_free(self.final)
        if self.final.exists():
            old = self.final.with_name(f".{self.final.name}.old-{os.getpid()}")
            os.replace(self.final, old)
            os.replace(self.temp, self.final)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(self.temp, self.final)


def _remove_orphans(final: Path) -> None:
    """Delete temporary folders of ``final`` left by runs that died (their process no longer exists)."""
    if not final.parent.is_dir():
        return
    for path in final.parent.glob(f".{final.name}.tmp-*"):
        pid = path.name.rsplit("-", 1)[-1]
        if pid.isdigit() and int(pid) != os.getpid() and not _alive(int(pid)):
            shutil.rmtree(path, ignore_errors=True)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
