import os
import subprocess
import sys
from pathlib import Path

import pytest

from pipeline.errors import ConfigError
from pipeline.report.run_folder import RUN_MARKER, RunFolder, check_out_folder, is_run_folder, next_free


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
        (final / "theirs.txt").write_text("y")
    assert folder.final == tmp_path / "run_2" and (tmp_path / "run_2" / "mine.txt").is_file()
    other = tmp_path / "explicit"
    with pytest.raises(ConfigError, match="was created by another run meanwhile"), RunFolder(other) as temp:
        other.mkdir()
        (other / "theirs.txt").write_text("y")
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


def test_a_run_folder_carries_its_marker_and_only_run_folders_are_replaced(tmp_path):
    final = tmp_path / "run"
    with RunFolder(final) as temp:
        (temp / "metrics.json").write_text("{}")
    assert (final / RUN_MARKER).is_file() and is_run_folder(final)
    with pytest.raises(ConfigError, match="already exists. Pass another --out, or --overwrite"):
        check_out_folder(final, overwrite=False)
    with RunFolder(final, overwrite=True) as temp:
        (temp / "metrics.json").write_text('{"new": 1}')
    assert (final / "metrics.json").read_text() == '{"new": 1}'


def test_an_old_run_folder_without_marker_is_recognised_only_by_run_files_alone(tmp_path):
    old = tmp_path / "old"
    (old / "model").mkdir(parents=True)
    for name in ("metrics.json", "submission.csv", "report.html"):
        (old / name).write_text("x")
    assert is_run_folder(old)
    check_out_folder(old, overwrite=True)
    (old / "notes.txt").write_text("mine")
    assert not is_run_folder(old)


@pytest.mark.parametrize("kind", ["foreign", "cache", "data", "file"])
def test_overwrite_refuses_what_is_not_a_run_folder_and_keeps_it(tmp_path, kind):
    out = tmp_path / "out"
    if kind == "file":
        out.write_text("hello")
    else:
        out.mkdir()
        name = {"foreign": "notes.txt", "cache": "settings.json", "data": "train_data"}[kind]
        (out / name).mkdir() if kind == "data" else (out / name).write_text("hello")
    expected = {"foreign": r"holds files this project did not write \(notes.txt\)", "cache": "is a feature cache",
                "data": "is a data folder", "file": "is a file, not a run folder"}[kind]
    with pytest.raises(ConfigError, match=expected) as caught:
        check_out_folder(out, overwrite=True)
    assert "\n" not in str(caught.value) and f"'{out}'" in str(caught.value)
    with pytest.raises(ConfigError), RunFolder(out, overwrite=True):
        pass
    assert out.exists() and (out.is_file() or any(out.iterdir()))


@pytest.mark.parametrize("out", [".", "..", "sub/.."])
def test_overwrite_refuses_the_current_folder_and_its_parents(tmp_path, monkeypatch, out):
    (tmp_path / "sub").mkdir()
    monkeypatch.chdir(tmp_path / "sub" if out == ".." else tmp_path)
    with pytest.raises(ConfigError, match="is the current folder or contains it"):
        check_out_folder(Path(out), overwrite=True)
    with pytest.raises(ConfigError, match="is the current folder or contains it"), RunFolder(Path(out), True):
        pass


def test_an_existing_empty_folder_is_used(tmp_path):
    (tmp_path / "empty").mkdir()
    check_out_folder(tmp_path / "empty", overwrite=False)
    with RunFolder(tmp_path / "empty") as temp:
        (temp / "metrics.json").write_text("{}")
    assert (tmp_path / "empty" / "metrics.json").is_file()
