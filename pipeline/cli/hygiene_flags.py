"""The hygiene thresholds as command-line flags, shared by both entry points."""

from __future__ import annotations

import argparse

from pipeline.hygiene.settings import QualitySettings

_QUALITY_HELP = {
    "phash_distance": "near duplicate: a flip/rotation of another image within this many bits of 64 (perceptual hash)",
    "min_stain_fraction": "non_tissue below this share of the tissue in H&E colours (optical-density hue), if also a "
    "robust outlier of the dataset",
    "max_off_hue_fraction": "non_tissue above this share of masked pixels in hues H&E never has (yellow-green-cyan)",
    "max_flat_fill_fraction": "non_tissue above this share of perfectly flat, drawing-like tissue, if also a robust "
    "outlier of the dataset",
    "max_green_ink_fraction": "ink above this share of masked pixels in green pen strokes (after white balance)",
    "max_blue_ink_fraction": "ink above this share of masked pixels in blue pen strokes",
    "max_black_ink_fraction": "ink above this share of masked pixels in black pen strokes",
    "max_outlier_ratio": "non_tissue above this ratio of an image's embedding-neighbour distance to the median one",
    "robust_z": "the stain and flat-fill rules also need this many robust SDs (1.4826 MAD) from the median image",
    "min_images_for_z": "with fewer images than this, the stain and flat-fill thresholds decide alone",
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
