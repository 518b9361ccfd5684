"""What the entry points share: process set-up, logging, the help format and the one-line error report."""

from __future__ import annotations

import argparse
import ctypes
import logging
import os
import platform
import sys

from pipeline.errors import Interrupted, PipelineError

EXIT_OK, EXIT_FAILED, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130


def prepare_process() -> None:
    """Settings that must be made before torch and LightGBM start their OpenMP pools (a user's own setting wins).

    Where vCPUs are shared (cloud VMs, CI), OpenMP threads that spin for long while waiting steal the time of the
    thread doing the work: on the 2-vCPU CI machine a small matmul took 8 ms with GNU OpenMP's default spinning and
    0.2 ms with a short spin; OMP_WAIT_POLICY=PASSIVE (no spin at all) fixed that too but made a LightGBM fit 2.5x
    slower. Large matmuls run at the same speed either way.
    """
    if "OMP_WAIT_POLICY" not in os.environ:
        os.environ.setdefault("GOMP_SPINCOUNT", "20000")
    keep_freed_memory()


# glibc's mallopt parameters (malloc.h)
M_TRIM_THRESHOLD, M_MMAP_THRESHOLD = -1, -3
KEEP_FREED_BYTES = 256 * 2**20
_ALLOCATOR_SETTINGS = ("MALLOC_MMAP_THRESHOLD_", "MALLOC_TRIM_THRESHOLD_", "GLIBC_TUNABLES")


def keep_freed_memory() -> bool:
    """Let glibc's malloc reuse freed blocks of up to :data:`KEEP_FREED_BYTES` instead of unmapping them.

    By default glibc serves a block over 32 MiB (a batch of 64 float tiles is 38 MiB) with a fresh ``mmap`` and
    unmaps it on ``free``, so every batch's pages are zero-filled by the kernel on first touch: on the 2-core CPU that
    was half the CPU time of normalising the tiles (0.55 -> 0.26 ms per tile) and, for a ViT-B's activations in an
    eager run, five times the page faults. Processes forked afterwards (decoding workers) inherit the setting.
    Nothing changes where the user chose an allocator (``LD_PRELOAD``) or glibc's own settings, nor off glibc.

    Returns:
        True when the setting was made.
    """
    if platform.system() != "Linux" or platform.libc_ver()[0] != "glibc":
        return False
    if any(name in os.environ for name in _ALLOCATOR_SETTINGS) or "malloc" in os.environ.get("LD_PRELOAD", ""):
        return False
    try:
        libc = ctypes.CDLL("libc.so.6")
    except OSError:
        return False
    # the trim threshold first: above the mmap threshold, so that a freed block kept in the heap stays there
    return bool(libc.mallopt(M_TRIM_THRESHOLD, 2 * KEEP_FREED_BYTES) and libc.mallopt(M_MMAP_THRESHOLD,
                                                                                      KEEP_FREED_BYTES))


def configure_logging(verbose: int = 0, quiet: bool = False, prefix: str = "") -> None:
    """Send library logs to stderr: warnings when quiet, info by default, debug with -v.

    ``prefix`` starts every line, e.g. ``[rank 1/8] `` when several processes share one terminal or log.
    """
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    prefix = prefix.replace("%", "%%")
    logging.basicConfig(level=level, format=f"{prefix}%(levelname)s %(name)s: %(message)s", stream=sys.stderr,
                        force=True)
    for noisy in ("urllib3", "httpx", "httpx2", "httpcore", "filelock", "huggingface_hub", "PIL", "matplotlib", "h5py",
                  "torch"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def report_error(exc: PipelineError) -> None:
    """Print a user-fixable error as one line, without a traceback."""
    print(f"error: {exc}", file=sys.stderr)


def report_interrupt(exc: KeyboardInterrupt) -> int:
    """Print one line for Ctrl-C (what was kept and how to resume, when the library said) and return 130."""
    text = str(exc) if isinstance(exc, Interrupted) else "interrupted; run the same command to resume"
    print(f"\n{text}", file=sys.stderr)
    return EXIT_INTERRUPTED


class HelpFormatter(argparse.ArgumentDefaultsHelpFormatter):
    """Show each flag's default once: not when its help already says it, nor for switches and unset values."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        unset = action.default is None or action.default is False or action.default == argparse.SUPPRESS
        if "default" in text or unset or action.nargs == 0:
            return text
        return super()._get_help_string(action)
