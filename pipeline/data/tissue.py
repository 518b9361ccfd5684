"""Tissue found on a low-resolution RGB picture (a slide's thumbnail, or an image without a mask file).

numpy and scipy.ndimage only. The colour logic is :mod:`pipeline.data.colour`'s, the one shared with hygiene:

1. **White balance** against the glass (:func:`colour.glass_white`, :func:`colour.white_balance`): a greenish or
   yellowish scanner cast tints glass and tissue alike, and dividing it out makes the glass neutral white again, so
   the cast is not taken for absorbing tissue.
2. **Absorbing**: summed optical density (:func:`colour.optical_density`) above a threshold: Otsu's on the summed
   OD, counted from the glass's own OD (a low percentile, which a cast too strong to balance lifts) and kept
   between :attr:`TissueSettings.min_od` (JPEG noise on glass stays out, and a glass-only picture, whose Otsu
   threshold splits noise, finds nothing) and :attr:`TissueSettings.max_od` (pale and faint tissue stays in even
   when dense tissue pushes Otsu's threshold up). The ceiling decides on most slides; Otsu, on faint ones. Gaps
   and bays narrower than :attr:`TissueSettings.close_um` (lumens open to a piece's edge) are closed.
3. **Pen** (:func:`colour.pen_mask`): green, blue and black strokes, kept where they form strokes (connected sets of
   at least :attr:`TissueSettings.min_stroke_pixels` spanning :attr:`TissueSettings.min_stroke_um`; scattered
   dark pixels and clusters of nuclei are none), widened by
   :attr:`TissueSettings.pen_margin` pixels so that a stroke's blurred edge does not become tissue, and taken out.
4. **Holes** in the tissue smaller than :attr:`TissueSettings.max_hole_um2` (lumens, a removed pen stroke enclosed
   by tissue) are filled, then the pen is taken out again: a pen circle drawn on glass around tissue encloses no
   tissue, and a larger enclosed area of glass stays out.
5. **Small objects** (dust, debris, specks) under :attr:`TissueSettings.min_area_um2` are dropped.

Areas are physical when the picture's micrometres per pixel are known; otherwise they are fractions of the
picture's area (:attr:`TissueSettings.min_area_fraction`, :attr:`TissueSettings.max_hole_fraction`). No tissue
gives an empty mask: the caller reports it.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy.ndimage import binary_dilation, binary_erosion, binary_fill_holes, find_objects, label

from pipeline.data.colour import (
    MIN_VIOLET_CHROMA,
    channel_sum,
    glass_white,
    od_hue_and_chroma,
    optical_density,
    pen_mask,
    white_balance,
)

_EIGHT = np.ones((3, 3), dtype=bool)  # 8-connectivity: a diagonal step joins two pixels of a stroke or a piece


@dataclass(frozen=True)
class TissueSettings:
    """How tissue is told from glass, pen and debris; see the module docstring."""

    # Summed OD (R + G + B) below this is glass: all channels >~ 245 after white balance, above JPEG noise (~0.02).
    min_od: float = 0.03
    # Both are counted from this percentile of the summed OD (the glass's, ~0 after white balance; the palest
    # tissue's where there is no glass).
    glass_percentile: float = 1.0
    # Otsu's threshold is never above this: faded tissue (70% of the way to white) still sums ~0.15-0.3 OD, while
    # Otsu between glass and dense H&E lands near 0.4-0.6.
    max_od: float = 0.10
    # A pen component needs this many pixels to be a stroke (a thumbnail's stray dark or saturated pixel is not).
    min_stroke_pixels: int = 8
    # ... and span at least this (its box's height or width): a marker line is >= 0.3 mm wide and millimetres long,
    # a cluster of dark nuclei (black- or violet-looking at high magnification) tens of micrometres.
    min_stroke_um: float = 150.0
    # Without an MPP: the span as a share of the picture's longest side.
    min_stroke_fraction: float = 0.1
    # Blue ink over tissue (a hue bluer than haematoxylin's) has at least this many times the OD chroma of the
    # picture's own stain (its absorbing pixels' median): a made slide's tissue at 4 um/px reaches 2.4x, the ink >= 4x.
    violet_factor: float = 3.0
    # ... and at least this OD chroma (JPEG noise near white is ~0.01; faded blue ink over tissue ~0.2).
    min_violet_chroma: float = 0.15
    # Pixels around a stroke also left out: its edge is a blend of ink and tissue or glass, which Otsu calls tissue.
    pen_margin: int = 2
    # Gaps and bays narrower than twice this are closed (white lumens open to a piece's edge, thin pale streaks).
    close_um: float = 40.0
    # Without an MPP: the closing radius as a share of the picture's longest side.
    close_fraction: float = 0.01
    # Holes (enclosed glass or pen) smaller than this are filled: a gland's lumen is about 0.01-0.1 mm^2.
    max_hole_um2: float = 250_000.0
    # Pieces smaller than this are dropped: 0.01 mm^2, a 100-um square (one 224-px tile at 0.5 um/px is 12,544 um^2).
    min_area_um2: float = 10_000.0
    # Without an MPP: holes up to this share of the picture are filled ...
    max_hole_fraction: float = 0.01
    # ... and pieces under this share of it are dropped.
    min_area_fraction: float = 0.0005

    def validate(self) -> TissueSettings:
        """Raise ValueError on a value outside its range; return self."""
        if not 0.0 <= self.min_od <= self.max_od:
            raise ValueError(f"TissueSettings needs 0 <= min_od <= max_od. Got {self.min_od}, {self.max_od} instead.")
        for name in ("min_stroke_pixels", "pen_margin"):
            if getattr(self, name) < 0:
                raise ValueError(f"TissueSettings.{name} must be >= 0. Got {getattr(self, name)} instead.")
        for name in ("max_hole_um2", "min_area_um2", "max_hole_fraction", "min_area_fraction", "min_stroke_um",
                     "min_stroke_fraction", "close_um", "close_fraction"):
            if not getattr(self, name) >= 0:
                raise ValueError(f"TissueSettings.{name} must be >= 0. Got {getattr(self, name)} instead.")
        return self


def otsu_threshold(values: np.ndarray, bins: int = 256) -> float:
    """Otsu's threshold of a 1-D sample: the value that maximises the between-class variance (its bin's upper edge).

    Where several cuts tie (an empty gap between the classes), the middle one. A constant sample returns its value.
    """
    values = np.asarray(values, dtype=np.float64).ravel()
    low, high = float(values.min()), float(values.max())
    if high <= low:
        return low
    counts, edges = np.histogram(values, bins=bins, range=(low, high))
    centres = (edges[:-1] + edges[1:]) / 2
    weight = np.cumsum(counts)[:-1].astype(np.float64)  # pixels at or below each cut
    total = float(counts.sum())
    cumulative = np.cumsum(counts * centres)[:-1]
    mean_low = cumulative / np.maximum(weight, 1)
    mean_high = (cumulative[-1] + counts[-1] * centres[-1] - cumulative) / np.maximum(total - weight, 1)
    between = weight * (total - weight) * (mean_low - mean_high) ** 2
    best = np.flatnonzero(between >= between.max() * (1 - 1e-9))  # cuts in an empty gap tie: take its middle
    return float(edges[1:-1][(best[0] + best[-1]) // 2])


def pen_strokes(balanced: np.ndarray, absorbing: np.ndarray, settings: TissueSettings, min_span: float) -> np.ndarray:
    """(H, W) bool: :func:`colour.pen_mask` pixels (any colour) in strokes.

    A stroke is an 8-connected set of >= ``min_stroke_pixels`` that spans (box height or width) at least
    ``min_span`` pixels: a stroke is long, a cluster of dark nuclei is not.

    Blue ink over tissue comes close to haematoxylin's hue; on a thumbnail it is told by a hue bluer than
    haematoxylin's (:data:`colour.THUMBNAIL_VIOLET_HUE`) with an OD chroma ``violet_factor`` times the median of
    the absorbing pixels' (the picture's own stain), at least ``min_violet_chroma`` and at most
    :data:`colour.MIN_VIOLET_CHROMA`.
    """
    chroma = od_hue_and_chroma(optical_density(balanced[absorbing]))[1] if absorbing.any() else np.zeros(1)
    stain = float(np.median(chroma))
    violet = min(max(settings.violet_factor * stain, settings.min_violet_chroma), MIN_VIOLET_CHROMA)
    pens = pen_mask(balanced, thumbnail_violet_chroma=violet)
    any_pen = pens["green"] | pens["blue"] | pens["black"]
    if not any_pen.any():
        return any_pen
    # Labelled after one dilation, as hygiene does: a stroke broken where the tissue under it looks like stain
    # (blue ink over haematoxylin) stays one stroke.
    labels, _ = label(binary_dilation(any_pen, _EIGHT), structure=_EIGHT)
    sizes = np.bincount(labels[any_pen], minlength=labels.max() + 1)
    keep = np.zeros(len(sizes), bool)
    for index, box in enumerate(find_objects(labels), start=1):
        span = max(box[0].stop - box[0].start, box[1].stop - box[1].start)
        keep[index] = sizes[index] >= settings.min_stroke_pixels and span >= min_span
    return any_pen & keep[labels]


def _components_at_least(mask: np.ndarray, min_pixels: float) -> np.ndarray:
    """(H, W) bool: the 8-connected components of ``mask`` with at least ``min_pixels`` pixels."""
    if not mask.any() or min_pixels <= 1:
        return mask
    labels, _ = label(mask, structure=_EIGHT)
    sizes = np.bincount(labels.ravel())
    sizes[0] = 0
    return sizes[labels] >= min_pixels


def _closed(mask: np.ndarray, radius: int) -> np.ndarray:
    """(H, W) bool: ``mask`` closed with a disc of ``radius`` pixels (the picture's edge does not erode it)."""
    if radius < 1 or not mask.any():
        return mask
    y, x = np.ogrid[-radius : radius + 1, -radius : radius + 1]
    disc = x * x + y * y <= radius * radius
    padded = np.pad(mask, radius + 1, mode="edge")
    closed = binary_erosion(binary_dilation(padded, disc), disc)
    return closed[radius + 1 : -radius - 1, radius + 1 : -radius - 1]


def detect_tissue(rgb: np.ndarray, mpp: float | None = None, settings: TissueSettings | None = None) -> np.ndarray:
    """Tissue of a low-resolution RGB picture: (H, W) bool; :func:`tissue_and_pen`'s first mask."""
    return tissue_and_pen(rgb, mpp, settings)[0]


def tissue_and_pen(
    rgb: np.ndarray, mpp: float | None = None, settings: TissueSettings | None = None
) -> tuple[np.ndarray, np.ndarray]:
    """Tissue and pen strokes of a low-resolution RGB picture; see the module docstring.

    Args:
        rgb: (H, W, 3) uint8 RGB, e.g. a slide's thumbnail at 4-16 um/px (a few hundred to a few thousand pixels a
            side is plenty).
        mpp: Micrometres per pixel of ``rgb`` (a slide's MPP times the thumbnail's downsample), for areas in um^2;
            None uses fractions of the picture's area.
        settings: Thresholds; defaults when None.

    Returns:
        (tissue, pen): (H, W) bool each, disjoint. Tissue is all False when there is none; pen is the strokes with
        their margin (tiles must not touch it: it is left out of tissue, but a tile may still reach over it).
    """
    settings = (settings or TissueSettings()).validate()
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.dtype != np.uint8:
        raise ValueError(f"detect_tissue needs an (H, W, 3) uint8 RGB picture. Got {rgb.shape} {rgb.dtype} instead.")
    if mpp is not None and not mpp > 0:
        raise ValueError(f"The picture's MPP must be a positive number of micrometres per pixel. Got {mpp} instead.")
    balanced = white_balance(rgb, glass_white(rgb))
    summed = channel_sum(optical_density(balanced))  # (H, W) float32
    # Thresholds count from the glass's own OD: a cast too strong for the white balance to take out (a glass-only
    # picture under a strong yellow cast) lifts the glass, and noise over it must not become tissue.
    base = float(np.percentile(summed, settings.glass_percentile))
    threshold = base + min(max(otsu_threshold(summed) - base, settings.min_od), settings.max_od)
    if mpp is None:
        max_hole, min_area = (f * summed.size for f in (settings.max_hole_fraction, settings.min_area_fraction))
        radius = settings.close_fraction * max(summed.shape)
        min_span = settings.min_stroke_fraction * max(summed.shape)
    else:
        max_hole, min_area = settings.max_hole_um2 / mpp**2, settings.min_area_um2 / mpp**2
        radius, min_span = settings.close_um / mpp, settings.min_stroke_um / mpp
    pen = pen_strokes(balanced, summed >= threshold, settings, min_span)
    if settings.pen_margin and pen.any():
        pen = binary_dilation(pen, _EIGHT, iterations=settings.pen_margin)
    absorbing = (summed >= threshold) & ~pen
    absorbing = _closed(absorbing, int(round(radius)))
    holes = binary_fill_holes(absorbing) & ~absorbing
    small_holes = holes & ~_components_at_least(holes, max_hole + 1)
    tissue = (absorbing | small_holes) & ~pen
    return _components_at_least(tissue, min_area), pen
