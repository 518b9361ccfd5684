"""Run a classification and write its run folder: what ``classify.py`` does."""

from __future__ import annotations

from pathlib import Path

from pipeline.classify.results import ClassificationResult
from pipeline.classify.run import run_classification
from pipeline.classify.settings import ClassificationSettings
from pipeline.errors import ConfigError
from pipeline.report.files import write_run
from pipeline.report.run_folder import RunFolder, next_free


def check_out_folder(settings: ClassificationSettings) -> None:
    """Refuse an existing ``--out`` before any training (the default name always finds a free folder).

    Raises:
        ConfigError: ``--out`` exists and ``--overwrite`` was not given.
    """
    if settings.out is not None and Path(settings.out).exists() and not settings.overwrite:
        raise ConfigError(
            f"Run folder '{settings.out}' already exists. Pass another --out, or --overwrite to replace it."
        )


def write_run_folder(result: ClassificationResult, settings: ClassificationSettings) -> Path:
    """Write every file of ``result`` into its run folder (``--out``, or the next free default name); return it."""
    final = Path(settings.out) if settings.out is not None else next_free(Path(settings.runs_root) / result.run_name)
    folder = RunFolder(final, overwrite=settings.overwrite, movable=settings.out is None)
    with folder as temp_dir:
        write_run(temp_dir, result, settings, title=final.name)
    return folder.final


def classify_and_write(settings: ClassificationSettings) -> tuple[ClassificationResult, Path]:
    """Check ``--out``, run the classification, write the run folder; return the result and the folder.

    Raises:
        PipelineError: Bad settings, cache or labels, or an existing ``--out`` (before any training).
    """
    check_out_folder(settings)
    result = run_classification(settings)
    return result, write_run_folder(result, settings)
