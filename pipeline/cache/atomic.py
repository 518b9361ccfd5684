"""Files that appear whole or not at all: written under a temporary name, flushed, then renamed or linked into place.

Temporary names are hidden, carry :data:`TEMP_MARKER`, and name their writer's pid and where that pid is valid
(``.img_0001.h5.tmp-node07~4026531836-4242-1a2b3c4d``: host and pid namespace), so that when many processes write
one cache a run deletes only the temporaries of writers that are gone (:func:`temp_writer`), never a file another
process is still writing.
"""

from __future__ import annotations

import os
import re
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from pipeline.errors import CacheError

TEMP_MARKER = ".tmp-"
_TEMP_NAME = re.compile(rf"{re.escape(TEMP_MARKER)}(?:(?P<space>[A-Za-z0-9_.~-]+)-)?(?P<pid>\d+)-[0-9a-f]{{8}}$")


def host_name() -> str:
    """The name of this machine, as file names may hold it (letters, digits, ``.``, ``_`` and ``-``)."""
    return re.sub(r"[^A-Za-z0-9_.-]", "_", socket.gethostname()) or "localhost"


def pid_space() -> str:
    """Where this process's pid means something: the host and its pid namespace, e.g. ``node07~4026531836``.

    Two processes can check each other's pids only when this is equal: containers that share a host name (docker
    ``--network host``) still have their own pid namespaces.
    """
    try:
        namespace = os.readlink("/proc/self/ns/pid").strip("pid:[]")
    except OSError:  # no /proc (macOS, Windows): the host name alone
        return host_name()
    return f"{host_name()}~{namespace}"


def temp_path_for(path: Path) -> Path:
    """A unique temporary name next to ``path``: hidden, marked, and naming its writer's :func:`pid_space` and pid."""
    path = Path(path)
    return path.with_name(f".{path.name}{TEMP_MARKER}{pid_space()}-{os.getpid()}-{uuid.uuid4().hex[:8]}")


def temp_writer(path: Path) -> tuple[str | None, int] | None:
    """(:func:`pid_space`, pid) of the process that wrote a temporary file; None for other names.

    The pid space is None for names written by earlier versions, which held the whole cache folder's lock and wrote
    only the pid.
    """
    found = _TEMP_NAME.search(Path(path).name)
    return (found["space"], int(found["pid"])) if found else None


def write_file_atomic(path: Path, data: bytes) -> None:
    """Write bytes under a temporary name, flush them to disk, rename into place and flush the folder entry.

    Raises:
        CacheError: The file cannot be written (disk full, permissions); no partial file is left behind.
    """
    path = Path(path)
    with _temporary(path) as temp:
        _write_new(temp, data)
        os.replace(temp, path)
        _fsync_folder(path.parent)


def create_file_atomic(path: Path, data: bytes) -> bool:
    """Create ``path`` holding ``data`` unless it exists; return True when this call created it.

    Readers never see a partial file: the bytes are written under a temporary name, then hard-linked to ``path``,
    which fails when ``path`` exists, atomically on NFS and Lustre too. A link whose success reply was lost on a
    network file system shows up as a second link of the temporary. Where hard links are not supported (some FUSE
    and SMB mounts) the file is created with ``O_CREAT | O_EXCL`` instead.

    Raises:
        CacheError: The file cannot be written (disk full, permissions); no partial file is left behind.
    """
    path = Path(path)
    with _temporary(path) as temp:
        _write_new(temp, data)
        try:
            os.link(temp, path)
            created = True
        except FileExistsError:
            created = os.stat(temp).st_nlink == 2
        except OSError:
            created = _create_exclusive(path, data)
        _remove_quietly(temp)
        if created:
            _fsync_folder(path.parent)
    return created


@contextmanager
def _temporary(path: Path) -> Iterator[Path]:
    """The temporary name to write ``path`` under (its folder created); removed again when the block fails.

    Raises:
        CacheError: An ``OSError`` in the block (disk full, permissions), naming ``path``.
    """
    temp = temp_path_for(path)
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        yield temp
    except OSError as exc:
        _remove_quietly(temp)
        raise _write_error(path, exc) from exc
    except BaseException:
        _remove_quietly(temp)
        raise


def _create_exclusive(path: Path, data: bytes) -> bool:
    try:
        _write_new(path, data)
    except FileExistsError:
        return False
    except BaseException:
        _remove_quietly(path)  # O_EXCL succeeded, so the partial file is ours
        raise
    return True


def _write_new(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
    try:
        view = memoryview(data)
        while view:
            view = view[os.write(fd, view) :]
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_error(path: Path, exc: OSError) -> CacheError:
    return CacheError(
        f"{path}: cannot write the file ({exc.strerror or exc}). Free disk space or fix permissions, then run "
        "again: finished images are kept."
    )


def _remove_quietly(path: Path) -> None:
    # Cleanup must not replace the error being reported (unlink fails too when the folder is not a folder).
    try:
        path.unlink(missing_ok=True)
    except OSError:
        pass


def _fsync_folder(folder: Path) -> None:
    # Makes the rename itself survive a power cut; not every system can open a folder, which is fine.
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)
