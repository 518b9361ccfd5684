"""``python extract.py``: cut mask-guided tiles, embed them with a frozen model, cache them in HDF5."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
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
from pipeline.cli.encoders import DEFAULT_TILE_SIZE, models_table, tile_size
from pipeline.cli.hygiene_flags import add_quality_arguments, quality_from_args
from pipeline.data.images import DEFAULT_MAX_PIXELS
from pipeline.data.tiling import TilingSettings
from pipeline.embed.options import COMPILE_MODES, PRECISIONS
from pipeline.embed.registry import DEFAULT_MODEL, model_help
from pipeline.errors import ImageReadError, PipelineError
from pipeline.extract.settings import ExtractionSettings, default_workers
from pipeline.extract.sharding import log_prefix, parse_shard


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of ``extract.py``."""
    parser = argparse.ArgumentParser(
        prog="extract.py",
        description="Embed every mask-guided tile of every image with a frozen model into an HDF5 cache. "
        "Resumable: a second run only embeds what is missing or changed.",
        formatter_class=HelpFormatter,
    )
    parser.add_argument(
        "--data", type=Path, default=Path("data"), help="data folder with train_data/, test_data/ and train_labels.csv"
    )
    parser.add_argument("--split", choices=("train", "test", "all"), default="all", help="which split to embed")
    parser.add_argument("--model", default=DEFAULT_MODEL, help=model_help())
    parser.add_argument(
        "--list-models",
        action="store_true",
        help="print the encoder table (dimension, input size, magnification, licence, gated, weights cached here) "
        "and exit; touches no network",
    )
    parser.add_argument("--out", type=Path, default=Path("features"),
                        help="cache root: each data folder gets its own sub-folder (<name>-<hash of its path>)")
    device = parser.add_mutually_exclusive_group()
    device.add_argument("--gpu", action="store_true", help="run on CUDA (same as --device cuda); fails without CUDA")
    device.add_argument(
        "--device", choices=("auto", "cpu", "cuda"), default="auto", help="auto uses CUDA when available"
    )
    parser.add_argument(
        "--precision",
        choices=PRECISIONS,
        default="auto",
        help="auto: fp16 on CUDA, bf16 for transformer models on CPUs with AMX/AVX512-BF16, fp32 elsewhere; "
        "bf16-weights casts the weights themselves",
    )
    parser.add_argument(
        "--compile",
        choices=COMPILE_MODES,
        default="auto",
        help="torch.compile the model (runs uncompiled if that fails); auto: only for bf16 on AMX CPUs (slower on GPU)",
    )
    parser.add_argument(
        "--tile-size", type=int, default=None,
        help=f"tile side in original image pixels, resized to the encoder's input (default: {DEFAULT_TILE_SIZE})",
    )
    parser.add_argument(
        "--mpp",
        type=float,
        default=None,
        help="micrometres per pixel of your images: sets --tile-size so that tiles match the magnification the "
        "encoder was trained at, e.g. 0.25 with a 0.5 um/px encoder of 224 px input gives 448 (docs/encoders.md)",
    )
    parser.add_argument("--stride", type=int, default=None, help="grid step in pixels (default: the tile size)")
    parser.add_argument(
        "--min-coverage",
        type=float,
        default=0.5,
        help="keep a tile when at least this fraction of its pixels is inside the mask",
    )
    parser.add_argument("--max-tiles", type=int, default=0, help="keep at most N tiles per image (0: all)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the --max-tiles sampler")
    parser.add_argument(
        "--batch-size", type=int, default=None, help="tiles per forward pass (default: 16 on CPU, 256 on CUDA)"
    )
    parser.add_argument(
        "--workers",
        type=int,
        default=None,
        help=f"decoding worker processes (default: cores - 1, at most 8 on CPU and 32 on CUDA; here "
        f"{default_workers()} on CPU; 0: none)",
    )
    parser.add_argument(
        "--write-processes",
        type=int,
        default=0,
        help="processes that encode and write the HDF5 files (0: one thread beside the model, as fast on the "
        "hosts measured; more where encoding, not the disk, is the limit)",
    )
    parser.add_argument(
        "--max-pixels",
        type=int,
        default=DEFAULT_MAX_PIXELS,
        help="refuse images whose header claims more pixels (decompression-bomb guard)",
    )
    parser.add_argument("--strict", action="store_true", help="stop with an error at the first bad image")
    parser.add_argument("--overwrite", action="store_true", help="re-embed images whose files are up to date")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    parser.add_argument(
        "--shard",
        metavar="I/N",
        default=None,
        help="embed only shard I of N (0-based, like torchrun's RANK), balanced by pixel count; N processes, "
        "e.g. a Slurm array, fill one cache together, then --finalize writes its report. Under torchrun the "
        "default is RANK/WORLD_SIZE (see docs/scale-out.md)",
    )
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
    """Turn parsed flags into :class:`ExtractionSettings`."""
    return ExtractionSettings(
        data_dir=args.data,
        split=args.split,
        model=args.model,
        out_dir=args.out,
        device="cuda" if args.gpu else args.device,
        precision=args.precision,
        compile=args.compile,
        tiling=TilingSettings(tile_size(args), args.stride, args.min_coverage, args.max_tiles, args.seed),
        batch_size=args.batch_size,
        workers=args.workers,
        write_processes=args.write_processes,
        strict=args.strict,
        overwrite=args.overwrite,
        max_pixels=args.max_pixels,
        quality=quality_from_args(args),
        progress=not args.no_progress,
        shard=parse_shard(args.shard) if args.shard is not None else None,
    )


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
