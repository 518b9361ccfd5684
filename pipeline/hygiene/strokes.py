"""Pen strokes on a hygiene thumbnail: connected pen pixels on or beside tissue, and blue by contrast checked.

:func:`strokes` turns per-pixel pen colours (:func:`pipeline.data.colour.pen_mask`, or what a structure adds to its
surroundings, :func:`pipeline.data.colour.ink_contrast`) into strokes, each in the colour of most of its pixels;
:func:`bluer_than_structures` keeps, on an image without glass, only the blue strokes by contrast that are bluer than
the image's own nuclei (a cast through JPEG turns groups of nuclei blue). :mod:`pipeline.hygiene.stain` scores them.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import find_objects, label, median

from pipeline.data.colour import MIN_CONTRAST_CHROMA, MIN_CONTRAST_OD, PEN_COLOURS, dilated

MIN_STROKE_PIXELS = 8  # a pen stroke has at least this many thumbnail pixels of its colour ...
MIN_STROKE_SPAN = 5  # ... and spans at least this many thumbnail pixels (height or width of its box)
MIN_CONTRAST_SPAN = 30  # a stroke seen by its contrast (ink_contrast) spans at least this many: 8 px strokes >= 34
# without glass a blue stroke by contrast is this much bluer (median OD hue) than the other dark structures (a cast
# through JPEG: groups of nuclei 12-29 bluer, spans <= 0.66 x the side; pen >= 35.5, docs/hygiene.md) ...
MIN_CONTRAST_BLUER = 32.0
LONG_CONTRAST_SPAN = 0.8  # ... or, spanning at least this share of the thumbnail's longest side (>= 0.86), ...
MIN_LONG_CONTRAST_BLUER = 20.0  # ... this much bluer (>= 28.9); fewer structure pixels than this: no reference
MIN_STRUCTURE_PIXELS = 100
NEAR_TISSUE = 3  # ... within this many thumbnail pixels of tissue (pen on bare glass far from tissue harms nothing)

_EIGHT = np.ones((3, 3), dtype=bool)


def strokes(pens: dict[str, np.ndarray], tissue: np.ndarray, min_span: int = MIN_STROKE_SPAN) -> dict[str, np.ndarray]:
    """The pen pixels that form strokes on or beside ``tissue``, each stroke in the colour of most of its pixels.

    Components are taken over all colours after one dilation, so that a thin stroke sampled every k-th pixel stays
    one stroke, and a stroke whose ink looks bluer over haematoxylin or blacker over dense tissue keeps one colour.

    Args:
        pens: Colour -> (h, w) bool pen pixels (:func:`pipeline.data.colour.pen_mask`).
        tissue: (h, w) bool.
        min_span: A stroke spans at least this many pixels (height or width of its box).

    Returns:
        Colour -> (h, w) bool stroke pixels, disjoint.
    """
    any_pen = np.any(list(pens.values()), axis=0)
    if not any_pen.any():
        return pens
    labels, n = label(dilated(any_pen), structure=_EIGHT)
    counts = np.stack([np.bincount(labels[pens[colour]], minlength=n + 1) for colour in PEN_COLOURS])  # (3, n + 1)
    near = np.bincount(labels[dilated(tissue, 2 * NEAR_TISSUE + 1)], minlength=n + 1) > 0
    keep = np.zeros(n + 1, dtype=bool)
    for index, box in enumerate(find_objects(labels), start=1):
        span = max(box[0].stop - box[0].start, box[1].stop - box[1].start)
        keep[index] = counts[:, index].sum() >= MIN_STROKE_PIXELS and span >= min_span and near[index]
    colour_of = np.where(keep, counts.argmax(axis=0), -1)[labels]  # (h, w): the stroke's colour, -1 for none
    return {colour: any_pen & (colour_of == k) for k, colour in enumerate(PEN_COLOURS)}


def bluer_than_structures(contrast: dict[str, np.ndarray], black: np.ndarray, added: tuple[np.ndarray, ...]
                           ) -> np.ndarray:
    """(h, w) bool: the blue strokes of ``contrast`` whose median OD hue is bluer than the image's dark structures.

    Without glass a cast stays, and through JPEG it turns some groups of nuclei as blue by contrast as ink (76-86);
    but it turns every nucleus alike: a stroke counts when :data:`MIN_CONTRAST_BLUER` bluer than the median of what
    the other dark structures add (pixels ``ink_contrast`` finds strong, away from its strokes), or
    :data:`MIN_LONG_CONTRAST_BLUER` when it spans :data:`LONG_CONTRAST_SPAN` of the image, unlike groups of nuclei.

    Args:
        contrast: Colour -> (h, w) bool strokes by contrast (:func:`strokes` of ``ink_contrast``).
        black: (h, w) bool, the pixels ``ink_contrast`` finds black: no stain's structure.
        added: :func:`pipeline.data.colour.contrast_colour` of the thumbnail's OD.
    """
    blue = contrast["blue"]
    _, hue, chroma, mean = added
    taken = dilated(contrast["green"] | blue | contrast["black"], 5)
    structures = (mean >= MIN_CONTRAST_OD) & (chroma >= MIN_CONTRAST_CHROMA[1]) & ~black & ~taken
    if np.count_nonzero(structures) < MIN_STRUCTURE_PIXELS:
        return blue
    reference = float(np.median(hue[structures]))
    labels, n = label(dilated(blue), structure=_EIGHT)
    labels[~blue] = 0
    bluer = reference - np.asarray(median(hue, labels, np.arange(1, n + 1)))  # (n,) degrees
    spans = np.array([max(box[0].stop - box[0].start, box[1].stop - box[1].start) for box in find_objects(labels)])
    long = spans >= LONG_CONTRAST_SPAN * max(blue.shape)
    keep = (bluer >= MIN_CONTRAST_BLUER) | (long & (bluer >= MIN_LONG_CONTRAST_BLUER))
    return blue & np.concatenate([[False], keep])[labels]
