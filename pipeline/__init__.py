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

from pipeline.lazy import lazy_exports

__version__ = "0.1.0"

_API = {
    "ExtractionSettings": "extract.settings",
    "ExtractionSummary": "extract.summary",
    "run_extraction": "extract.run",
    "verify_cache": "extract.verify",
    "ClassificationSettings": "classify.settings",
    "ClassificationResult": "classify.results",
    "run_classification": "classify.run",
    "Classifier": "classify.classifier",
    "write_run_folder": "report.run",
    "classify_and_write": "report.run",
    "FeatureSet": "cache.featureset",
    "load_split": "cache.featureset",
    "resolve_cache": "cache.lookup",
    "load_model": "embed.loading",
    "make_head": "heads.registry",
    "load_head": "heads.persistence",
    "TilingSettings": "data.tiling",
    "QualitySettings": "hygiene.settings",
    "PipelineError": "errors",
}
__all__ = sorted(_API)

__getattr__, __dir__ = lazy_exports(__name__, _API, globals())
