"""``python classify.py``: class-weighted heads on cached tile embeddings, per-image votes, weighted F1, submission."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from pipeline.classify.settings import ClassificationSettings
from pipeline.cli.console import (
    EXIT_OK,
    EXIT_USAGE,
    HelpFormatter,
    configure_logging,
    prepare_process,
    report_error,
    report_interrupt,
)
from pipeline.cli.flags import add_arguments, settings_from
from pipeline.cli.hygiene_flags import add_quality_arguments
from pipeline.errors import PipelineError


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``classify.py``."""
    parser = argparse.ArgumentParser(
        prog="classify.py",
        description="Cross-validate class-weighted heads on cached tile embeddings (never re-embeds), report "
        "weighted F1 and write predictions for the test images.",
        formatter_class=HelpFormatter,
    )
    add_arguments(parser, ClassificationSettings, skip=("quality",))
    parser.add_argument("--predict", type=Path, default=None, metavar="RUN_FOLDER",
                        help="no training: predict the test images of --features with the model saved in this run "
                        "folder (a fused run: one cache per cache it fused, in the same order); writes submission.csv "
                        "and test_predictions.csv to --out (default: RUN_FOLDER_predict_<data folder>)")
    add_quality_arguments(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return parser


def settings_from_args(args: argparse.Namespace) -> ClassificationSettings:
    """Turn parsed flags into :class:`ClassificationSettings` (one ``--features`` path stays a path)."""
    features = tuple(args.features)
    return settings_from(ClassificationSettings, args, features=features[0] if len(features) == 1 else features)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``classify.py`` with ``argv`` (default: ``sys.argv[1:]``); return the exit status."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.keep_outliers and args.drop_flagged:
        parser.error("--keep-outliers and --drop-flagged contradict each other: pass one of them")
    prepare_process()
    configure_logging(args.verbose, args.quiet)
    try:
        if args.predict is not None:
            from pipeline.report.predict import format_prediction_summary, predict_and_write

            predictions, folder, rows = predict_and_write(args.predict, args.features, args.data, args.out,
                                                          args.overwrite)
            print(format_prediction_summary(predictions, folder, rows))
            return EXIT_OK
        from pipeline.report.run import classify_and_write
        from pipeline.report.summary import format_summary

        result, run_dir = classify_and_write(settings_from_args(args))
    except PipelineError as exc:
        report_error(exc)
        return EXIT_USAGE
    except KeyboardInterrupt as exc:
        return report_interrupt(exc)
    print(format_summary(result, run_dir))
    return EXIT_OK
