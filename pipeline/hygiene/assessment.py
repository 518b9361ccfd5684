"""Dataset hygiene: flag duplicates, non-tissue images and ink from the cache, for people and for training.

Flags (one row per image, train and test, in ``quality.csv`` next to the cache):

- ``exact_duplicate``: another image has the same file or the same decoded pixels.
- ``near_duplicate``: some flip or 90-degree rotation of another image has a perceptual hash within
  ``phash_distance`` bits (of 64) of this one (resized and re-encoded copies included).
- ``shared_mask``: another image with other pixels has the identical mask file (the challenge's planted cartoons
  all share one mask); a mask that is empty or covers the whole image does not count.
- ``non_tissue`` and ``ink``: the rules of :mod:`pipeline.hygiene.rules` on the stain scores of
  :mod:`pipeline.hygiene.stain` and the embedding outlier ratio.

Slides also get the tissue detector's account (:mod:`pipeline.hygiene.slide_stats`): ``tissue_fraction``,
``pen_fraction`` and ``pen_<colour>_fraction`` of the thumbnail (empty for images). They raise no flag: tiles
already avoid the pen and cover only the tissue found. A slide's hashes and pixel checksum are its thumbnail's, so a
copy, a re-encoded or rescaled scan of the same slide is found like a copy of an image.

Scores of files made by an older :data:`~pipeline.hygiene.checks.QUALITY_VERSION` are never mixed with current ones:
they count as missing (no ``non_tissue`` or ``ink`` flag) and :meth:`QualityReport.unscored_warning` says how many
images that concerns and how to re-score them. Duplicates of every kind form ``duplicate_group``: a group is never
split across cross-validation folds.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

import numpy as np

from pipeline.cache.featureset import FeatureSet
from pipeline.cache.schema import pixel_checksum
from pipeline.hygiene.checks import SCORES, SLIDE_STATS, hamming, is_scored
from pipeline.hygiene.groups import group_by_shared_keys, link_pairs, near_duplicates, shared_key_pairs
from pipeline.hygiene.rules import RULES, apply_rules, scores_of
from pipeline.hygiene.settings import QualitySettings

QUALITY_FILE = "quality.csv"  # next to the cache and in each run folder
QUALITY_SHEET = "quality_flagged.png"  # contact sheet of the flagged images, next to the cache
FLAGS = ("exact_duplicate", "near_duplicate", "shared_mask", "non_tissue", "ink")
EXCLUDED_FROM_TRAINING = ("non_tissue", "ink")  # outliers and artefacts; see pipeline.hygiene.leave_out


@dataclass
class QualityReport:
    """Scores, flags and duplicate groups of a set of images (all arrays have one row per image).

    Attributes:
        rules: Each rule of :data:`pipeline.hygiene.rules.RULES`, (n,) bool: which rule raised a flag.
        unscored: (n,) bool, images whose file lacks the current hygiene scores (no non_tissue or ink flag).
    """

    image_ids: list[str]
    sample_index: list[str]
    splits: list[str]
    scores: dict[str, np.ndarray]
    flags: dict[str, np.ndarray]
    duplicate_group: np.ndarray
    nearest: list[str]  # id of the image with the closest perceptual hash
    rules: dict[str, np.ndarray]
    unscored: np.ndarray

    def counts(self) -> dict[str, int]:
        """Number of images per flag."""
        return {flag: int(self.flags[flag].sum()) for flag in FLAGS}

    def excluded(self) -> np.ndarray:
        """(n,) bool: images that training leaves out by default."""
        return np.any([self.flags[flag] for flag in EXCLUDED_FROM_TRAINING], axis=0)

    def reasons(self, i: int) -> list[str]:
        """The flags raised for image ``i``."""
        return [flag for flag in FLAGS if self.flags[flag][i]]

    def rules_of(self, i: int) -> list[str]:
        """The rules that fired for image ``i`` (e.g. ``little_stain``, ``green_ink``)."""
        return [rule for rule in RULES if self.rules[rule][i]]

    def unscored_warning(self) -> str | None:
        """One line when some images lack the current hygiene scores, else None."""
        n = int(self.unscored.sum())
        if not n:
            return None
        return (
            f"{n} of {len(self.image_ids)} images lack the current hygiene scores (their feature files were made by "
            "an older version), so they cannot be flagged non_tissue or ink; run python extract.py with the same "
            "flags to re-score them without re-embedding"
        )

    def summary(self) -> str:
        """e.g. ``3 non_tissue, 2 ink, 4 exact_duplicate`` (flags with no image omitted)."""
        return ", ".join(f"{n} {flag}" for flag, n in self.counts().items() if n) or "no image flagged"


def _hashes(attrs: list[dict]) -> tuple[np.ndarray, np.ndarray]:
    """(n, 8) uint64 dihedral hashes, and (n,) bool: the image has hashes (others are compared with nothing)."""
    rows, present = [], []
    for item in attrs:
        values = item.get("phashes")
        values = json.loads(values) if isinstance(values, str) else values
        present.append(bool(values))
        rows.append([int(v, 16) for v in values] if values else [0] * 8)
    return np.array(rows, dtype=np.uint64).reshape(len(attrs), 8), np.array(present, dtype=bool)


MIN_IMAGES_FOR_OUTLIERS = 20  # below this the median neighbour distance is too noisy to judge by


def _outlier_ratio(embeddings: np.ndarray, groups: np.ndarray) -> np.ndarray:
    """Cosine distance from each image embedding to its k-th nearest other one, over the median of those distances.

    A neighbour distance, not a distance to the centre, so that class clusters are not outliers; k grows with the
    data set (n // 20, between 1 and 10) so that a handful of similar odd images cannot hide each other. Images of
    the same duplicate group are not each other's neighbours: a copy says nothing about how typical an image is, and
    the near-zero distances of copies would pull the median down (a stain-varied set with 13 copies among 37 images
    reached ratios of 4.9 on clean images that way; 1.9 without them). Returns zeros for fewer than
    :data:`MIN_IMAGES_FOR_OUTLIERS` images, NaN for an image with fewer than k images outside its group.

    Args:
        embeddings: (n, D) image embeddings.
        groups: (n,) duplicate group of each image.
    """
    n = len(embeddings)
    if n < MIN_IMAGES_FOR_OUTLIERS:
        return np.zeros(n)
    unit = embeddings / np.maximum(np.linalg.norm(embeddings, axis=1, keepdims=True), 1e-12)
    k = int(np.clip(n // 20, 1, 10))
    distance = np.empty(n)
    for start in range(0, n, 1024):  # blocks keep memory at O(1024 n)
        block = 1.0 - unit[start : start + 1024] @ unit.T
        block[groups[start : start + 1024, None] == groups[None, :]] = np.inf  # itself and its copies
        distance[start : start + len(block)] = np.partition(block, k - 1, axis=1)[:, k - 1]
    distance[~np.isfinite(distance)] = np.nan
    finite = distance[np.isfinite(distance)]
    return distance / max(float(np.median(finite)) if finite.size else 0.0, 1e-12)


def assess(
    image_ids: list[str],
    sample_index: list[str],
    attrs: list[dict],
    embeddings: np.ndarray,
    settings: QualitySettings | None = None,
) -> QualityReport:
    """Score and flag every image.

    Args:
        image_ids: (n,) ids such as ``train/img_0000``.
        sample_index: (n,) file names.
        attrs: (n,) feature-file attributes (checksums, ``q_version`` and ``q_*`` scores, ``phashes``,
            ``mask_fraction``).
        embeddings: (n, D) image-level mean embeddings.
        settings: Thresholds.
    """
    settings = settings or QualitySettings()
    n = len(image_ids)
    files = [a.get("image_sha256") for a in attrs]
    # a checksum kind matches only its own: equal pixels in a file from before xxh3 and in a newer one (other file
    # bytes) are linked by their equal perceptual hashes instead, as near duplicates
    pixels = [pixel_checksum(a) for a in attrs]
    exact_groups = group_by_shared_keys(files, pixels)
    hashes, hashed = _hashes(attrs)
    near_pairs, nearest_distance, nearest_index = near_duplicates(hashes, hashed, exact_groups,
                                                                  settings.phash_distance, hamming)
    # "": no mask file (tissue found automatically), which no two images can share
    masks = [a.get("mask_sha256") or None if 0.0 < float(a.get("mask_fraction", 0.5)) < 1.0 else None for a in attrs]
    shared, mask_pairs = shared_key_pairs(masks, exact_groups)
    groups = link_pairs(exact_groups, np.concatenate([near_pairs, mask_pairs]))
    near = np.zeros(n, dtype=bool)
    near[near_pairs.ravel()] = True
    unscored = np.array([not is_scored(a) for a in attrs], dtype=bool)
    scores = {key: np.where(unscored, np.nan, scores_of(attrs, key)) for key in SCORES}  # never mix versions
    scores["outlier_ratio"] = _outlier_ratio(np.asarray(embeddings, dtype=np.float64), groups)
    for key in SLIDE_STATS:  # slides only: NaN (an empty cell) for images
        scores[key.removeprefix("slide_")] = np.array([float(a.get(key, np.nan)) for a in attrs], dtype=np.float64)
    rules = apply_rules(scores, settings)
    flags = {
        "exact_duplicate": np.bincount(exact_groups, minlength=n)[exact_groups] > 1,
        "near_duplicate": near,
        "shared_mask": shared,
        "non_tissue": np.any([rules[rule] for rule, flag in RULES.items() if flag == "non_tissue"], axis=0),
        "ink": np.any([rules[rule] for rule, flag in RULES.items() if flag == "ink"], axis=0),
    }
    scores["nearest_phash_distance"] = nearest_distance.astype(np.float64)
    nearest = [image_ids[j] for j in nearest_index] if n > 1 else [""] * n
    splits = [image_id.split("/", 1)[0] for image_id in image_ids]
    return QualityReport(list(image_ids), list(sample_index), splits, scores, flags, groups, nearest, rules, unscored)


def assess_feature_sets(feature_sets: list[FeatureSet], settings: QualitySettings | None = None) -> QualityReport:
    """Assess the images of several splits together (so duplicates across splits are found), in the given order."""
    return assess(
        [i for fs in feature_sets for i in fs.image_ids],
        [s for fs in feature_sets for s in fs.sample_index],
        [a for fs in feature_sets for a in fs.image_attrs],
        np.concatenate([fs.image_embeddings() for fs in feature_sets]),
        settings,
    )
