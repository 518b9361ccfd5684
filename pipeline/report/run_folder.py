"""Run folders that are never half-written and never overwritten silently.

Files go into a hidden temporary folder beside the final one, which is renamed into place only when every file is
written: an interrupted run leaves no folder that looks complete. Every run folder holds :data:`RUN_MARKER`, and
``--overwrite`` replaces only a folder that has it (or, for run folders written before the marker existed, one that
holds nothing but run folder files): a folder of the user's, the current folder, a data folder or a feature cache is
refused before any work.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from types import TracebackType

from pipeline.errors import ConfigError

RUN_MARKER = ".pipeline-run"  # written into every run folder: what --overwrite may replace
# the files of run folders written before RUN_MARKER existed (classify.py and classify.py --predict)
OLD_RUN_FILES = frozenset({
    "metrics.json", "config.json", "submission.csv", "oof_predictions.csv", "test_predictions.csv", "quality.csv",
    "quality_flagged.png", "prediction.json", "model", "heads", "vote_maps", "report.html", "confusion_matrix.png",
    "per_class.png", "heads.png", "embedding_map.png",
})


def is_run_folder(folder: Path) -> bool:
    """True when ``folder`` was written as a run folder.

    It holds :data:`RUN_MARKER`, or (run folders older than the marker) nothing but run folder files, among them
    ``metrics.json`` or ``prediction.json``.
    """
    folder = Path(folder)
    if (folder / RUN_MARKER).is_file():
        return True
    names = {path.name for path in folder.iterdir()}
    return bool(names & {"metrics.json", "prediction.json"}) and names <= OLD_RUN_FILES


def check_out_folder(out: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` that may not become a run folder, before any work.

    An absent folder or an empty one is fine; an existing run folder needs ``overwrite``. Anything else is refused:
    a file, the current folder or a folder that contains it, a data folder, a feature cache, or a folder with
    other files.

    Raises:
        ConfigError: One line naming the folder, the problem and the fix.
    """
    out = Path(out)
    fix = "Pass --out with a new folder name (or leave --out out for the default runs/ folder)."
    if not out.exists():
        return
    if not out.is_dir():
        raise ConfigError(f"--out '{out}' is a file, not a run folder. {fix}")
    here = Path.cwd().resolve()
    if out.resolve() == here or out.resolve() in here.parents:
        raise ConfigError(f"--out '{out}' is the current folder or contains it; it is never replaced. {fix}")
    entries = sorted(path.name for path in out.iterdir())
    if not entries:
        return
    if is_run_folder(out):
        if not overwrite:
            raise ConfigError(f"Run folder '{out}' already exists. Pass another --out, or --overwrite to replace it.")
        return
    if (out / "settings.json").is_file() or any((out / name / "settings.json").is_file() for name in entries):
        what = "is a feature cache of extract.py (or holds caches)"
    elif {"train_data", "test_data"} & set(entries):
        what = "is a data folder"
    else:
        shown = ", ".join(entries[:5]) + (" ..." if len(entries) > 5 else "")
        what = f"holds files this project did not write ({shown})"
    raise ConfigError(f"--out '{out}' {what}; it is not a run folder, so it is never replaced, even with "
                      f"--overwrite. {fix}")


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
        absolute = Path(os.path.abspath(self.final))  # "." and "x/.." have no name of their own
        self.temp = absolute.with_name(f".{absolute.name}.tmp-{os.getpid()}")

    def __enter__(self) -> Path:
        check_out_folder(self.final, self.overwrite)
        _remove_orphans(self.final)
        shutil.rmtree(self.temp, ignore_errors=True)
        self.temp.mkdir(parents=True)
        (self.temp / RUN_MARKER).write_text("written by pipeline-pathology: classify.py may replace this folder "
                                            "with --overwrite\n")
        return self.temp

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if exc_type is not None:
            shutil.rmtree(self.temp, ignore_errors=True)
            return
        if self.final.exists() and not self._replaceable():
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

    def _replaceable(self) -> bool:
        """Whether the existing ``final`` may be replaced now: empty, or a run folder and ``overwrite``."""
        return self.final.is_dir() and (not any(self.final.iterdir()) or
                                        (self.overwrite and is_run_folder(self.final)))


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
