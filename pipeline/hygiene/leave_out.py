"""Which flagged training images classification leaves out, and the line it says when that would be too many.

Images flagged ``non_tissue`` or ``ink`` are left out of training (never out of validation) while they are few. When
they would be more than :data:`MAX_SHARE` of the training images or more than :data:`MAX_CLASS_SHARE` of one class,
all of them are **kept** unless ``drop_flagged`` is set, and one line says so with the counts, the classes and the
flags and rules responsible. A large share flagged is more likely a rule that does not fit the dataset (the pale
breast H&E of issue 12: 4 of 12 images flagged) than that much junk, and dropping it silently would bias training
toward the best-stained slides, possibly one source or one class, which the cross-validated score would not reveal.
"""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Sequence
from typing import Protocol

import numpy as np

from pipeline.hygiene.assessment import EXCLUDED_FROM_TRAINING, QualityReport
from pipeline.hygiene.rules import RULES

logger = logging.getLogger(__name__)

MAX_SHARE = 0.05  # of all training images
MAX_CLASS_SHARE = 0.10  # of one class's training images


def too_many_line(flagged: np.ndarray, labels: Sequence[str], report: QualityReport, dropped: bool) -> str | None:
    """The warning line when the flagged images exceed a limit, else None.

    Args:
        flagged: (n_train,) bool, the training images flagged ``non_tissue`` or ``ink`` (the report's first rows).
        labels: (n_train,) class name of each training image.
        report: The assessment, for the flags and rules of each image.
        dropped: Whether they are left out anyway (``--drop-flagged``).

    Returns:
        e.g. ``hygiene flags 41 of 540 training images (7.6%; lung_n: 30 of 180, 16.7%): non_tissue 39
        (little_stain 30, flat_fills 9), ink 2; over 5% of the training images or 10% of a class, so all are kept in
        training (pass --drop-flagged to leave them out)``.
    """
    flagged = np.asarray(flagged, dtype=bool)
    labels = np.asarray(labels)
    n, k = len(flagged), int(flagged.sum())
    classes = []
    for label in sorted(set(labels.tolist())):
        members = labels == label
        hit = int((flagged & members).sum())
        if hit > MAX_CLASS_SHARE * members.sum():
            classes.append(f"{label}: {hit} of {int(members.sum())}, {hit / members.sum():.1%}")
    if k == 0 or (k <= MAX_SHARE * n and not classes):
        return None
    flags: Counter = Counter()
    rules: dict[str, Counter] = {flag: Counter() for flag in EXCLUDED_FROM_TRAINING}
    for i in np.nonzero(flagged)[0]:
        for flag in EXCLUDED_FROM_TRAINING:
            if report.flags[flag][i]:
                flags[flag] += 1
                rules[flag].update(rule for rule in report.rules_of(i) if RULES[rule] == flag)
    causes = ", ".join(f"{flag} {count}{_by_rule(flag, rules[flag])}" for flag, count in flags.most_common())
    per_class = f"; {'; '.join(classes)}" if classes else ""
    limits = f"over {MAX_SHARE:.0%} of the training images or {MAX_CLASS_SHARE:.0%} of a class"
    outcome = "--drop-flagged leaves them out of training" if dropped else (
        "so all are kept in training (pass --drop-flagged to leave them out)")
    return f"hygiene flags {k} of {n} training images ({k / n:.1%}{per_class}): {causes}; {limits}, {outcome}"


def _by_rule(flag: str, counts: Counter) -> str:
    """`` (little_stain 3, off_hue 1)`` for a flag that several rules raise, else nothing."""
    if sum(raised == flag for raised in RULES.values()) < 2:
        return ""
    return f" ({', '.join(f'{rule} {count}' for rule, count in counts.most_common())})"


def left_out_for_flags(
    report: QualityReport, labels: Sequence[str], keep_outliers: bool = False, drop_flagged: bool = False
) -> tuple[np.ndarray, str | None]:
    """The training images to leave out for their flags, and the warning line (None when under the limits).

    Args:
        report: The assessment of train (first ``len(labels)`` rows) and test images.
        labels: (n_train,) class name of each training image.
        keep_outliers: Keep every flagged image (``--keep-outliers``); no line then.
        drop_flagged: Leave flagged images out even above the limits (``--drop-flagged``).

    Returns:
        (n_train,) bool, and the line or None.
    """
    n = len(labels)
    flagged = report.excluded()[:n]
    if keep_outliers:
        return np.zeros(n, dtype=bool), None
    line = too_many_line(flagged, labels, report, drop_flagged)
    if line is not None and not drop_flagged:
        return np.zeros(n, dtype=bool), line
    return flagged.copy(), line


class TrainingChoices(Protocol):
    """The flags of :func:`training_plan` (:class:`pipeline.classify.settings.ClassificationSettings` has them)."""

    keep_outliers: bool
    drop_flagged: bool
    dedupe: bool


def training_plan(
    quality: QualityReport, n_train: int, settings: TrainingChoices, labels: Sequence[str] | None = None
) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """Duplicate groups and trainable images of the training split (its rows come first in ``quality``).

    Args:
        quality: The assessment of train and test images.
        n_train: Training images.
        settings: ``keep_outliers``, ``drop_flagged`` and ``dedupe`` (the classification settings).
        labels: (n_train,) class names, for the per-class limit of :mod:`pipeline.hygiene.leave_out` (None: one class).

    Returns:
        (n_train,) duplicate-group ids; (n_train,) bool, the images the heads may train on (flagged images left out
        as :func:`left_out_for_flags` decides; with ``dedupe`` only the first image of
        each group); and the hygiene warnings (also logged).
    """
    groups = quality.duplicate_group[:n_train]
    labels = ["all"] * n_train if labels is None else labels
    flagged, too_many = left_out_for_flags(quality, labels, settings.keep_outliers, settings.drop_flagged)
    trainable = ~flagged
    if settings.dedupe:
        first = np.zeros(n_train, dtype=bool)
        first[np.unique(groups, return_index=True)[1]] = True
        trainable &= first
    warnings = [line for line in (quality.unscored_warning(), too_many) if line]
    for line in warnings:
        logger.warning("%s", line)
    left_out = n_train - int(trainable.sum())
    if left_out:
        logger.info("%d of %d training images are left out of training (%s)", left_out, n_train, quality.summary())
    return groups, trainable, warnings
