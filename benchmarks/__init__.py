"""Benchmarks and calibrations, run from the repository root as ``python -m benchmarks.NAME`` (never installed).

They print numbers; the measurements in docs/ come from them.
"""

from pathlib import Path

# The real H&E the project is measured on, beside the checkout (read-only; never copied into the project).
SHARED_DATA = Path(__file__).resolve().parents[2] / "shared" / "data"
