"""Injected faults: kill -9 at random moments, two runs at once, a full disk, an interrupted classify.py, and model
files that would run code. Nothing finished is lost and nothing half-written is ever trusted.
"""

import ast
import dataclasses
import errno
import importlib.util
import json
import os
import re
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline import cache
from pipeline.cache import atomic, store
from pipeline.cache.claims import ShardClaim, live_claims
from pipeline.classify.classifier import Classifier
from pipeline.classify.settings import ClassificationSettings
from pipeline.cli.extract import main as extract_main
from pipeline.data.tiling import TilingSettings
from pipeline.errors import CacheError, ModelLoadError
from pipeline.extract.run import run_extraction
from pipeline.extract.settings import ExtractionSettings
from pipeline.heads.persistence import load_head
from pipeline.report.run import classify_and_write
from tests.conftest import TINY_SIZE, dead_pid, write_fake_cache

ROOT = Path(__file__).resolve().parents[2]
TILING = TilingSettings(tile_size=TINY_SIZE)


def _kill_points_module():
    spec = importlib.util.spec_from_file_location("kill_points", ROOT / "benchmarks" / "kill_points.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    spec.loader.exec_module(module)
    return module


def _settings(root, out, **overrides):
    values = dict(data_dir=root, out_dir=out, tiling=TILING, workers=0, batch_size=3, precision="fp32",
                  progress=False)
    values.update(overrides)
    return ExtractionSettings(**values)


def _snapshot(cache_dir):
    return {p.relative_to(cache_dir): store.read_image_features(p) for p in cache_dir.rglob("*.h5")}


def _assert_same_cache(got, reference):
    assert sorted(got) == sorted(reference)
    for name, ref in reference.items():
        np.testing.assert_array_equal(got[name].coords, ref.coords)
        np.testing.assert_allclose(got[name].features, ref.features, atol=1e-5, rtol=0)
        assert got[name].attrs == ref.attrs


def _temporaries(folder):
    return [p for p in Path(folder).rglob("*") if store.TEMP_MARKER in p.name]


# ---------------------------------------------------------------- kill -9 and restart


@pytest.mark.slow  # three extract.py processes
def test_random_kill_points_then_restart_give_the_uninterrupted_cache(tmp_path):
    kill_points = _kill_points_module()  # benchmarks/kill_points.py runs the same check with 20+ kill points
    result = kill_points.run(n_kills=2, seed=3, n_images=6, workdir=tmp_path, kills_per_round=(2, 2),
                             modes=("lock", "progress"), in_process_reference=True, log=lambda line: None)
    assert result.problems == []
    assert (result.kill_points, result.rounds, result.equal_rounds) == (2, 1, 1)
    assert result.n_files == 6 and result.max_feature_diff <= 1e-5


def test_what_a_killed_run_leaves_behind_is_cleaned_and_finished(make_data, tmp_path, tiny_model):
    root = make_data(n_train=4, n_test=1)
    reference = run_extraction(_settings(root, tmp_path / "ref"), tiny_model)
    settings = _settings(root, tmp_path / "killed")
    cache_dir = run_extraction(settings, tiny_model).cache_dir
    # the state of a run killed mid-way: two files not yet renamed into place (one half-written, one of an older
    # version without the host in its name), a half-written settings file, and a claim of a process that is gone
    for name in ("img_0001.h5", "img_0002.h5"):
        (cache_dir / "train" / name).unlink()
    pid, space = dead_pid(), atomic.pid_space()
    half_written = cache_dir / "train" / f".img_0001.h5{store.TEMP_MARKER}{space}-{pid}-0badf00d"
    half_written.write_bytes(b"\x89HDF\r\n\x1a\n" + b"x" * 99)
    (cache_dir / "train" / f".img_0002.h5{store.TEMP_MARKER}{pid}-0badf00d").write_bytes(b"\x89HDF")
    (cache_dir / f".settings.json{store.TEMP_MARKER}{space}-{pid}-0badf00d").write_text('{"model": ')
    claim = cache_dir / ".claims" / f"{cache.shard_key('all', 0, 1)}.json"
    claim.parent.mkdir(exist_ok=True)
    claim.write_text(json.dumps({"host": atomic.host_name(), "pid": pid, "pid_space": space, "token": "old"}))
    resumed = run_extraction(settings, tiny_model)
    assert (resumed.n_embedded, resumed.n_reused) == (2, 3)
    assert _temporaries(tmp_path / "killed") == [] and not claim.exists()
    _assert_same_cache(_snapshot(cache_dir), _snapshot(reference.cache_dir))


# ---------------------------------------------------------------- concurrent runs


def test_a_second_run_of_the_same_shard_waits_then_finds_the_work_done(make_data, tmp_path, tiny_model, caplog):
    root = make_data(n_train=2, n_test=1)
    settings = _settings(root, tmp_path / "f")
    cache_dir = tmp_path / "f" / cache.data_key(root) / cache.cache_name(tiny_model.slug, TILING, "fp32")
    results = []
    with ShardClaim(cache_dir, cache.shard_key("all", 0, 1)):  # another extraction holds the shard
        assert [c["pid"] for c in live_claims(cache_dir)] == [os.getpid()]
        worker = threading.Thread(target=lambda: results.append(run_extraction(settings, tiny_model)))
        worker.start()
        time.sleep(1.0)
        assert worker.is_alive() and not list(cache_dir.rglob("*.h5"))  # waiting, nothing written
        assert "is embedding shard 0/1 of" in caplog.text and "waiting for it to finish" in caplog.text
    worker.join(timeout=60)
    assert results and results[0].n_embedded == 3
    assert live_claims(cache_dir) == []


def test_claim_timeout_gives_a_clear_message(tmp_path):
    with ShardClaim(tmp_path, "all-1of2", "1/2"):
        with pytest.raises(CacheError, match=rf"Shard 1/2 of {tmp_path} is claimed by another extraction \(host "
                                             rf"{atomic.host_name()}, pid {os.getpid()}\) for more than 0 s. Wait for "
                                             "it to finish, or stop it, then run again."):
            with ShardClaim(tmp_path, "all-1of2", "1/2", timeout=0.1):
                pass


@pytest.mark.slow  # two extract.py processes
def test_two_extract_processes_started_at_once(make_data, tmp_path, tiny_vit_dir):
    root = make_data(n_train=10, n_test=2, size=(160, 128))
    common = ["--data", str(root), "--model", str(tiny_vit_dir), "--tile-size", "32", "--batch-size", "1",
              "--workers", "1", "--no-progress", "-q"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    argv = [sys.executable, str(ROOT / "extract.py"), *common, "--out", str(tmp_path / "shared")]
    processes = [subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE)
                 for _ in range(2)]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], outputs
    printed = [out.decode() for out, _ in outputs]
    embedded = sorted(int(re.search(r"(\d+) embedded", text).group(1)) for text in printed)
    reused = sorted(int(re.search(r"(\d+) up to date", text).group(1)) for text in printed)
    assert embedded == [0, 12] and reused == [0, 12]  # one run embedded every image once, the other none
    assert extract_main([*common, "--out", str(tmp_path / "ref")]) == 0
    (shared,) = cache.find_caches(tmp_path / "shared")
    (reference,) = cache.find_caches(tmp_path / "ref")
    _assert_same_cache(_snapshot(shared), _snapshot(reference))
    assert _temporaries(shared) == []


