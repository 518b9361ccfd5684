"""Join the label file to the cached training images, and catch the label mistakes people make.

A label that differs from another class only by case or spaces is always a typo (``Lung_scc`` next to ``lung_scc``);
a class too small to cross-validate that is one or two characters from a larger class (``lung_nn`` next to
``lung_n``) most likely is one. Both are reported with the rows to fix.
"""

from __future__ import annotations

import logging
from collections import Counter
from pathlib import Path

from pipeline.cache.featureset import FeatureSet
from pipeline.errors import ConfigError, LabelsError

logger = logging.getLogger(__name__)

MAX_TYPO_DISTANCE = 2  # characters; "HER2(+)" and "HER2(-)" are 1 apart, so this alone never flags a large class
MIN_TYPO_LENGTH = 4  # shorter names ("a", "G1") are all a character or two apart: no guess for them


def join_labels(train: FeatureSet, labels: dict[str, str], labels_path: Path, skipped: dict[str, dict]) -> list[str]:
    """Label of every cached train image; errors name the ids that do not match.

    Raises:
        LabelsError: A cached image has no label, a labelled image is missing from the cache (and was not skipped by
            extraction: those are reported and left out), or two classes differ only by case or spaces.
    """
    unlabelled = [s for s in train.sample_index if s not in labels]
    if unlabelled:
        raise LabelsError(
            f"{len(unlabelled)} cached train image(s) have no row in {labels_path}: {_some(unlabelled)}. Add their "
            "labels (or, if those images were removed from the data folder, run extract.py --verify to list their "
            "files)."
        )
    cached = set(train.sample_index)
    missing = [s for s in labels if s not in cached]
    skipped_samples = {v["sample_index"]: v["reason"] for k, v in skipped.items() if k.startswith("train/")}
    was_skipped = [s for s in missing if s in skipped_samples]
    absent = [s for s in missing if s not in was_skipped]
    if absent:
        raise LabelsError(
            f"{labels_path} lists {len(absent)} image(s) missing from the cache: {_some(absent)}. Run extract.py "
            "--split train to embed them, or remove their rows."
        )
    for sample in was_skipped:
        logger.warning("%s was skipped by extraction and is left out: %s", sample, skipped_samples[sample])
    names = [labels[s] for s in train.sample_index]
    _refuse_case_variants(names, train.sample_index, labels_path)
    return names


def _refuse_case_variants(names: list[str], sample_index: list[str], labels_path: Path) -> None:
    counts = Counter(names)
    for name in sorted(counts, key=lambda n: (counts[n], n)):
        twin = next((other for other in counts if other != name and _squash(other) == _squash(name)
                     and (counts[other], other) > (counts[name], name)), None)
        if twin is not None:
            rows = [s for s, n in zip(sample_index, names, strict=True) if n == name]
            raise LabelsError(
                f"{labels_path}: the label '{name}' ({len(rows)} row(s): {_some(rows)}) differs from the class "
                f"'{twin}' only by case or spaces. Did you mean '{twin}'? Fix those rows."
            )


def check_class_sizes(names: list[str], sample_index: list[str], n_folds: int, labels_path: Path) -> None:
    """Refuse classes too small for ``n_folds``-fold cross-validation, saying what would work.

    Raises:
        ConfigError: A class has fewer images than folds; the message suggests a fold count that works, or, for a
            class of one image, to fix, merge or drop it, with a "did you mean" when its name is close to a larger
            class.
    """
    counts = Counter(names)
    small = sorted((n, name) for name, n in counts.items() if n < n_folds)
    if not small:
        return
    lines = []
    for n, name in small:
        rows = [s for s, label in zip(sample_index, names, strict=True) if label == name]
        near = _nearest_larger(name, counts)
        hint = f" Did you mean '{near}'?" if near else ""
        lines.append(f"'{name}' has {n} image(s) ({_some(rows)}).{hint}")
    smallest = small[0][0]
    if smallest < 2:
        advice = (
            "A class needs at least 2 images to be both trained on and validated, so no --folds can work: fix its "
            f"label in {labels_path}, merge it into another class, or drop its rows."
        )
    else:
        advice = f"Use --folds {smallest} or fewer, or add images of those classes."
    raise ConfigError(f"Every class needs at least --folds {n_folds} images. {' '.join(lines)} {advice}")


def _nearest_larger(name: str, counts: Counter) -> str | None:
    """The larger class whose name is closest to ``name``: equal but for case and spaces, or a few edits away.

    Longer names may be further apart: one edit up to 7 characters, at most :data:`MAX_TYPO_DISTANCE` from 8 on.
    """
    limit = min(MAX_TYPO_DISTANCE, max(1, len(name) // 4)) if len(name) >= MIN_TYPO_LENGTH else 0
    best = None
    for other, n in counts.items():
        if other == name or n <= counts[name]:
            continue
        distance = 0 if _squash(other) == _squash(name) else edit_distance(name.lower(), other.lower())
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
    return "".join(name.split()).lower()


def _some(values: list[str], limit: int = 10) -> str:
    return ", ".join(values[:limit]) + (" ..." if len(values) > limit else "")
