"""Benchmarks and calibrations, run from the repository root as ``python -m benchmarks.NAME`` (never installed).

They print numbers; the measurements in docs/ come from them.
"""

import os
from pathlib import Path

# The real H&E the project is measured on: $PIPELINE_SHARED_DATA, else ../shared/data beside the checkout (read-only;
# never copied into the project).
SHARED_DATA = Path(os.environ.get("PIPELINE_SHARED_DATA") or Path(__file__).resolve().parents[2] / "shared" / "data")
