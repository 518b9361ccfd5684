"""The hygiene thresholds as command-line flags, shared by both entry points."""

from __future__ import annotations

import argparse

from pipeline.hygiene.settings import QualitySettings

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
    group = parser.add_argument_group("hygiene thresholds (quality.csv; see docs/hygiene.md)")
    defaults = QualitySettings()
    for name, text in _QUALITY_HELP.items():
        default = getattr(defaults, name)
        group.add_argument(f"--{name.replace('_', '-')}", type=type(default), default=default, help=text)


def quality_from_args(args: argparse.Namespace) -> QualitySettings:
    """The :class:`QualitySettings` given by :func:`add_quality_arguments` flags."""
    return QualitySettings(**{name: getattr(args, name) for name in _QUALITY_HELP})
