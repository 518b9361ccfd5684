import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from pipeline.cache import atomic, claims
from pipeline.cache.claims import (
    CLAIMS_DIR,
    ShardClaim,
    dead_temporaries,
    live_claims,
    pid_alive,
    process_start,
    remove_dead_temporaries,
)
from pipeline.errors import CacheError
from tests.conftest import dead_pid

KEY = "all-1of2"


@pytest.fixture(autouse=True)
def _fast(monkeypatch):
    monkeypatch.setattr(claims, "POLL_S", 0.02)


def _plant(folder: Path, age_s: float = 0.0, **content) -> Path:
    """A claim on shard 1/2 as another process left it, its mtime ``age_s`` seconds ago."""
    path = folder / CLAIMS_DIR / f"{KEY}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps({"host": "other", "pid": 4242, "pid_space": "other~1", "token": "theirs",
                                "shard": "1/2", **content}))
    stamp = time.time() - age_s
    os.utime(path, (stamp, stamp))
    return path


def _holder(folder: Path) -> dict:
    return json.loads((folder / CLAIMS_DIR / f"{KEY}.json").read_text())


def test_a_claim_is_exclusive_and_released(tmp_path):
    with ShardClaim(tmp_path, KEY, "1/2") as claim:
        holder = _holder(tmp_path)
        assert (holder["pid"], holder["host"], holder["shard"], holder["token"]) == (
            os.getpid(), atomic.host_name(), "1/2", claim.token)
        assert [c["key"] for c in live_claims(tmp_path)] == [KEY]
        with ShardClaim(tmp_path, "all-0of2", "0/2"):  # another shard runs at the same time
            assert len(live_claims(tmp_path)) == 2
    assert live_claims(tmp_path) == [] and not (tmp_path / CLAIMS_DIR / f"{KEY}.json").exists()


def test_a_live_claim_makes_the_next_one_wait(tmp_path, caplog):
    _plant(tmp_path)  # on another host, refreshed just now
    started = time.monotonic()
    with pytest.raises(CacheError, match=rf"Shard 1/2 of {tmp_path} is claimed by another extraction \(host other, "
                                         r"pid 4242\) for more than 0 s. Wait for it to finish, or stop it, then run "
                                         "again."):
        with ShardClaim(tmp_path, KEY, "1/2", timeout=0.3):
            pass
    assert time.monotonic() - started >= 0.3
    assert "Another extraction (host other, pid 4242) is embedding shard 1/2" in caplog.text
    assert _holder(tmp_path)["token"] == "theirs"  # left alone


def test_the_claim_of_a_dead_process_on_this_host_is_taken_over(tmp_path, caplog):
    pid = dead_pid()
    _plant(tmp_path, host=atomic.host_name(), pid=pid, pid_space=atomic.pid_space())
    with ShardClaim(tmp_path, KEY, "1/2", timeout=5) as claim:
        assert _holder(tmp_path)["token"] == claim.token
    assert f"Taking over shard 1/2 of {tmp_path}: its process (pid {pid}) is gone." in caplog.text


def test_a_pid_given_to_a_later_process_is_not_the_holder(tmp_path):
    start = process_start(os.getpid())
    if start is None:
        pytest.skip("needs /proc")
    assert pid_alive(os.getpid(), start) and not pid_alive(os.getpid(), start + 1)
    assert not pid_alive(0) and not pid_alive(-1)  # a claim without a pid
    _plant(tmp_path, pid=os.getpid(), pid_space=atomic.pid_space(), pid_start=start + 1)
    with ShardClaim(tmp_path, KEY, "1/2", timeout=5) as claim:
        assert _holder(tmp_path)["token"] == claim.token


def test_a_zombie_is_dead():
    if process_start(os.getpid()) is None:
        pytest.skip("needs /proc")
    child = subprocess.Popen([sys.executable, "-c", "pass"])
    deadline = time.monotonic() + 30
    while Path(f"/proc/{child.pid}/stat").read_text().split(") ")[1][0] != "Z" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert not pid_alive(child.pid)  # exited, not yet reaped by its parent
    child.wait()
    assert not pid_alive(child.pid)


