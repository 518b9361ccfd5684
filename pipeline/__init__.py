"""Mask-guided tile embeddings cached in HDF5, and class-weighted heads that classify each image.

The public API, by stage (each name is imported on first use, so ``import pipeline`` stays cheap)::

    from pipeline import ExtractionSettings, run_extraction          # stage 1: embed tiles into a cache
    from pipeline import ClassificationSettings, run_classification  # stage 2: cross-validate heads, predict
    from pipeline import write_run_folder                            # write a stage-2 result to a run folder
    from pipeline import load_split, Classifier, make_head, load_model

Packages, top to bottom (each imports only the ones below it): ``cli``; ``report``; ``extract`` and
``classify``; ``hygiene``; ``cache``; ``data``, ``embed`` and ``heads``; ``errors``.
"""

from __future__ import annotations

import importlib
from typing import Any

__version__ = "0.1.0"

_API = {
    "ExtractionSettings": "pipeline.extract.settings",
    "ExtractionSummary": "pipeline.extract.summary",
    "run_extraction": "pipeline.extract.run",
    "verify_cache": "pipeline.extract.verify",
    "ClassificationSettings": "pipeline.classify.settings",
    "ClassificationResult": "pipeline.classify.results",
    "run_classification": "pipeline.classify.run",
    "Classifier": "pipeline.classify.classifier",
    "write_run_folder": "pipeline.report.run",
    "classify_and_write": "pipeline.report.run",
    "FeatureSet": "pipeline.cache.featureset",
    "load_split": "pipeline.cache.featureset",
    "resolve_cache": "pipeline.cache.lookup",
    "load_model": "pipeline.embed.loading",
    "make_head": "pipeline.heads.registry",
    "load_head": "pipeline.heads.persistence",
    "TilingSettings": "pipeline.data.tiling",
    "QualitySettings": "pipeline.hygiene.settings",
    "PipelineError": "pipeline.errors",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        return getattr(importlib.import_module(_API[name]), name)
    raise AttributeError(f"module 'pipeline' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
