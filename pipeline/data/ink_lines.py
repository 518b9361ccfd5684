"""Thin pen lines by their shape, named by their summed colour (hygiene's ink on the image box-averaged by 2 or more).

A 3 px stroke is about one pixel of hygiene's 160 px thumbnail, and JPEG's chroma subsampling averages colour over 2x2
pixels: pixel by pixel a thin black stroke over eosin reads pink and a thin blue one haematoxylin-violet. So lines are
found by their darkness (long, thin, dark: :func:`line_colours`), which JPEG keeps at full resolution, and named by
their colour summed along them (:func:`ink_lines`), which the subsampling keeps too. The colour arithmetic (optical
density, OD hue and chroma) is :mod:`pipeline.data.colour`'s.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import find_objects, label, uniform_filter

from pipeline.data.colour import (
    PEN_COLOURS,
    channel_mean,
    dilated,
    in_sector,
    od_hue_and_chroma,
    optical_density,
    running_extreme,
)

LINE_WINDOW = 7  # ink_lines: the surroundings of a thin line, intensity closed by this square (px of its view) ...
MIN_LINE_OD = 0.2  # ... to which a line pixel adds at least this mean OD ...
MIN_LINE_ALONG = 0.25  # ... and its best LINE_LENGTH-px segment at least this on average ...
LINE_LENGTH = 11
MAX_LINE_ACROSS = 0.5  # ... with at most this share of that across (a line has a direction, a nucleus none)
MIN_LINE_SPAN = 0.2  # a line spans at least this share of the image's longest side
LINE_COLOUR_WINDOW = 9  # a line's colour: over the mean of the pixels beside it within this square ...
MAX_COLOUR_ACROSS = 0.35  # ... summed over its straightest pixels (across <= this x along) ...
MIN_STRAIGHT = 0.14  # ... at least this share of the image's longest side of them, or the line has no colour
# (0.2 left unnamed the pieces of a thin stroke broken where it crosses dense nuclei: 43-57 straight px of 300)
# Colour of a line's sum (colour benchmark, 3 and 8 px strokes, PNG and JPEG): black ink OD chroma / mean OD mostly
# 0.03-0.33, green at OD hue 352-57, blue at 65-98; every line of a clean image (originals, casts, jitter) >= 0.49
# and at OD hue 106-145 (haematoxylin's lines, eosin's), but a line of haematoxylin alone lies at its 96-97 (a lung
# tile's under unclipped HED jitter, H x1.4, E x0.8), so blue stops at 90
MIN_LINE_GREEN_RATIO = 0.2  # below this OD chroma / mean OD a line is black whatever its hue ...
LINE_GREEN_HUE = (285.0, 58.0)  # ... else green in this OD-hue sector ...
MAX_LINE_BLACK_RATIO = 0.4  # ... else black below this ...
LINE_BLUE_HUE = (58.0, 90.0)  # ... else blue in this sector, short of haematoxylin alone (96) ...
# JPEG (q80) turns a 3 px blue stroke's sum towards the tissue's colour (86-106) and a black one's towards its
# chroma (0.43-0.53 x the mean OD over crowded lung tiles), where clean lines lie too. But a stroke is long: a line
# of at least LONG_LINE x the longest side in pixels is named against the dark structures in its box that are no
# line (nuclei, fibres; their colour summed alike), which show what the stain looks like there after JPEG and any
# jitter: a line of the tissue's own colour is tissue. Long lines of 615 real images under 6 variants (JPEG, HED
# jitter, x1.5 casts) and the colour benchmark's casts and jitter: OD chroma / mean OD >= 0.81 x their structures',
# OD hue at most 12.7 degrees bluer; long lines of 3 and 8 px strokes: black <= 0.52 x, blue >= 14.4 bluer
LONG_LINE = 1.2
MIN_BLUER = 15.0  # blue: at least this many degrees of OD hue bluer than the structures' ...
MAX_RELATIVE_BLUE_HUE = 110.0  # ... and short of the long clean lines (>= 110 but one at 98.5 bluer by 3.4 only)
MAX_RELATIVE_BLACK = 2.0 / 3.0  # else black: OD chroma / mean OD below this share of the structures'
# A shorter line is blue in LINE_BLUE_HUE only when this much bluer than the structures in its box (where there are
# enough): short blue lines of the benchmark's strokes lie >= 31.4 bluer; the one short blue line of every real image
# under every clean variant (lung train 170, a x1.5 green cast through JPEG: a cell border at the image's edge read
# 81 degrees) 21.4
MIN_SHORT_BLUER = 26.0
# With fewer such structures than MIN_STRAIGHT x the side (glass, pale tissue), a long line is blue up to 100: every
# clean line below 100 of the colour benchmark was short (<= 0.5 x the side)
LONG_LINE_BLUE_HUE = (58.0, 100.0)


def _closing(rgb: np.ndarray, size: int) -> np.ndarray:
    """(h, w, 3) uint8: each channel of ``rgb`` closed by a ``size`` x ``size`` square (max, then min; edges kept)."""
    out = rgb
    for extreme in (np.maximum, np.minimum):
        for axis in (0, 1):
            out = running_extreme(out, size, axis, extreme)
    return out


def _segment_offsets(length: int, width: int) -> np.ndarray:
    """(8, length) flat offsets, in an image ``width`` px wide, of a segment's pixels in each of 8 directions."""
    half = length // 2
    angles = np.linspace(0.0, np.pi, 8, endpoint=False)
    return np.array([[int(round(k * np.sin(angle))) * width + int(round(k * np.cos(angle)))
                      for k in range(-half, half + 1)] for angle in angles], dtype=np.intp)


