"""The thresholds of the hygiene flags, each one a command-line flag (docs/hygiene.md: what they were read off)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QualitySettings:
    """Thresholds of the hygiene flags (each a command-line flag)."""

    phash_distance: int = 10  # real near-duplicates <= 10 bits; distinct glas15 images >= 20 from their nearest
    min_he_fraction: float = 0.15  # real H&E >= 0.28 on 615 images
    max_off_hue_fraction: float = 0.05  # real H&E <= 0.001
    max_flat_fraction: float = 0.8  # real H&E <= 0.53 (smooth resized JPEGs); drawings >= 0.89
    max_green_fraction: float = 0.005  # real H&E <= 0.0006
    max_outlier_ratio: float = 3.0  # embedding-neighbour distance / its median; clean lc25000 and glas15 <= 2.2
