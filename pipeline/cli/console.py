"""What the entry points share: logging set-up and the one-line error report."""

from __future__ import annotations

import logging
import sys

from pipeline.errors import PipelineError

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def configure_logging(verbose: int = 0, quiet: bool = False) -> None:
    """Send library logs to stderr: warnings when quiet, info by default, debug with -v."""
    level = logging.WARNING if quiet else logging.DEBUG if verbose else logging.INFO
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr, force=True)
    for noisy in ("urllib3", "filelock", "huggingface_hub", "PIL", "matplotlib", "h5py"):
        logging.getLogger(noisy).setLevel(max(level, logging.WARNING))


def report_error(exc: PipelineError) -> None:
    """Print a user-fixable error as one line, without a traceback."""
    print(f"error: {exc}", file=sys.stderr)
