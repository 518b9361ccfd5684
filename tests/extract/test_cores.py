import multiprocessing
import time

import pytest
import torch

from pipeline.extract import cores
from pipeline.extract.cores import ThreadShare, WorkerPause


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(before)


def test_thread_share_gives_the_workers_their_cores_while_the_next_batch_is_not_ready(threads):
    share = ThreadShare(workers=1, batch_size=8)
    share.before_batch(waiting=3)  # the workers are behind: the model leaves them a core
    assert torch.get_num_threads() == 3
    share.before_batch(waiting=8)  # a whole batch waits: every core
    assert torch.get_num_threads() == 4
    share.before_batch(waiting=0)
    share.restore()
    assert torch.get_num_threads() == 4 and (share.reduced, share.batches) == (2, 3)


def test_thread_share_keeps_one_thread_and_changes_nothing_without_workers(threads):
    ThreadShare(workers=8, batch_size=8).before_batch(waiting=0)
    assert torch.get_num_threads() == 1
    torch.set_num_threads(4)
    share = ThreadShare(workers=0, batch_size=8)
    share.before_batch(waiting=0)
    assert torch.get_num_threads() == 4 and share.reduced == 0


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock(monkeypatch):
    fake = Clock()
    monkeypatch.setattr(cores.time, "monotonic", fake)
    return fake


def test_the_model_waits_for_a_second_batch_only_once_it_knows_a_forward_pass(clock):
    pause = WorkerPause(True, batch_size=8)
    assert pause.go(waiting=0)  # no forward pass timed yet: no wait
    for seconds in (30.0, 2.0):  # the first paused pass may compile: not taken as the pass's time
        pause.before_batch(waiting=8)
        assert pause.flag[0] == 1  # a whole batch waits behind: the workers pause
        clock.now += seconds
        pause.after_batch()
        assert pause.flag[0] == 0
    assert pause.forward_seconds == 2.0 and pause.paused == 2
    assert not pause.go(waiting=3)  # behind: the model waits ...
    clock.now += 0.4
    assert not pause.go(waiting=5)
    assert pause.go(waiting=8)  # ... until a batch waits behind the next
    pause.before_batch(waiting=8)
    assert pause.waited == pytest.approx(0.4)


def test_the_model_stops_waiting_for_workers_that_are_behind_and_tries_again_later(clock):
    pause = WorkerPause(True, batch_size=8)
    pause.forward_seconds = 2.0
    assert not pause.go(waiting=0)
    clock.now += cores.MAX_WAIT_SHARE * 2.0  # a quarter of a forward pass: run now, on the cores the workers leave
    assert pause.go(waiting=0) and pause.gave_up == 1
    for _ in range(cores.RETRY_BATCHES):
        assert pause.go(waiting=0)
        pause.before_batch(waiting=0)
        assert pause.flag[0] == 0  # the workers are behind: they are never paused
        pause.after_batch()
    assert not pause.go(waiting=0)  # then it waits again


def test_without_pausing_nothing_waits():
    pause = WorkerPause(False, batch_size=8)
    pause.forward_seconds = 1.0
    assert pause.go(waiting=0)
    pause.before_batch(waiting=100)
    assert not pause.flag.is_shared() and pause.flag[0] == 0 and pause.paused == 0
    started = time.monotonic()
    pause.wait()
    assert time.monotonic() - started < 0.1


def _paused_worker(pause, ready, out):
    ready.set()
    pause.wait()
    out.put("went on")


def test_a_worker_process_waits_while_the_model_runs_a_batch_on_every_core():
    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    pause = WorkerPause(True, batch_size=4)
    pause.before_batch(waiting=4)  # made before the worker starts, set before it looks
    ready, out = context.Event(), context.Queue()
    child = context.Process(target=_paused_worker, args=(pause, ready, out))
    child.start()
    try:
        assert ready.wait(30)
        time.sleep(0.3)
        assert out.empty()  # still paused
        pause.after_batch()
        assert out.get(timeout=30) == "went on"
    finally:
        pause.after_batch()
        child.join(10)
