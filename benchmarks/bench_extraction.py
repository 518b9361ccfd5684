"""Extraction speed: model-only, end to end and a naive loop, per model and precision (``--help`` lists the flags).

    python -m benchmarks.bench_extraction [--images vit-b16=64,efficientnet-lite0=128] [--precisions auto,fp32,bf16]

The measuring code is in :mod:`benchmarks.extraction`; this entry point only sets the process up first.
"""

from __future__ import annotations

import os
import sys
from collections.abc import Sequence


def main(argv: Sequence[str] | None = None) -> int:
    """Set the OpenMP and Hugging Face environment (before torch loads), then run the benchmark."""
    from pipeline.cli.console import prepare_process

    prepare_process()  # OpenMP waits as extract.py sets them: the rates are extract.py's
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # nothing here downloads
    from benchmarks.extraction.runner import main as run

    return run(argv)


if __name__ == "__main__":
    sys.exit(main())
