"""Where feature files are encoded and written: one thread beside the model (default), or writer processes.

Building an HDF5 file costs a few milliseconds of CPU (h5py holds the GIL while it encodes: about 6 ms for a file of
30 attributes on the 2-core CPU here) and each file is flushed to disk (``fsync``). One thread wrote 120-160
files/s here and 250 files/s on a 16-core GPU host, where 1, 2 and 4 writer processes wrote 226-242 files/s (the
disk's flushes are the limit there) and an end-to-end run was no faster with them (1,368 tiles/s with 4 processes,
1,410 with the thread). So the default is the thread; ``--write-processes N`` moves encoding out of the main
process for hosts where it, not the disk, is the limit. Writer processes start with ``spawn``, so they inherit
no CUDA context, and each pays for importing the main module once.

Pending writes are bounded, so memory stays flat when the disk is slower than the model; a write that fails
(disk full, permissions) re-raises its :class:`~pipeline.errors.CacheError` in the caller at the next
:meth:`FeatureWriter.submit` or at :meth:`FeatureWriter.finish`.
"""

from __future__ import annotations

import multiprocessing
from collections import deque
from collections.abc import Callable
from concurrent.futures import Executor, Future, ProcessPoolExecutor, ThreadPoolExecutor
from pathlib import Path

import numpy as np

from pipeline.cache import store
from pipeline.errors import ConfigError


class FeatureWriter:
    """Write feature files off the model's thread, keeping at most ``max_pending`` writes in flight.

    Args:
        processes: 0 for one thread in this process, else the number of writer processes.
        max_pending: Writes queued or running before :meth:`submit` waits for the oldest one; default 16 per
            process (16 for the thread).
        on_done: Called with the path of each file once it is written, in submission order.
    """

    def __init__(
        self, processes: int = 0, max_pending: int | None = None, on_done: Callable[[Path], None] | None = None
    ) -> None:
        if processes < 0:
            raise ConfigError(f"--write-processes must be 0 or more. Got {processes} instead.")
        self.processes = processes
        self.max_pending = max_pending or 16 * max(1, processes)
        self.on_done = on_done or (lambda path: None)
        self._pending: deque[tuple[Path, Future]] = deque()
        self._executor: Executor
        if processes:
            context = multiprocessing.get_context("spawn")
            self._executor = ProcessPoolExecutor(max_workers=processes, mp_context=context)
        else:
            self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="h5-writer")

    def submit(
        self, path: Path, features: np.ndarray, coords: np.ndarray, coverage: np.ndarray, attrs: dict,
        coords_attrs: dict | None = None,
    ) -> None:
        """Queue one image's file (arrays and attributes as :func:`pipeline.cache.store.write_image_features` takes).

        Raises:
            CacheError: An earlier write failed.
        """
        future = self._executor.submit(store.write_image_features, path, features, coords, coverage, attrs,
                                       coords_attrs)
        self._pending.append((path, future))
        while len(self._pending) > self.max_pending or (self._pending and self._pending[0][1].done()):
            self._collect()

    def finish(self) -> None:
        """Wait for every queued write; re-raise the first failure."""
        while self._pending:
            self._collect()

    def close(self) -> None:
        """Stop the writers after the writes already queued (also after a failure)."""
        self._executor.shutdown(wait=True, cancel_futures=False)

    def __enter__(self) -> FeatureWriter:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _collect(self) -> None:
        path, future = self._pending.popleft()
        future.result()  # re-raises the writer's CacheError (disk full, ...)
        self.on_done(path)