def test_a_cache_folder_that_cannot_be_created(tmp_path):
    (tmp_path / "features").write_text("a file where the cache root should be")
    with pytest.raises(CacheError, match="cannot create the claim file of shard 0/1 .*Choose a writable --out"):
        with ShardClaim(tmp_path / "features" / "phikon_t224", "all-0of1"):
            pass


def test_a_file_system_without_hard_links_still_gets_exclusive_claims(tmp_path, monkeypatch):
    def no_links(src, dst):
        raise OSError(errno.EPERM, "Operation not permitted")

    monkeypatch.setattr(os, "link", no_links)
    with ShardClaim(tmp_path, "all-0of1"):
        assert [c["pid"] for c in live_claims(tmp_path)] == [os.getpid()]
        with pytest.raises(CacheError, match="is claimed by another extraction"):
            with ShardClaim(tmp_path, "all-0of1", timeout=0):
                pass
    assert live_claims(tmp_path) == [] and _temporaries(tmp_path) == []


# ---------------------------------------------------------------- full disk


def _fail_for(marker: str, real):
    """A wrapper of an os function that fails with ENOSPC on the file whose name contains ``marker``."""

    def failing(fd, *args):
        if marker in os.readlink(f"/proc/self/fd/{fd}"):
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(fd, *args)

    return failing


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_disk_full_half_way_through_a_file(tmp_path, monkeypatch):
    real_write = os.write

    def half_then_full(fd, data):
        if store.TEMP_MARKER in os.readlink(f"/proc/self/fd/{fd}"):
            real_write(fd, bytes(data[: len(data) // 2]))
            raise OSError(errno.ENOSPC, "No space left on device")
        return real_write(fd, data)

    monkeypatch.setattr(os, "write", half_then_full)
    path = tmp_path / "train" / "img_0000.h5"
    with pytest.raises(CacheError) as info:
        store.write_image_features(path, np.ones((50, 64)), np.zeros((50, 2)), np.ones(50), {"image_id": "x"})
    assert str(info.value) == (
        f"{path}: cannot write the file (No space left on device). Free disk space or fix permissions, then run "
        "again: finished images are kept."
    )
    assert list((tmp_path / "train").iterdir()) == []  # no partial file, no temporary


def test_a_real_write_failure_leaves_nothing_and_the_process_healthy(tmp_path):
    # RLIMIT_FSIZE makes the kernel refuse writes past 64 KiB (EFBIG), like a disk that fills up mid-file. HDF5 itself
    # crashes the process when its own writes fail; files are built in memory, so only a plain write can fail.
    script = f"""
import resource, signal, sys
import numpy as np
sys.path.insert(0, {str(ROOT)!r})
from pathlib import Path
from pipeline.cache import atomic, store
from pipeline.errors import CacheError
signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
folder = Path({str(tmp_path)!r})
resource.setrlimit(resource.RLIMIT_FSIZE, (65536, resource.getrlimit(resource.RLIMIT_FSIZE)[1]))
for attempt in range(3):
    try:
        store.write_image_features(folder / "big.h5", np.ones((200, 768)), np.zeros((200, 2)), np.ones(200), {{}})
    except CacheError as exc:
        print(exc)
store.write_image_features(folder / "small.h5", np.ones((2, 8)), np.zeros((2, 2)), np.ones(2), {{}})
print("healthy", sorted(p.name for p in folder.iterdir()))
"""
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert len(lines) == 4 and all("big.h5: cannot write the file (File too large)" in line for line in lines[:3])
    assert lines[3] == "healthy ['small.h5']"
    assert "Traceback" not in done.stderr


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_disk_full_during_extraction_then_a_later_run_finishes(make_data, tmp_path, tiny_vit_dir, capsys, monkeypatch):
    root = make_data(n_train=5, n_test=0)
    argv = ["--data", str(root), "--model", str(tiny_vit_dir), "--out", str(tmp_path / "f"), "--tile-size", "32",
            "--workers", "0", "--batch-size", "2", "--precision", "fp32", "--no-progress", "-q"]
    with monkeypatch.context() as patch:
        patch.setattr(os, "fsync", _fail_for(f".img_0002.h5{store.TEMP_MARKER}", os.fsync))
        assert extract_main(argv) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "Traceback" not in err
    assert "img_0002.h5: cannot write the file (No space left on device). Free disk space" in err
    (cache_dir,) = cache.find_caches(tmp_path / "f")
    assert not (cache_dir / "train" / "img_0002.h5").exists() and _temporaries(cache_dir) == []
    kept = {p.name for p in (cache_dir / "train").glob("*.h5")}
    assert {"img_0000.h5", "img_0001.h5"} <= kept
    assert extract_main(argv) == 0  # space is back: only the missing images are embedded
    assert f"{5 - len(kept)} embedded" in capsys.readouterr().out
    assert extract_main([*argv[:5], str(tmp_path / "ref"), *argv[6:]]) == 0
    _assert_same_cache(_snapshot(cache_dir), _snapshot(cache.find_caches(tmp_path / "ref")[0]))


@pytest.mark.skipif(not Path("/proc/self/fd").is_dir(), reason="needs /proc")
def test_disk_full_while_writing_settings(tmp_path, monkeypatch):
    (tmp_path / cache.SETTINGS_FILE).write_text('{"model": "old"}')
    monkeypatch.setattr(os, "fsync", _fail_for(store.TEMP_MARKER, os.fsync))
    with pytest.raises(CacheError, match="settings.json: cannot write the file \\(No space left on device\\)"):
        cache.write_json(tmp_path / cache.SETTINGS_FILE, {"model": "new"})
    assert [p.name for p in tmp_path.iterdir()] == [cache.SETTINGS_FILE]
    assert cache.read_settings(tmp_path) == {"model": "old"}  # the previous file is untouched


# ---------------------------------------------------------------- interrupted classify.py


@pytest.mark.parametrize("fault", [RuntimeError("disk gone"), KeyboardInterrupt()])
def test_interrupted_classify_leaves_no_run_folder(tmp_path, monkeypatch, fault):
    cache_dir, _ = write_fake_cache(tmp_path, ["a", "b"] * 4, n_test=2, dim=8)

    def save_then_fail(self, folder):
        Path(folder).mkdir(parents=True)
        (Path(folder) / "head.json").write_text("{")  # half-way through the model files
        raise fault

    monkeypatch.setattr(Classifier, "save", save_then_fail)
    settings = ClassificationSettings(features=cache_dir, folds=2, head="logreg", runs_root=tmp_path / "runs",
                                      pictures=False)
    with pytest.raises(type(fault)):
        classify_and_write(settings)
    assert list((tmp_path / "runs").iterdir()) == []  # neither the run folder nor its hidden temporary


def test_interrupted_overwrite_keeps_the_previous_run(tmp_path, monkeypatch):
    cache_dir, _ = write_fake_cache(tmp_path, ["a", "b"] * 4, n_test=2, dim=8)
    settings = ClassificationSettings(features=cache_dir, folds=2, head="logreg", out=tmp_path / "run",
                                      pictures=False)
    classify_and_write(settings)
    before = {p.relative_to(tmp_path / "run"): p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    def interrupted(self, folder):
        raise KeyboardInterrupt

    monkeypatch.setattr(Classifier, "save", interrupted)
    with pytest.raises(KeyboardInterrupt):
        classify_and_write(dataclasses.replace(settings, overwrite=True))
    after = {p.relative_to(tmp_path / "run"): p.read_bytes() for p in (tmp_path / "run").rglob("*") if p.is_file()}
    assert after == before
    assert sorted(p.name for p in tmp_path.iterdir() if p.name.startswith(".")) == []


# ---------------------------------------------------------------- trust


class _Payload:
    """Unpickling this object would create a file: proof that code from a model file ran."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        return (Path.touch, (self.marker,))


def test_a_model_file_carrying_code_is_refused_without_running_it(tmp_path):
    cache_dir, _ = write_fake_cache(tmp_path, ["a", "b"] * 4, n_test=0, dim=8)
    _, run_dir = classify_and_write(ClassificationSettings(features=cache_dir, folds=2, head="logreg",
                                                           runs_root=tmp_path / "runs", pictures=False))
    model = run_dir / "model"
    marker = tmp_path / "code-ran"
    with open(model / "head.npz", "wb") as handle:  # a tampered file with a pickled object array
        np.savez(handle, classes=np.array([_Payload(marker)], dtype=object))
    with pytest.raises(ModelLoadError, match="Cannot read a saved head from .*allow_pickle"):
        load_head(model)
    with pytest.raises(ModelLoadError):
        Classifier.load(model)
    assert not marker.exists()


def test_every_torch_load_is_weights_only():
    calls = []
    for path in (ROOT / "pipeline").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and ast.unparse(node.func) == "torch.load":
                keywords = {k.arg: ast.unparse(k.value) for k in node.keywords}
                calls.append((path.name, keywords.get("weights_only")))
    assert calls and all(value == "True" for _, value in calls), calls
