"""Join the label file to the cached training images, and catch the label mistakes people make.

Every problem of the label file is collected and reported in one error, so one run shows them all: cached images
without a row, rows of images missing from the cache, labels that look like typos of a class, classes too small to
cross-validate. A label is taken for a typo when it differs from a clearly larger class (at least
:data:`CLEARLY_LARGER` times its rows) by one or two edits, or from any larger class only by case, spaces, ``-`` or
``_`` (``lung_acc`` next to ``lung_aca``, ``Lung_scc`` next to ``lung_scc``), whatever its own size: a typo on many
rows would otherwise become a class of its own and reach the submission. ``--allow-labels`` names labels that are
meant (``HER2(+)`` and ``HER2(-)`` of equal size are never taken for typos).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from collections.abc import Sequence
from pathlib import Path

from pipeline.cache.featureset import FeatureSet
from pipeline.errors import LabelsError

logger = logging.getLogger(__name__)

MAX_TYPO_DISTANCE = 2  # characters; "HER2(+)" and "HER2(-)" are 1 apart, so this alone never flags a large class
MIN_TYPO_LENGTH = 4  # shorter names ("a", "G1") are all a character or two apart: no guess for them
CLEARLY_LARGER = 5  # a label a few edits from a class with at least this many times its rows is taken for a typo
MAX_ROWS_LISTED = 50  # rows named per label problem


def join_labels(
    train: FeatureSet, labels: dict[str, str], labels_path: Path, skipped: dict[str, dict], n_folds: int = 2,
    allowed: Sequence[str] = (),
) -> list[str]:
    """Label of every cached train image, after checking the labels for every known mistake at once.

    Args:
        train: The cached training images. labels: ``{sample_index: label}`` of the label file.
        labels_path: The label file, for messages. skipped: The images extraction skipped (left out, with a warning).
        n_folds: Cross-validation folds: every class needs at least this many images.
        allowed: Labels that are meant although they look like typos of a larger class (``--allow-labels``).

    Returns:
        (n_train,) the class name of each cached image, in ``train``'s order.

    Raises:
        LabelsError: One message with every problem: cached images without a label, labelled images missing from the
            cache (those extraction skipped are only warned about), typo-like labels, a single class, classes
            smaller than ``n_folds``, and ``allowed`` labels no row has.
    """
    problems = []
    unlabelled = [s for s in train.sample_index if s not in labels]
    if unlabelled:
        problems.append(
            f"{len(unlabelled)} cached train image(s) have no row in {labels_path}: {_some(unlabelled)}. Add their "
            "labels (or, if those images were removed from the data folder, run extract.py --verify to list their "
            "files)."
        )
    cached = set(train.sample_index)
    missing = [s for s in labels if s not in cached]
    skipped_samples = {v["sample_index"]: v["reason"] for k, v in skipped.items() if k.startswith("train/")}
    absent = [s for s in missing if s not in skipped_samples]
    if absent:
        problems.append(
            f"{labels_path} lists {len(absent)} image(s) missing from the cache: {_some(absent)}. Run extract.py "
            "--split train to embed them, or remove their rows."
        )
    for sample in missing:
        if sample in skipped_samples:
            logger.warning("%s was skipped by extraction and is left out: %s", sample, skipped_samples[sample])
    rows = [(s, labels[s]) for s in train.sample_index if s in labels]
    problems += label_problems([name for _, name in rows], [s for s, _ in rows], n_folds, labels_path, allowed)
    if problems:
        if len(problems) == 1:
            raise LabelsError(problems[0])
        listed = "\n".join(f"  {i}. {problem}" for i, problem in enumerate(problems, start=1))
        raise LabelsError(f"{labels_path}: {len(problems)} label problems; fix them all, then run again:\n{listed}")
    return [labels[s] for s in train.sample_index]


def label_problems(
    names: list[str], sample_index: list[str], n_folds: int, labels_path: Path, allowed: Sequence[str] = ()
) -> list[str]:
    """Every problem of the class names: typo-like labels, too few classes, classes smaller than ``n_folds``.

    Args:
        names, sample_index: (n,) the label and the image of each row.
        n_folds: Cross-validation folds. labels_path: The label file, for messages.
        allowed: Labels that are meant (never taken for typos).

    Returns:
        One message per problem (empty: the labels are fine), each naming the label, its rows and the fix.
    """
    counts = Counter(names)
    problems = [f"--allow-labels '{name}': no row of {labels_path} has that label (its labels: "
                f"{', '.join(sorted(counts))}). Check its spelling." for name in allowed if name not in counts]
    typos = set()
    for name in sorted(counts, key=lambda n: (counts[n], n)):
        twin = None if name in allowed else _typo_of(name, counts)
        if twin is None:
            continue
        typos.add(name)
        how = ("differs only by case, spaces, '-' or '_' from" if _squash(twin) == _squash(name)
               else f"is {edit_distance(name.lower(), twin.lower())} edit(s) from")
        problems.append(
            f"the label '{name}' ({counts[name]} row(s): {_rows(name, names, sample_index)}) {how} the class "
            f"'{twin}' ({counts[twin]} rows). Did you mean '{twin}'? Fix those rows in {labels_path}, or pass "
            f"--allow-labels '{name}' if it is a class of its own."
        )
    real = {name: n for name, n in counts.items() if name not in typos}
    if len(real) == 1:
        problems.append(f"{labels_path} has only one class ({next(iter(real))}); a classifier needs at least two.")
    small = sorted((n, name) for name, n in real.items() if n < n_folds)
    if small and len(real) > 1:
        lines = []
        for n, name in small:
            near = _nearest_larger(name, counts)
            hint = f" Did you mean '{near}'?" if near else ""
            lines.append(f"'{name}' has {n} image(s) ({_rows(name, names, sample_index)}).{hint}")
        if small[0][0] < 2:
            advice = (
                "A class needs at least 2 images to be both trained on and validated, so no --folds can work: fix "
                f"its label in {labels_path}, merge it into another class, or drop its rows."
            )
        else:
            advice = f"Use --folds {small[0][0]} or fewer, or add images of those classes."
        problems.append(f"Every class needs at least --folds {n_folds} images. {' '.join(lines)} {advice}")
    return problems


def _typo_of(name: str, counts: Counter) -> str | None:
    """The class ``name`` is most likely a typo of (None: no such class).

    A larger class equal but for case, spaces, ``-`` and ``_``, or one a few edits away with at least
    :data:`CLEARLY_LARGER` times its rows.
    """
    near = _nearest_larger(name, counts)
    if near is None:
        return None
    if _squash(near) == _squash(name) or counts[near] >= CLEARLY_LARGER * counts[name]:
        return near
    return None


def _nearest_larger(name: str, counts: Counter) -> str | None:
    """The larger class whose name is closest to ``name``: equal but for case, spaces, - and _, or a few edits away.

    Longer names may be further apart: one edit up to 7 characters, at most :data:`MAX_TYPO_DISTANCE` from 8 on.
    """
    limit = min(MAX_TYPO_DISTANCE, max(1, len(name) // 4)) if len(name) >= MIN_TYPO_LENGTH else 0
    best = None
    for other, n in counts.items():
        same = _squash(other) == _squash(name)
        if other == name or n < counts[name] or (n == counts[name] and not (same and other > name)):
            continue
        distance = 0 if same else edit_distance(name.lower(), other.lower())
        if distance <= limit and (best is None or distance < best[0]):
            best = (distance, other)
    return best[1] if best else None


def edit_distance(first: str, second: str) -> int:
    """Levenshtein distance: insertions, deletions and substitutions that turn one string into the other."""
    previous = list(range(len(second) + 1))
    for i, a in enumerate(first, start=1):
        current = [i]
        for j, b in enumerate(second, start=1):
            current.append(min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + (a != b)))
        previous = current
    return previous[-1]


def _squash(name: str) -> str:
    return re.sub(r"[\s_-]+", "", name).lower()


def _rows(name: str, names: list[str], sample_index: list[str]) -> str:
    return _some([s for s, label in zip(sample_index, names, strict=True) if label == name], MAX_ROWS_LISTED)


def _some(values: list[str], limit: int = 10) -> str:
    return ", ".join(values[:limit]) + (" ..." if len(values) > limit else "")
