"""What the entry points share: logging set-up and the one-line error report."""

from __future__ import annotations

import argparse
import logging
import sys

from pipeline.errors import PipelineError
from pipeline.hygiene import QualitySettings

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


_QUALITY_HELP = {
    "phash_distance": "near duplicate: a flip/rotation of another image within this many bits of 64 (perceptual hash)",
    "min_he_fraction": "non_tissue below this share of masked pixels stained in H&E hues",
    "max_off_hue_fraction": "non_tissue above this share of masked pixels in hues H&E never has (yellow-green-cyan)",
    "max_flat_fraction": "non_tissue above this share of flat, drawing-like masked pixels",
    "max_green_fraction": "ink above this share of saturated green masked pixels",
    "max_outlier_ratio": "non_tissue above this ratio of an image's embedding-neighbour distance to the median one",
}


def add_quality_arguments(parser: argparse.ArgumentParser) -> None:
    """The hygiene thresholds as flags (``--phash-distance``, ``--max-green-fraction``, ...)."""
    group = parser.add_argument_group("hygiene thresholds (quality.csv; see README)")
    defaults = QualitySettings()
    for name, text in _QUALITY_HELP.items():
        default = getattr(defaults, name)
        group.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default, help=text)


def quality_from_args(args: argparse.Namespace) -> QualitySettings:
    """The :class:`QualitySettings` given by :func:`add_quality_arguments` flags."""
    return QualitySettings(**{name: getattr(args, name) for name in _QUALITY_HELP})
