"""What the entry points share: process set-up, logging, the help format and the one-line error report."""

from __future__ import annotations

import argparse
import logging
import os
import sys

from pipeline.errors import Interrupted, PipelineError
from pipeline.memory import keep_freed_memory

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
