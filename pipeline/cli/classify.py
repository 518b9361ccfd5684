"""``python classify.py``: class-weighted heads on cached tile embeddings, per-image votes, weighted F1, submission."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from pathlib import Path

from pipeline.cache.pooling import POOL_STATS, parse_pool
from pipeline.classify.settings import FUSION_MODES, LEVELS, ClassificationSettings
from pipeline.classify.votes import VOTES
from pipeline.cli.console import (
    EXIT_OK,
    EXIT_USAGE,
    HelpFormatter,
    configure_logging,
    prepare_process,
    report_error,
    report_interrupt,
)
from pipeline.cli.hygiene_flags import add_quality_arguments, quality_from_args
from pipeline.errors import PipelineError
from pipeline.heads.registry import HEAD_NAMES, heads_help


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``classify.py``."""
    parser = argparse.ArgumentParser(
        prog="classify.py",
        description="Cross-validate class-weighted heads on cached tile embeddings (never re-embeds), report "
        "weighted F1 and write predictions for the test images.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument("--features", type=Path, nargs="+", default=[Path("features")], metavar="CACHE",
                        help="a cache folder written by extract.py, a cache's name, or the root holding them; "
                        "several caches of the same images (other encoders or tile sizes) are fused (--fusion) "
                        "(default: features)")
    parser.add_argument("--fusion", choices=FUSION_MODES, default="late",
                        help="with several --features: late fits the head on each cache in the same folds and "
                        "averages the image probabilities; concat fits one head on the caches' pooled image "
                        "features side by side (needs --level image)")
    parser.add_argument("--data", type=Path, default=None,
                        help="the data folder whose cache to use under a root (default: data/'s, else the only one)")
    parser.add_argument("--labels", type=Path, default=None,
                        help="sample_index,label CSV (default: train_labels.csv of the data folder the cache records)")
    parser.add_argument("--allow-labels", nargs="+", default=[], metavar="LABEL",
                        help="labels that are meant although they are one or two edits (or case, spaces, - or _) "
                        "from a much larger class; without it such a label is refused as a likely typo")
    parser.add_argument("--head", choices=(*HEAD_NAMES, "all"), default="mlp",
                        help=f"classifier head ({heads_help()}); all compares them")
    parser.add_argument("--level", choices=LEVELS, default="tile",
                        help="tile: train on tiles and vote per image; image: train on pooled tile embeddings "
                        "(--pool); abmil always takes each image's tiles as a bag")
    parser.add_argument("--vote", choices=VOTES, default="mean", help="how tile probabilities become one per image")
    parser.add_argument("--pool", default="mean", metavar="STATS",
                        help=f"--level image: per-image statistics of the tiles, comma-separated from "
                        f"{', '.join(POOL_STATS)} (e.g. mean,max)")
    parser.add_argument("--folds", type=int, default=5, help="cross-validation folds over images")
    parser.add_argument("--seed", type=int, default=0, help="seed of folds and heads")
    parser.add_argument("--repeats", type=int, default=1,
                        help="repeat the whole cross-validation with seeds seed, seed+1, ... and report the mean and "
                        "sd of weighted F1")
    parser.add_argument("--no-class-weight", action="store_true", help="turn off balanced class weights")
    parser.add_argument("--out", type=Path, default=None,
                        help="run folder (default: runs/<data folder>_<cache name>_<head>, or the next free _2 ...; "
                        "fused: runs/<data folder>_fused-<mode>_<head>_<what differs between the caches>)")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out folder")
    parser.add_argument("--keep-outliers", action="store_true",
                        help="also train on images flagged non_tissue or ink (by default they are left out while "
                        "they are at most 5%% of the training images and 10%% of each class; above that all are kept "
                        "and a warning says so)")
    parser.add_argument("--drop-flagged", action="store_true",
                        help="leave images flagged non_tissue or ink out of training even above those limits")
    parser.add_argument("--dedupe", action="store_true",
                        help="train on one image per duplicate group (groups always stay in one fold)")
    parser.add_argument("--vote-maps", default=None, metavar="IDS",
                        help="also draw vote maps of these images: comma-separated ids (train/img_0003, "
                        "test/img_0001), training file names (img_0003.png) or stems, or 'all' training images")
    parser.add_argument("--no-pictures", action="store_true", help="skip the plots, vote maps and report.html")
    parser.add_argument("--predict", type=Path, default=None, metavar="RUN_FOLDER",
                        help="no training: predict the test images of --features with the model saved in this run "
                        "folder (a fused run: one cache per cache it fused, in the same order); writes submission.csv "
                        "and test_predictions.csv to --out (default: RUN_FOLDER_predict_<data folder>)")
    add_quality_arguments(parser)
    parser.add_argument("-v", "--verbose", action="count", default=0, help="debug logging")
    parser.add_argument("-q", "--quiet", action="store_true", help="warnings and errors only")
    return parser


def settings_from_args(args: argparse.Namespace) -> ClassificationSettings:
    """Turn parsed flags into :class:`ClassificationSettings`."""
    features = args.features[0] if len(args.features) == 1 else tuple(args.features)
    return ClassificationSettings(
        features=features, fusion=args.fusion, data_dir=args.data, labels=args.labels,
        allow_labels=tuple(args.allow_labels), head=args.head, level=args.level,
        vote=args.vote, pool=parse_pool(args.pool), folds=args.folds, seed=args.seed, repeats=args.repeats,
        class_weight=not args.no_class_weight, out=args.out, overwrite=args.overwrite,
        keep_outliers=args.keep_outliers, drop_flagged=args.drop_flagged, dedupe=args.dedupe,
        quality=quality_from_args(args), pictures=not args.no_pictures,
        vote_maps=tuple(value.strip() for value in (args.vote_maps or "").split(",") if value.strip()),
    )


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