def _oriented_means(grey: np.ndarray, where: np.ndarray, length: int = LINE_LENGTH) -> tuple[np.ndarray, np.ndarray]:
    """(h, w) float mean of ``grey`` along the best of 8 segment directions (``length`` px) and across it.

    Computed only where ``where`` ((h, w) bool) holds, 0 elsewhere: a line pixel must be dark itself, so the few
    candidates (a tenth of a tissue image) are all that is summed. All 8 x ``length`` pixels of every candidate are
    gathered at once and added along the segment in its order (numpy adds over a leading axis one element after the
    other), so the sums are the same bits as a loop over the segment's pixels.
    """
    half = length // 2
    padded = np.pad(grey, half, mode="edge")
    rows, columns = np.nonzero(where)
    base = (rows + half) * padded.shape[1] + columns + half  # flat index of each candidate in ``padded``
    gathered = padded.ravel()[_segment_offsets(length, padded.shape[1])[:, :, None] + base]  # (8, length, n)
    means = gathered.sum(axis=1) / grey.dtype.type(2 * half + 1)  # (8, n)
    best = means.argmax(axis=0)  # the first of equal maxima, as a strictly-better scan keeps
    picked = np.arange(len(base))
    along_image, across_image = np.zeros_like(grey), np.zeros_like(grey)
    along_image[rows, columns] = means[best, picked]
    across_image[rows, columns] = means[(best + 4) % 8, picked]  # 4 of 8 directions further on: across
    return along_image, across_image


def line_colours(rgb: np.ndarray) -> list[tuple[tuple[slice, slice], np.ndarray, np.ndarray]]:
    """Long thin dark lines of ``rgb`` ((h, w, 3) uint8) and their summed colour; see :func:`ink_lines`.

    Returns:
        One (box, pixels, od, structures) per line: its bounding box, (box shape) bool pixels, (3,) float64 mean OD
        over what lies beside it, and the same for the dark structures in its box that are no line (when there are at
        least :data:`MIN_STRAIGHT` x the side of them, else None).
    """
    background = _closing(rgb, LINE_WINDOW)
    added = channel_mean(optical_density(rgb) - optical_density(background))  # (h, w) >= 0
    dark = added >= MIN_LINE_OD
    along, across = _oriented_means(added, dark)
    line = dark & (along >= MIN_LINE_ALONG) & (across <= MAX_LINE_ACROSS * along)
    if not line.any():
        return []
    eight = np.ones((3, 3), dtype=bool)
    grown = dilated(line)
    beside = ~grown  # the local colour without the line: mean of the pixels beside it
    labels, _ = label(grown, structure=eight)
    labels[~line] = 0
    side = max(rgb.shape[:2])
    lines = []
    for index, box in enumerate(find_objects(labels), start=1):
        if box is None or max(box[0].stop - box[0].start, box[1].stop - box[1].start) < MIN_LINE_SPAN * side:
            continue
        pixels = labels[box] == index
        # colour from the straightest pixels only: tissue the line touches (nuclei, cell borders) joins it in short
        # spurs whose pixels have no clear direction, and their haematoxylin would tint the sum
        straight = pixels & (across[box] <= MAX_COLOUR_ACROSS * along[box])
        if straight.sum() < MIN_STRAIGHT * side:
            continue
        local = _local_colour(rgb, beside, box)
        structures = dark[box] & beside[box]  # nuclei and fibres: dark, not on or next to a line
        if structures.sum() < MIN_STRAIGHT * side:
            structures = None
        lines.append((box, pixels, _summed_od(rgb[box], local, straight),
                      None if structures is None else _summed_od(rgb[box], local, structures)))
    return lines


def _summed_od(rgb: np.ndarray, local: np.ndarray, where: np.ndarray) -> np.ndarray:
    """(3,) float64 OD of the summed intensity of ``rgb`` over the summed ``local`` colour, both over ``where``."""
    seen = rgb[where].astype(np.float64).sum(axis=0)
    expected = local[where].astype(np.float64).sum(axis=0)
    return -np.log10((seen + 1.0) / (expected + 1.0))


