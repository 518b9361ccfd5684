"""The ``non_tissue`` and ``ink`` rules: each image's stain scores against thresholds and the dataset's own median.

Two kinds of rule:

- *Absolute*, for colours H&E never has however it is stained or scanned (saturated off-hue colour, pen strokes of
  each colour; judged after white balance, so a scanner's cast is no such colour):
  they hold whatever the rest of the dataset looks like, so a dataset where many slides carry ink has them flagged.
- *Absolute and relative*, for the scores a staining protocol, scanner or compression moves for a whole dataset
  (how much of the tissue is H&E-coloured, how much is a perfectly flat fill): the image must be past the threshold
  **and** more than ``robust_z`` robust SDs (1.4826 x MAD) from the dataset's median image on the bad side. A
  dataset pale or smooth throughout is then normal for itself. Below ``min_images_for_z`` images the threshold
  alone decides.

A missing score (NaN: a file scored by an older version) fires no rule; :mod:`pipeline.hygiene.assessment` counts
such images so that classification can say so. Each rule is one line of :func:`rule_lines`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np

from pipeline.hygiene.settings import QualitySettings

MAD_TO_SD = 1.4826  # the MAD of a normal distribution times this is its standard deviation
MIN_SPREAD = 0.01  # floor of 1.4826 x MAD, so that a dataset of identical scores does not divide by zero
RULES = {  # rule -> the flag it raises
    "little_stain": "non_tissue",
    "off_hue": "non_tissue",
    "flat_fills": "non_tissue",
    "embedding_outlier": "non_tissue",
    "green_ink": "ink",
    "blue_ink": "ink",
    "black_ink": "ink",
}
INK_COLOURS = ("green", "blue", "black")  # rule f"{colour}_ink", score f"q_{colour}_ink_fraction"


def robust_z(values: np.ndarray) -> np.ndarray:
    """(n,) ``(x - median) / max(1.4826 x MAD, 0.01)`` over the finite values; NaN stays NaN."""
    values = np.asarray(values, dtype=np.float64)
    finite = values[np.isfinite(values)]
    if finite.size == 0:
        return np.full(values.shape, np.nan)
    median = float(np.median(finite))
    spread = max(MAD_TO_SD * float(np.median(np.abs(finite - median))), MIN_SPREAD)
    return (values - median) / spread


def scores_of(attrs: Sequence[Mapping], key: str) -> np.ndarray:
    """(n,) float scores; NaN where an image lacks the score."""
    return np.array([float(a.get(key, np.nan)) for a in attrs], dtype=np.float64)


def apply_rules(scores: Mapping[str, np.ndarray], settings: QualitySettings) -> dict[str, np.ndarray]:
    """Each rule's (n,) bool result, keyed as :data:`RULES`.

    Args:
        scores: (n,) arrays ``q_stain_fraction``, ``q_off_hue_fraction``, ``q_flat_fill_fraction``,
            ``q_green_ink_fraction``, ``q_blue_ink_fraction``, ``q_black_ink_fraction`` (NaN where missing; a
            missing ink colour counts as none) and ``outlier_ratio``.
        settings: The thresholds.
    """
    stain, flat = scores["q_stain_fraction"], scores["q_flat_fill_fraction"]
    # a Python bool, so that `absolute_only | array` is an array; images without scores do not count
    absolute_only = int(np.isfinite(stain).sum()) < settings.min_images_for_z
    thresholds = {"green": settings.max_green_ink_fraction, "blue": settings.max_blue_ink_fraction,
                  "black": settings.max_black_ink_fraction}
    nothing = np.full(len(stain), np.nan)
    with np.errstate(invalid="ignore"):  # NaN compares False: a missing score fires nothing
        return {
            "little_stain": (stain < settings.min_stain_fraction)
            & (absolute_only | (robust_z(stain) < -settings.robust_z)),
            "off_hue": scores["q_off_hue_fraction"] > settings.max_off_hue_fraction,
            "flat_fills": (flat > settings.max_flat_fill_fraction)
            & (absolute_only | (robust_z(flat) > settings.robust_z)),
            "embedding_outlier": np.asarray(scores["outlier_ratio"], dtype=np.float64) > settings.max_outlier_ratio,
            **{f"{colour}_ink": np.asarray(scores.get(f"q_{colour}_ink_fraction", nothing)) > thresholds[colour]
               for colour in INK_COLOURS},
        }


def rule_lines(settings: QualitySettings | None = None) -> dict[str, str]:
    """One line per rule (docs and the calibration script print them)."""
    s = settings or QualitySettings()
    z = f"and more than {s.robust_z:g} robust SDs {{side}} the dataset's median image"
    few = f" (under {s.min_images_for_z} images: the threshold alone)"
    return {
        "little_stain": f"non_tissue: stain_fraction < {s.min_stain_fraction:g} {z.format(side='below')}{few}",
        "off_hue": f"non_tissue: off_hue_fraction > {s.max_off_hue_fraction:g}",
        "flat_fills": f"non_tissue: flat_fill_fraction > {s.max_flat_fill_fraction:g} {z.format(side='above')}{few}",
        "embedding_outlier": f"non_tissue: outlier_ratio > {s.max_outlier_ratio:g}",
        "green_ink": f"ink: green_ink_fraction > {s.max_green_ink_fraction:g}",
        "blue_ink": f"ink: blue_ink_fraction > {s.max_blue_ink_fraction:g}",
        "black_ink": f"ink: black_ink_fraction > {s.max_black_ink_fraction:g}",
    }
