"""Who runs on a CPU's cores, batch by batch: the model's threads or the decoding workers (extraction on a CPU).

On a GPU host the model runs on the device and the workers have the cores; on a CPU they share them, and OpenMP
threads that lose their core mid-batch stall the others at every barrier. Two policies, both by the tiles that wait
behind the batch about to run:

- :class:`ThreadShare`: while the workers are behind, the model leaves them cores (fewer threads).
- :class:`WorkerPause`: while they are ahead, they pause during the forward pass and decode between passes.
"""

from __future__ import annotations

import os
import time

import numpy as np
import torch

MAX_WAIT_SHARE = 0.25  # the model waits for the workers at most this share of a forward pass ...
RETRY_BATCHES = 8  # ... else runs at once (ThreadShare) for this many batches before it waits again
POLL_SECONDS = 0.0005  # a paused worker looks at the flag this often
MAX_PAUSE_SECONDS = 30.0  # and never pauses longer at a time (a flag left set costs speed, never the run)


class ThreadShare:
    """The model's OpenMP threads on a CPU: every core while tiles wait, one per idle core while the workers are behind.

    The decoding workers and the model share the CPU. When the next batch is not ready, the workers are decoding:
    a model on every core then fights them for the cores, and OpenMP threads that lose theirs stall the others at
    each barrier. On the 2-core machine with one worker and a model that costs nothing, the main process spent twice
    the CPU per image with two threads as with one (22.6-24.2 ms against 10.1-11.0), its normalising spinning at
    barriers. So the forward pass of a batch taken while fewer than ``batch_size`` tiles wait behind it runs on the
    cores the workers leave (at least one), and on all of them while the workers are ahead.

    Args:
        workers: Decoding worker processes (0: no share is given up).
        batch_size: Tiles per batch.
    """

    def __init__(self, workers: int, batch_size: int) -> None:
        self.all = torch.get_num_threads()
        self.fewer = max(1, self.all - workers)
        self.batch_size = batch_size
        self.now = self.all
        self.reduced = 0  # batches run on fewer threads
        self.batches = 0

    def before_batch(self, waiting: int) -> None:
        """Set the threads for the next forward pass, given the tiles ready behind it."""
        wanted = self.fewer if waiting < self.batch_size else self.all
        self.batches += 1
        self.reduced += wanted < self.all
        if wanted != self.now:
            torch.set_num_threads(wanted)
            self.now = wanted

    def restore(self) -> None:
        """Give the process its threads back."""
        if self.now != self.all:
            torch.set_num_threads(self.all)
            self.now = self.all


class WorkerPause:
    """Decoding workers that pause while the model runs a batch on every core, and a model that waits for them between.

    On the 2-core machine here, ViT-B on one-tile images ran end to end at 80% of its model-only rate while the data
    side of those images cost 6% of the model's CPU: a worker decoding mid-batch takes a core from one of the model's
    two OpenMP threads, and the other waits for it at the next barrier, so the model loses about twice the worker's
    time. So, on a CPU with workers: while a whole batch waits behind the one about to run, the workers pause during its
    forward pass (they finish the image in hand, then wait before the next); between passes the model waits for them
    until a batch waits behind the next one. The model then idles for the workers' time per batch instead of losing
    twice that to stalls. When the workers are behind (the wait passes :data:`MAX_WAIT_SHARE` of a forward pass), the
    model stops waiting: the batch runs at once on the cores the workers leave (:class:`ThreadShare`), and waiting is
    tried again after :data:`RETRY_BATCHES` batches.

    The flag lives in shared memory made before the workers start; the main process sets it around a forward pass
    (:meth:`before_batch`, :meth:`after_batch`), a worker reads it before each item (:meth:`wait`).

    Args:
        enabled: False (a GPU, no worker): nothing pauses and the model never waits.
        batch_size: Tiles per batch.
    """

    def __init__(self, enabled: bool, batch_size: int) -> None:
        self.enabled, self.batch_size = enabled, batch_size
        self.flag = torch.zeros(1, dtype=torch.int32)
        if enabled:
            self.flag.share_memory_()
        self._view: tuple[int, np.ndarray] | None = None  # (pid, numpy view of flag): indexing a tensor is slow
        self.forward_seconds: float | None = None  # the last paused forward pass's wall time (not the first: compile)
        self._passes = 0
        self._started: float | None = None
        self._waiting_since: float | None = None
        self._skip = 0
        self.paused = 0  # batches run with the workers paused
        self.gave_up = 0  # waits that passed MAX_WAIT_SHARE
        self.waited = 0.0  # seconds the model waited for the workers

    def _flag(self) -> np.ndarray:
        if self._view is None or self._view[0] != os.getpid():
            self._view = (os.getpid(), self.flag.numpy())
        return self._view[1]

    def go(self, waiting: int) -> bool:
        """In the main process: whether to run the next batch now, given the tiles ready behind it."""
        if not self.enabled or waiting >= self.batch_size or self._skip or self.forward_seconds is None:
            return True
        now = time.monotonic()
        if self._waiting_since is None:
            self._waiting_since = now
        if now - self._waiting_since < MAX_WAIT_SHARE * self.forward_seconds:
            return False
        self.gave_up += 1
        self._skip = RETRY_BATCHES
        return True

    def before_batch(self, waiting: int) -> None:
        """In the main process, just before a forward pass: pause the workers if a whole batch waits behind it."""
        if self._waiting_since is not None:
            self.waited += time.monotonic() - self._waiting_since
            self._waiting_since = None
        self._skip = max(0, self._skip - 1)
        hold = self.enabled and waiting >= self.batch_size
        self.paused += hold
        self._started = time.monotonic() if hold else None
        if self.enabled:
            self._flag()[0] = int(hold)

    def after_batch(self) -> None:
        """In the main process, once the forward pass is done: the workers go on."""
        if self.enabled:
            self._flag()[0] = 0
        if self._started is not None:
            self._passes += 1
            if self._passes > 1:  # the first paused pass may have compiled the model
                self.forward_seconds = time.monotonic() - self._started
            self._started = None

    def wait(self) -> None:
        """In a worker, before each item: wait while the model runs a batch on every core."""
        if not self.enabled:
            return
        flag = self._flag()
        deadline = time.monotonic() + MAX_PAUSE_SECONDS
        while flag[0] and time.monotonic() < deadline:
            time.sleep(POLL_SECONDS)
