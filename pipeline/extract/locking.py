"""An exclusive lock on a cache folder, so that two extraction runs never write the same cache at once.

The second run waits for the first and then finds its images done. The lock is an OS file lock (``flock``): it is
released by the kernel when its holder dies, even by ``kill -9``, so a crashed run never leaves a stale lock.
"""

from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from types import TracebackType

from pipeline.errors import CacheError

try:
    import fcntl
except ImportError:  # Windows: no flock; runs are not protected against each other there.
    fcntl = None

logger = logging.getLogger(__name__)

LOCK_FILE = ".lock"


class FolderLock:
    """Context manager holding an exclusive lock on ``folder/.lock``.

    Args:
        folder: The folder to lock (created if needed).
        timeout: Seconds to wait for another holder; None waits for ever.
    """

    def __init__(self, folder: Path, timeout: float | None = None) -> None:
        self.path = Path(folder) / LOCK_FILE
        self.timeout = timeout
        self._fd: int | None = None
        self._locked = False

    def __enter__(self) -> FolderLock:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            self._fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise CacheError(
                f"{self.path.parent}: cannot create the cache folder's lock file ({exc.strerror or exc}). Choose a "
                "writable --out folder or fix its permissions."
            ) from exc
        if fcntl is None:
            logger.warning("File locks are not available on this system; do not run two extractions at once.")
            return self
        start, announced = time.monotonic(), False
        while True:
            try:
                fcntl.flock(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if not announced:
                    logger.warning(
                        "Another extraction (pid %s) is writing %s; waiting for it to finish.",
                        self._holder() or "?",
                        self.path.parent,
                    )
                    announced = True
                if self.timeout is not None and time.monotonic() - start > self.timeout:
                    os.close(self._fd)
                    self._fd = None
                    raise CacheError(
                        f"{self.path.parent} is locked by another extraction (pid {self._holder() or '?'}) for more "
                        f"than {self.timeout:.0f} s. Wait for it to finish, or stop it, then run again."
                    ) from None
                time.sleep(0.2)
            except OSError as exc:  # e.g. a network file system without flock
                logger.warning(
                    "Cannot lock %s (%s); do not run two extractions on this cache at once.", self.path, exc
                )
                return self
        self._locked = True
        os.ftruncate(self._fd, 0)
        os.write(self._fd, str(os.getpid()).encode())
        return self

    def _holder(self) -> str:
        try:
            return self.path.read_text().strip()
        except OSError:
            return ""

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        if self._fd is not None:
            if self._locked:
                fcntl.flock(self._fd, fcntl.LOCK_UN)
                self._locked = False
            os.close(self._fd)
            self._fd = None


def lock_holder(folder: Path) -> str | None:
    """The pid written by the process that holds ``folder``'s lock now, or None when nobody holds it."""
    path = Path(folder) / LOCK_FILE
    if fcntl is None or not path.is_file():
        return None
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return None
    try:
        fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
    except BlockingIOError:
        return os.read(fd, 32).decode(errors="replace").strip() or "?"
    except OSError:
        return None
    finally:
        os.close(fd)  # closing also drops the shared lock taken above
    return None
