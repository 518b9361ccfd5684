"""Which images get a vote map: the most telling validation images, and those asked for with ``--vote-maps``."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

REASONS = {
    "wrong": "most confidently wrong",
    "unsure": "least confident",
    "correct": "confidently correct",
    "requested": "requested with --vote-maps",
}


@dataclass(frozen=True)
class Pick:
    """An image to draw: its split, its row in that split's feature set, and why it is drawn (a key of REASONS)."""

    split: str
    index: int
    reason: str


def select_images(labels: np.ndarray, proba: np.ndarray, n_wrong: int = 3, n_unsure: int = 2,
                  n_correct: int = 2) -> list[Pick]:
    """Validation images worth looking at: the most confidently wrong, the least confident, the surest correct ones.

    Args:
        labels: (n_images,) int true classes.
        proba: (n_images, C) out-of-fold probabilities; rows with NaN (never validated) are not picked.
        n_wrong: How many wrong images, highest predicted probability first.
        n_unsure: How many of the remaining images with the lowest top probability.
        n_correct: How many correct images per class, highest probability first.

    Returns:
        Train picks, each image once, in that order (ties go to the lower index).
    """
    valid = np.isfinite(proba).all(axis=1)
    confidence = np.where(valid, np.nan_to_num(proba).max(axis=1), np.nan)
    correct = valid & (np.nan_to_num(proba).argmax(axis=1) == labels)
    chosen: list[Pick] = []

    def take(rows: np.ndarray, key: np.ndarray, count: int, reason: str) -> None:
        taken = {p.index for p in chosen}
        rows = [int(i) for i in rows[np.argsort(key[rows], kind="stable")] if int(i) not in taken]
        chosen.extend(Pick("train", i, reason) for i in rows[:count])

    take(np.nonzero(valid & ~correct)[0], -confidence, n_wrong, "wrong")
    take(np.nonzero(valid)[0], confidence, n_unsure, "unsure")
    for c in np.unique(labels):
        take(np.nonzero(correct & (labels == c))[0], -confidence, n_correct, "correct")
    return chosen


def resolve_requests(requests: list[str], train_ids: list[str], train_samples: list[str],
                     test_ids: list[str]) -> tuple[list[Pick], list[str]]:
    """Turn ``--vote-maps`` values into picks.

    A value is ``all`` (every training image), an image id (``train/img_0003``, ``test/img_0001``), a file name
    (``img_0003.png``) or a stem (``img_0003``); file names and stems refer to training images, since test numbering
    restarts at 0000.

    Returns:
        The picks, in request order without repeats, and the values that match no image.
    """
    by_name = {name: ("train", i) for i, image_id in enumerate(train_ids)
               for name in (image_id, train_samples[i], image_id.split("/", 1)[-1])}
    by_name.update({image_id: ("test", i) for i, image_id in enumerate(test_ids)})
    picks: dict[tuple[str, int], Pick] = {}
    unknown = []
    for value in requests:
        matches = [("train", i) for i in range(len(train_ids))] if value == "all" else [by_name.get(value)]
        if matches == [None]:
            unknown.append(value)
        for match in filter(None, matches):
            picks.setdefault(match, Pick(match[0], match[1], "requested"))
    return list(picks.values()), unknown
