"""glibc's malloc set to keep freed batch-sized blocks instead of unmapping them (process set-up, no other state)."""

from __future__ import annotations

import ctypes
import os
import platform

# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
# The main process keeps blocks up to 64 MiB: a batch of 64 float tiles (38 MiB) is reused, a slide's tissue
# detection (float arrays of 80 MiB and more) is returned at once. Decoding workers keep up to 32 MiB, glibc's own
# most: with 64 MiB, or 256 MiB everywhere, a worker kept 600 MB more at once on a 40,960 px slide (2.58-2.62 GB
# for the process tree, over the 2.5 GB bound of docs/slides.md; 2.04 GB as set here, 1.95 GB untouched).
MAIN_PROCESS_BYTES = 64 * 2**20
WORKER_BYTES = 32 * 2**20
_USER_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")
_kept = False  # set in the process that made the setting, inherited by the processes it forks


def keep_freed_memory(block_bytes: int = MAIN_PROCESS_BYTES) -> bool:
    """Let glibc's malloc reuse freed blocks of up to ``block_bytes`` instead of unmapping them.

    By default glibc serves a block over 32 MiB (a batch of 64 float tiles is 38 MiB) with a fresh ``mmap`` and
    unmaps it on ``free``, so every batch's pages are zero-filled by the kernel on first touch: on the 2-core CPU that
    was half the CPU time of normalising the tiles (0.55 -> 0.26 ms per tile) and, for a ViT-B's activations in an
    eager run, five times the page faults. At most twice ``block_bytes`` stays mapped after a free. Nothing changes
    where the user chose an allocator (``LD_PRELOAD``) or glibc's own settings, nor off glibc.

    Returns:
        True when the setting was made.
    """
    global _kept
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in _USER_SETTINGS) or "malloc" in os.environ.get("LD_PRELOAD", ""):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # the trim threshold first: above the mmap threshold, so that a freed block kept in the heap stays there
    _kept = bool(libc.mallopt(M_TRIM_THRESHOLD, 2 * block_bytes) and libc.mallopt(M_MMAP_THRESHOLD, block_bytes))
    return _kept


def worker_memory(worker_id: int = 0) -> None:
    """In a decoding worker forked from a process that keeps freed blocks: keep only :data:`WORKER_BYTES`.

    A DataLoader ``worker_init_fn``; a spawned worker (the parent's setting not inherited) is left as it starts.
    """
    if _kept:
        keep_freed_memory(WORKER_BYTES)
