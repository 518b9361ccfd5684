"""``python extract.py``: cut mask-guided tiles, embed them with a frozen model, cache them in HDF5."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import Any

from pipeline.cli.console import (
    EXIT_FAILED,
    EXIT_OK,
    EXIT_USAGE,
    HelpFormatter,
    configure_logging,
    prepare_process,
    report_error,
    report_interrupt,
)
from pipeline.cli.encoders import models_table
from pipeline.cli.flags import add_arguments, settings_from
from pipeline.cli.hygiene_flags import add_quality_arguments
from pipeline.errors import ImageReadError, PipelineError
from pipeline.extract.launch import log_prefix
from pipeline.extract.settings import ExtractionSettings, tile_size_for


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``extract.py``."""
    parser = argparse.ArgumentParser(
        prog="extract.py",
        description="Embed every mask-guided tile of every image with a frozen model into an HDF5 cache. "
        "Resumable: a second run only embeds what is missing or changed.",
        formatter_class=HelpFormatter,
    )
    add_arguments(parser, ExtractionSettings, only=("data_dir", "split", "model"))
    parser.add_argument(
        "--list-models",
        action="store_true",
        help="print the encoder table (dimension, input size, magnification, licence, gated, weights cached here) "
        "and exit; touches no network",
    )
    add_arguments(parser, ExtractionSettings, only=("out_dir",))
    device = parser.add_mutually_exclusive_group()
    device.add_argument("--gpu", action="store_true", help="run on CUDA (same as --device cuda); fails without CUDA")
    add_arguments(device, ExtractionSettings, only=("device",))
    add_arguments(parser, ExtractionSettings, skip=("data_dir", "split", "model", "out_dir", "device", "quality"))
    mode = parser.add_mutually_exclusive_group()
    mode.add_argument(
        "--finalize",
        action="store_true",
        help="after independent --shard runs: merge their skipped images, write quality.csv and the contact sheet "
        "of the whole cache, and list the images no shard has embedded yet; loads no model; exit 0 when every "
        "image is done, 1 otherwise",
    )
    mode.add_argument(
        "--verify",
        action="store_true",
        help="check every cache file (opens, shapes, finite values, settings, image/mask checksums) and list what "
        "would be re-embedded; loads no model, writes nothing; exit 0 when all is good, 1 otherwise",
    )
    add_quality_arguments(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return parser


def settings_from_args(args: argparse.Namespace) -> ExtractionSettings:
    """Turn parsed flags into :class:`ExtractionSettings` (``--mpp`` is resolved by the library).

    Raises:
        ConfigError: ``--tile-size`` and ``--mpp`` both given (even ``--tile-size 224``, which the settings cannot
            tell from the default).
    """
    if args.tile_size is not None and args.mpp is not None:
        tile_size_for(args.model, args.mpp, args.tile_size)  # raises: both set the tile size
    return settings_from(ExtractionSettings, args, device="cuda" if args.gpu else args.device)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``extract.py`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.list_models:
        print(models_table())
        return EXIT_OK
    if args.shard is not None and (args.verify or args.finalize):
        parser.error(f"--shard cannot be combined with --{'verify' if args.verify else 'finalize'}, which check "
                     "or finish the whole cache; leave --shard out")
    prepare_process()
    configure_logging(args.verbose, args.quiet, log_prefix(args.shard))
    if args.verify:
        return _verify(args)
    if args.finalize:
        return _finalize(args)
    try:
        from pipeline.extract.run import run_extraction  # torch is imported only now: --help answers at once

        summary = run_extraction(settings_from_args(args))
    except ImageReadError as exc:
        report_error(exc)
        return EXIT_FAILED
    except PipelineError as exc:
        report_error(exc)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        return report_interrupt(exc)
    print(summary.line())
    for image_id, reason in summary.skipped.items():
        print(f"  skipped {image_id}: {reason}")
    if summary.failure():
        print(f"error: {summary.failure()}", file=sys.stderr)
        return EXIT_FAILED
    return EXIT_OK


def _verify(args: argparse.Namespace) -> int:
    from pipeline.extract.verify import verify_cache

    return _print_report(verify_cache, args)


def _finalize(args: argparse.Namespace) -> int:
    from pipeline.extract.quality_report import finalize_cache

    return _print_report(finalize_cache, args)


def _print_report(check: Callable[[ExtractionSettings], Any], args: argparse.Namespace) -> int:
    """Run ``--verify`` or ``--finalize`` on the cache the flags name; print its report, exit 1 unless it is ok."""
    try:
        report = check(settings_from_args(args))
    except PipelineError as exc:
        report_error(exc)
        return EXIT_USAGE
    print(report.text())
    return EXIT_OK if report.ok else EXIT_FAILED
