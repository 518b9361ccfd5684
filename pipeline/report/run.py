"""Run a classification and write its run folder: what ``classify.py`` does."""

from __future__ import annotations

from pathlib import Path

from pipeline.classify.results import ClassificationResult
from pipeline.classify.run import run_classification
from pipeline.classify.settings import ClassificationSettings
from pipeline.report.files import write_run
from pipeline.report.run_folder import RunFolder, check_out_folder, next_free


def check_out(settings: ClassificationSettings) -> None:
    """Refuse an ``--out`` that may not become this run's folder, before any training.

    The default name always finds a free folder; see :func:`pipeline.report.run_folder.check_out_folder`.

    Raises:
        ConfigError: ``--out`` is a run folder and ``--overwrite`` was not given, or is no run folder at all.
    """
    if settings.out is not None:
        check_out_folder(Path(settings.out), settings.overwrite)


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
    check_out(settings)
    result = run_classification(settings)
    return result, write_run_folder(result, settings)