def _local_colour(rgb: np.ndarray, beside: np.ndarray, box: tuple[slice, slice]) -> np.ndarray:
    """(box shape, 3) float32 mean colour of the ``beside`` pixels within :data:`LINE_COLOUR_WINDOW` of each pixel.

    Filtered over the box and a margin of half the window only (not the whole image: a line's box is a fraction of
    it); the margin gives every pixel of the box its whole window, and the image's own edges are reflected as before.
    """
    margin = LINE_COLOUR_WINDOW // 2
    rows = slice(max(0, box[0].start - margin), min(rgb.shape[0], box[0].stop + margin))
    columns = slice(max(0, box[1].start - margin), min(rgb.shape[1], box[1].stop + margin))
    keep = beside[rows, columns].astype(np.float32)
    weight = uniform_filter(keep, LINE_COLOUR_WINDOW)
    local = np.stack([uniform_filter(rgb[rows, columns, c].astype(np.float32) * keep, LINE_COLOUR_WINDOW)
                      for c in range(3)], axis=-1) / np.maximum(weight, 1e-3)[..., None]
    inner = (slice(box[0].start - rows.start, box[0].stop - rows.start),
             slice(box[1].start - columns.start, box[1].stop - columns.start))
    return local[inner]


def ink_lines(rgb: np.ndarray) -> dict[str, np.ndarray]:
    """Thin pen lines by their shape, named by their colour: colour -> (h, w) bool, disjoint.

    Shape from darkness alone, which JPEG keeps at full resolution: the mean OD a pixel adds to its surroundings
    (:data:`LINE_WINDOW`, as in :func:`pipeline.data.colour.ink_contrast`) at least :data:`MIN_LINE_OD`, at least
    :data:`MIN_LINE_ALONG` on average along a :data:`LINE_LENGTH`-px segment in its best direction, and at most
    :data:`MAX_LINE_ACROSS` of that across it: long and thin, which nuclei (short) and tissue texture (no direction)
    are not. Connected lines spanning at least :data:`MIN_LINE_SPAN` of the image are named by their colour taken
    over all their pixels at once: summed intensity over the summed local mean of the pixels beside the line, per
    channel. A sum is what JPEG's chroma subsampling keeps (it averages colour over 2x2 pixels, which turns a thin
    black line over eosin pink pixel by pixel), and a cast cancels in the ratio. Black: OD chroma below
    :data:`MAX_LINE_BLACK_RATIO` of the mean OD; green or blue by OD hue (:data:`LINE_GREEN_HUE`,
    :data:`LINE_BLUE_HUE`); tissue's own lines (haematoxylin, eosin) are none. JPEG moves a thin stroke's sum
    towards the tissue's colour, but a stroke is long: a line of at least :data:`LONG_LINE` x the image's longest
    side in pixels is compared with the dark structures in its box that are no line, summed alike: blue if
    :data:`MIN_BLUER` degrees bluer (up to :data:`MAX_RELATIVE_BLUE_HUE`), else black if its OD chroma / mean OD is
    below :data:`MAX_RELATIVE_BLACK` of theirs; with too few structures, blue in :data:`LONG_LINE_BLUE_HUE`. A
    shorter line in :data:`LINE_BLUE_HUE` is blue only when :data:`MIN_SHORT_BLUER` degrees bluer than its
    structures (where it has enough of them).

    Args:
        rgb: (h, w, 3) uint8, e.g. the image box-averaged by 2 or more (aligned to JPEG's 2x2 colour blocks).
    """
    out = {colour: np.zeros(rgb.shape[:2], dtype=bool) for colour in PEN_COLOURS}
    long_line = LONG_LINE * max(rgb.shape[:2])
    for box, pixels, od, structures in line_colours(rgb):
        colour = _line_colour(od, pixels.sum() >= long_line, structures)
        if colour is not None:
            out[colour][box] |= pixels
    return out


def _line_colour(od: np.ndarray, long: bool, structures: np.ndarray | None) -> str | None:
    """The pen colour of a line's summed OD ((3,)), or None for tissue; see :func:`ink_lines`.

    ``long``: at least :data:`LONG_LINE` x the side in pixels; ``structures``: the summed OD ((3,)) of the dark
    structures beside the line, or None.
    """
    hue, chroma = (float(v) for v in od_hue_and_chroma(od))
    mean = float(od.mean())
    if mean <= 0:
        return None
    if chroma < MIN_LINE_GREEN_RATIO * mean:
        return "black"
    if in_sector(np.array(hue), LINE_GREEN_HUE):
        return "green"
    if chroma < MAX_LINE_BLACK_RATIO * mean:
        return "black"
    if in_sector(np.array(hue), LINE_BLUE_HUE):
        if long or structures is None or float(structures.mean()) <= 0:
            return "blue"
        return "blue" if hue <= float(od_hue_and_chroma(structures)[0]) - MIN_SHORT_BLUER else None
    if not long:
        return None
    if structures is None or float(structures.mean()) <= 0:  # nothing to compare with: the long lines' sector
        return "blue" if in_sector(np.array(hue), LONG_LINE_BLUE_HUE) else None
    tissue_hue, tissue_chroma = (float(v) for v in od_hue_and_chroma(structures))
    if hue <= min(MAX_RELATIVE_BLUE_HUE, tissue_hue - MIN_BLUER):  # above LINE_BLUE_HUE here
        return "blue"
    if chroma / mean < MAX_RELATIVE_BLACK * tissue_chroma / float(structures.mean()):
        return "black"
    return None
