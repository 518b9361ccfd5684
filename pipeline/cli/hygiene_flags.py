"""The hygiene thresholds as command-line flags, shared by both entry points (generated from the settings)."""

from __future__ import annotations

import argparse

from pipeline.cli.flags import add_arguments, settings_from
from pipeline.hygiene.settings import QualitySettings


def add_quality_arguments(parser: argparse.ArgumentParser) -> None:
    """The hygiene thresholds as flags (``--phash-distance``, ``--max-green-ink-fraction``, ...), in their group."""
    add_arguments(parser.add_argument_group("hygiene thresholds (quality.csv; see docs/hygiene.md)"), QualitySettings)


def quality_from_args(args: argparse.Namespace) -> QualitySettings:
    """The :class:`QualitySettings` given by :func:`add_quality_arguments` flags."""
    return settings_from(QualitySettings, args)
