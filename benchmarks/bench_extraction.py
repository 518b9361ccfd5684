"""Extraction speed: a thin wrapper of ``python -m pipeline.bench`` (same flags; ``--help`` lists them).

    python benchmarks/bench_extraction.py [--images vit-b16=32,efficientnet-lite0=128] [--precisions auto,fp32,bf16]
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from pipeline.bench import main  # noqa: E402  (sets OMP_WAIT_POLICY before torch is imported)

if __name__ == "__main__":
    sys.exit(main())