def test_a_claim_of_another_host_unrefreshed_for_long_is_taken_over(tmp_path, caplog):
    _plant(tmp_path, age_s=claims.STALE_AFTER_S + 60)
    with ShardClaim(tmp_path, KEY, "1/2", timeout=5) as claim:
        assert _holder(tmp_path)["token"] == claim.token
    assert "its holder (host other, pid 4242) has not refreshed it for 11 min" in caplog.text


def test_staleness_by_our_own_clock_when_the_file_server_clock_is_ahead(tmp_path, monkeypatch, caplog):
    monkeypatch.setattr(claims, "STALE_AFTER_S", 0.3)
    _plant(tmp_path, age_s=-3600)  # an mtime an hour in the future: its age by the file's clock never grows
    started = time.monotonic()
    with ShardClaim(tmp_path, KEY, "1/2", timeout=10) as claim:
        assert _holder(tmp_path)["token"] == claim.token
    assert time.monotonic() - started >= 0.3
    assert "waiting for it to finish" in caplog.text and "Taking over shard 1/2" in caplog.text


def test_a_claim_of_an_earlier_attempt_of_the_same_torchrun_job_is_dead(tmp_path, caplog):
    _plant(tmp_path, job="job-7")  # another host, refreshed just now
    with pytest.raises(CacheError):
        with ShardClaim(tmp_path, KEY, "1/2", job="job-8", timeout=0.1):
            pass
    with ShardClaim(tmp_path, KEY, "1/2", job="job-7", timeout=5) as claim:
        assert _holder(tmp_path)["token"] == claim.token
    assert "it belongs to an earlier attempt of this torchrun job" in caplog.text


def test_the_holder_refreshes_its_claim(tmp_path, monkeypatch):
    monkeypatch.setattr(claims, "HEARTBEAT_S", 0.05)
    with ShardClaim(tmp_path, KEY, "1/2"):
        path = tmp_path / CLAIMS_DIR / f"{KEY}.json"
        os.utime(path, (0, 0))
        time.sleep(0.5)
        assert time.time() - path.stat().st_mtime < 5


def test_a_claim_taken_over_meanwhile_is_given_back(tmp_path):
    path = _plant(tmp_path, token="new")  # claimed by someone else after we judged the old holder dead
    claim = ShardClaim(tmp_path, KEY, "1/2")
    assert claim._take_over({"token": "old"}, "its process is gone")
    assert _holder(tmp_path)["token"] == "new" and [p.name for p in path.parent.iterdir()] == [path.name]


def test_leaving_never_removes_another_holders_claim(tmp_path):
    with ShardClaim(tmp_path, KEY, "1/2"):
        _plant(tmp_path, token="theirs")  # taken over while we were frozen
    assert _holder(tmp_path)["token"] == "theirs"


def test_only_temporaries_of_writers_that_are_gone_are_deleted(tmp_path):
    here, pid = atomic.pid_space(), dead_pid()
    folder = tmp_path / "train"
    folder.mkdir()
    names = {
        "dead": f".a.h5{atomic.TEMP_MARKER}{here}-{pid}-0badf00d",
        "old version, dead": f".b.h5{atomic.TEMP_MARKER}{pid}-0badf00d",
        "live": f".c.h5{atomic.TEMP_MARKER}{here}-{os.getpid()}-0badf00d",
        "other host, young": f".d.h5{atomic.TEMP_MARKER}node07~1-{os.getpid()}-0badf00d",
        "other host, old": f".e.h5{atomic.TEMP_MARKER}node07~1-{os.getpid()}-0badf00d",
    }
    for name in names.values():
        (folder / name).write_bytes(b"partial")
    old = time.time() - claims.STALE_AFTER_S - 60
    os.utime(folder / names["other host, old"], (old, old))
    gone = [names[k] for k in ("dead", "old version, dead", "other host, old")]
    assert [p.name for p in dead_temporaries(tmp_path)] == sorted(gone)
    assert remove_dead_temporaries(tmp_path) == 3
    assert sorted(p.name for p in folder.iterdir()) == sorted([names["live"], names["other host, young"]])


def test_live_claims_leave_out_dead_ones(tmp_path):
    _plant(tmp_path, host=atomic.host_name(), pid=dead_pid(), pid_space=atomic.pid_space())
    assert live_claims(tmp_path) == []
    _plant(tmp_path)
    assert [(c["key"], c["host"], c["pid"]) for c in live_claims(tmp_path)] == [(KEY, "other", 4242)]
