"""The thresholds of the hygiene flags, each one a command-line flag (docs/hygiene.md: what they were read off)."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class QualitySettings:
    """Thresholds of the hygiene flags (each a command-line flag); the rules are in :mod:`pipeline.hygiene.rules`.

    The "read off" comments give the worst clean image over the 615 real images of glas15 and lc25000-lung and their
    stain variants (desaturated, faded, HED jitter, JPEG 40-50, 200-1000 px; ``benchmarks.calibrate_quality``) and
    colour casts (``benchmarks.colour_variants``), and the mildest planted problem.
    """

    phash_distance: int = 10  # real near-duplicates <= 10 bits; distinct glas15 images >= 20 from their nearest
    min_stain_fraction: float = 0.10  # clean >= 0.23 (real >= 0.50); greyscale, blank slides, off-hue drawings <= 0.05
    max_off_hue_fraction: float = 0.05  # clean <= 0.0016; drawings with off-hue fills >= 0.37
    max_flat_fill_fraction: float = 0.60  # clean <= 0.40; the pink drawing 0.89, 0.63-0.65 small or varied
    max_green_ink_fraction: float = 0.005  # clean <= 0.0005; a 35 px green blob on 600x400 >= 0.03
    max_blue_ink_fraction: float = 0.003  # clean <= 0.0022 (casts x1.5: 0.024); blue strokes: docs/hygiene.md
    max_black_ink_fraction: float = 0.004  # clean <= 0.0034 (HED jitter); 8 px black strokes >= 0.0048
    max_outlier_ratio: float = 3.0  # embedding-neighbour distance / its median; clean lc25000 and glas15 <= 2.2
    robust_z: float = 3.0  # stain and flat-fill rules: also this many robust SDs from the dataset's median image
    min_images_for_z: int = 8  # below this many images the median says too little: the thresholds alone decide
