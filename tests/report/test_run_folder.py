import os
import subprocess
import sys

import pytest

from pipeline.errors import ConfigError
from pipeline.report.run_folder import RunFolder, next_free


def test_files_appear_only_when_complete(tmp_path):
    final = tmp_path / "run"
    with RunFolder(final) as temp:
        (temp / "a.txt").write_text("a")
        assert not final.exists()
    assert (final / "a.txt").read_text() == "a"
    with pytest.raises(RuntimeError), RunFolder(tmp_path / "broken") as temp:
        (temp / "a.txt").write_text("a")
        raise RuntimeError("interrupted")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["run"]


def test_name_taken_meanwhile_moves_a_default_name_and_refuses_an_explicit_one(tmp_path):
    final = tmp_path / "run"
    folder = RunFolder(final, movable=True)
    with folder as temp:
        (temp / "mine.txt").write_text("x")
        final.mkdir()  # another run finished first
    assert folder.final == tmp_path / "run_2" and (tmp_path / "run_2" / "mine.txt").is_file()
    other = tmp_path / "explicit"
    with pytest.raises(ConfigError, match="was created by another run meanwhile"), RunFolder(other) as temp:
        other.mkdir()
    assert next_free(final) == tmp_path / "run_3"


def test_temporary_folders_of_dead_runs_are_removed(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"], capture_output=True, text=True)
    orphan = tmp_path / f".run.tmp-{int(dead.stdout)}"
    orphan.mkdir()
    live = tmp_path / f".run.tmp-{os.getppid()}"
    live.mkdir()
    with RunFolder(tmp_path / "run"):
        pass
    assert not orphan.exists() and live.exists()
