import errno
import os

import pytest

from pipeline.cache import atomic
from pipeline.errors import CacheError


def test_temporary_names_say_who_writes_them(tmp_path):
    temp = atomic.temp_path_for(tmp_path / "img_0000.h5")
    assert temp.parent == tmp_path and temp.name.startswith(".img_0000.h5.tmp-")
    assert atomic.temp_writer(temp) == (atomic.pid_space(), os.getpid())
    assert atomic.temp_writer(tmp_path / ".img_0000.h5.tmp-4242-0badf00d") == (None, 4242)  # an older version's
    assert atomic.temp_writer(tmp_path / "img_0000.h5") is None
    assert atomic.pid_space().startswith(atomic.host_name())


def test_create_file_atomic_creates_once(tmp_path):
    path = tmp_path / "sub" / "settings.json"
    assert atomic.create_file_atomic(path, b"first")
    assert not atomic.create_file_atomic(path, b"second")
    assert path.read_bytes() == b"first" and sorted(p.name for p in path.parent.iterdir()) == ["settings.json"]


def test_create_file_atomic_without_hard_links(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    path = tmp_path / "claim.json"
    assert atomic.create_file_atomic(path, b"mine")
    assert not atomic.create_file_atomic(path, b"yours")
    assert path.read_bytes() == b"mine" and [p.name for p in tmp_path.iterdir()] == ["claim.json"]


def test_create_file_atomic_on_a_full_disk_leaves_nothing(tmp_path, monkeypatch):
    def full(fd):
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(CacheError, match="claim.json: cannot write the file \\(No space left on device\\)"):
        atomic.create_file_atomic(tmp_path / "claim.json", b"mine")
    assert list(tmp_path.iterdir()) == []
