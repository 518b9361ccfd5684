"""The thresholds of the hygiene flags, each one a command-line flag (docs/hygiene.md: what they were read off)."""

from __future__ import annotations

from dataclasses import dataclass

from pipeline.flags import setting


@dataclass(frozen=True)
class QualitySettings:
    """Thresholds of the hygiene flags (each a command-line flag); the rules are in :mod:`pipeline.hygiene.rules`.

    The "read off" comments give the worst clean image over the 615 real images of glas15 and lc25000-lung and their
    stain variants (desaturated, faded, HED jitter, JPEG 40-50, 200-1000 px; ``benchmarks.calibrate_quality``) and
    colour casts (``benchmarks.colour_variants``), and the mildest planted problem.
    """

    # real near-duplicates <= 10 bits; distinct glas15 images >= 20 from their nearest
    phash_distance: int = setting(
        10, help="near duplicate: a flip/rotation of another image within this many bits of 64 (perceptual hash)"
    )
    # clean >= 0.23 (real >= 0.50); greyscale, blank slides, off-hue drawings <= 0.05
    min_stain_fraction: float = setting(
        0.10,
        help="non_tissue below this share of the tissue in H&E colours (optical-density hue), if also a robust "
        "outlier of the dataset",
    )
    # clean <= 0.0016; drawings with off-hue fills >= 0.37
    max_off_hue_fraction: float = setting(
        0.05, help="non_tissue above this share of masked pixels in hues H&E never has (yellow-green-cyan)"
    )
    # clean <= 0.40; the pink drawing 0.89, 0.63-0.65 small or varied
    max_flat_fill_fraction: float = setting(
        0.60,
        help="non_tissue above this share of perfectly flat, drawing-like tissue, if also a robust outlier of the "
        "dataset",
    )
    # clean <= 0.0005 (stress 0.0016); 8 px green strokes >= 0.0043; a 35 px green blob on 600x400 >= 0.03
    max_green_ink_fraction: float = setting(
        0.003, help="ink above this share of masked pixels in green pen strokes (after white balance)"
    )
    # clean <= 0.0022 (casts: 0.0026); 8 px blue strokes: docs/hygiene.md
    max_blue_ink_fraction: float = setting(0.003, help="ink above this share of masked pixels in blue pen strokes")
    # clean <= 0.0034 (HED jitter); 8 px black strokes >= 0.0048
    max_black_ink_fraction: float = setting(0.004, help="ink above this share of masked pixels in black pen strokes")
    # embedding-neighbour distance / its median; clean lc25000 and glas15 <= 2.2
    max_outlier_ratio: float = setting(
        3.0, help="non_tissue above this ratio of an image's embedding-neighbour distance to the median one"
    )
    # stain and flat-fill rules: also this many robust SDs from the dataset's median image
    robust_z: float = setting(
        3.0, help="the stain and flat-fill rules also need this many robust SDs (1.4826 MAD) from the median image"
    )
    # below this many images the median says too little: the thresholds alone decide
    min_images_for_z: int = setting(
        8, help="with fewer images than this, the stain and flat-fill thresholds decide alone"
    )
