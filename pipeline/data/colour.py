"""Per-pixel colour of H&E images in optical density (OD): white balance against the glass, stain hue, pen colours.

One implementation for every reader of colour: the hygiene scores (:mod:`pipeline.hygiene.stain`) and a tissue
detector on a slide thumbnail both call :func:`glass_white`, :func:`white_balance`, :func:`optical_density`,
:func:`od_hue_and_chroma`, :func:`pen_mask` and :func:`ink_contrast` on an (H, W, 3) uint8 RGB array (hygiene
also :func:`ink_lines`).

- ``OD = -log10((I + 1) / 256)`` per channel (Beer-Lambert): stain concentration scales a pixel's OD vector, a
  brighter or darker exposure adds the same OD to every channel. Its colour part ``OD - mean(OD)`` is a 2-D vector
  (basis ``(1, -1, 0)/sqrt 2``, ``(1, 1, -2)/sqrt 6``) with an *OD hue* (degrees: haematoxylin 96, eosin 152, DAB
  234, green inks 285-42, blue inks 42-76 on glass) and an *OD chroma* (its length: 0 for grey, white and black).
- *White balance* (von Kries): a scanner's colour cast tints the glass and scales each channel of every pixel by the
  same factor, i.e. adds the same OD vector everywhere. The glass is estimated from the brightest, least textured
  pixels (:func:`glass_white`); dividing each channel by it makes the glass neutral white and removes the cast from
  the tissue's hues. An image without enough glass (tissue everywhere) is left as it is, unless its brightest
  pixels have a colour H&E never has: then only that colour is taken out.
- *Pen* (:func:`pen_mask`, on a balanced image): green and teal ink by OD hue; blue ink by a hue short of
  haematoxylin's, or, for blue-violet ink that shares its hue, by an OD chroma that stain never reaches; black ink
  by a dark, nearly neutral OD. Pen over dense tissue adds the stain's OD to its own, so there it can look like
  stain. Strokes are told from scattered pixels by the caller (connected components).
- *Pen by contrast* (:func:`ink_contrast`, balanced or not): the OD a thin structure adds to its surroundings is
  the ink's own colour over glass and stain alike, and a cast cancels; it names blue over eosin, which has
  haematoxylin's hue, and ink on images without glass (:func:`find_glass` None), whose colours a cast can mimic.
- *Thin lines* (:func:`ink_lines`, on the image box-averaged by 2 or more): found by their shape (long, thin, dark),
  which JPEG keeps, and named by their colour summed along them, which JPEG's chroma subsampling keeps too.

A tissue detector would take tissue = absorbing (summed OD >= 0.05 after :func:`white_balance`) and not
:func:`pen_mask`.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import find_objects, label, uniform_filter

HE_HUE = (55.0, 255.0)  # OD-hue sector of H&E (degrees): haematoxylin 96, eosin 152, red cells and pigment <= 250
GREEN_HUE = (285.0, 42.0)  # OD-hue sector of green and teal inks (wraps through 0), also over tissue (35-40)
BLUE_HUE = (42.0, 76.0)  # OD-hue sector of blue inks: short of haematoxylin (96), which no H&E mix goes below
VIOLET_HUE = (76.0, 135.0)  # OD-hue sector of blue-violet inks, shared with haematoxylin: chroma decides
# On a thumbnail, blue ink over tissue lies between blue ink on glass and haematoxylin (96); real nuclei seen at
# 1.5-6 um/px with high chroma lie at >= 100 (lc25000-lung, 1st percentile 100.9)
THUMBNAIL_VIOLET_HUE = (76.0, 96.0)
MIN_GREEN_CHROMA = 0.03  # green ink: at least this OD chroma (JPEG noise near white is ~0.01)
MIN_BLUE_CHROMA = 0.3  # blue ink: at least this OD chroma (a blue marker on glass ~0.4)
MIN_VIOLET_CHROMA = 1.9  # blue-violet ink: OD chroma haematoxylin never reaches (615 real images: <= 1.76)
MIN_BLACK_OD = 0.8  # black ink: mean OD at least this (mean level < ~40) ...
MAX_BLACK_CHROMA_RATIO = 0.35  # ... OD chroma below this share of mean OD (real dark pixels: 99.9% >= 0.54)
MAX_STAIN_OD = 2.4  # summed OD above this (mean level < ~40) is too dark for a hue: noise in black pictures
GLASS_PERCENTILE = 90.0  # glass candidates: at least as bright as this percentile of the image's brightness ...
GLASS_MAX_STD = 6.0  # ... and flat: RMS grey-level difference (of 255) to the 4 neighbours below this
MIN_GLASS_SHARE = 0.02  # fewer flat bright pixels than this share of the image: no glass
MIN_GLASS_LEVEL = 170.0  # a glass estimate darker than this in any channel is tissue, not glass
MIN_CAST_CHROMA = 0.02  # without glass, brightest pixels of less OD chroma are neutral: nothing to correct
MAX_CAST_CHROMA = 0.15  # more OD chroma is a coloured object (a sky-blue fill 0.18), not a cast (x1.5: 0.12)
PEN_COLOURS = ("green", "blue", "black")
CONTRAST_WINDOW = 9  # background of :func:`ink_contrast`: OD opened by this square (thumbnail px), wider than a stroke
MIN_CONTRAST_OD = 0.2  # ink adds at least this mean OD to its surroundings (a pen at 60% coverage ~0.3) ...
CONTRAST_GREEN_HUE = (285.0, 50.0)  # ... in the OD hue of green ink (~1 degree) ...
CONTRAST_BLUE_HUE = (40.0, 90.0)  # ... or of blue ink (~68; a nucleus adds haematoxylin, 96 and above) ...
MIN_CONTRAST_CHROMA = (0.1, 0.15)  # ... with at least this OD chroma (green, blue; the ink alone ~0.4) ...
MIN_CONTRAST_BLACK_OD = 0.4  # ... or, for black, at least this mean OD ...
MAX_CONTRAST_BLACK_RATIO = MAX_BLACK_CHROMA_RATIO  # ... and OD chroma below this share of it
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
# ... or, for a line of at least LONG_LINE x the longest side in pixels, up to 100: JPEG (q80) turns a 3 px blue
# stroke's sum towards the tissue's colour (86-98), but every clean line below 100 (615 real images under 10 variants,
# the colour benchmark) is short (<= 0.5 x the side; the long ones, up to 4.7 x, lie at 112 and above)
LONG_LINE_BLUE_HUE = (58.0, 100.0)
LONG_LINE = 1.2

_HUE_BASIS = np.array(
    [[1.0 / np.sqrt(2.0), 1.0 / np.sqrt(6.0)], [-1.0 / np.sqrt(2.0), 1.0 / np.sqrt(6.0)], [0.0, -2.0 / np.sqrt(6.0)]],
    dtype=np.float32,
)  # (3, 2): OD (R, G, B) -> coordinates in the plane orthogonal to grey; grey (1, 1, 1) maps to (0, 0)
# -log10((I + 1) / 256) for every 8-bit level: a table lookup instead of a logarithm per pixel
_OD_TABLE = (-np.log10((np.arange(256, dtype=np.float64) + 1.0) / 256.0)).astype(np.float32)
NEUTRAL_WHITE = np.array([255.0, 255.0, 255.0], dtype=np.float32)


def optical_density(pixels: np.ndarray) -> np.ndarray:
    """(..., 3) uint8 RGB to (..., 3) float32 optical density ``-log10((I + 1) / 256)``: 0 for white, 2.4 for black."""
    return np.take(_OD_TABLE, pixels)  # a third faster than _OD_TABLE[pixels], the same values


def channel_sum(values: np.ndarray) -> np.ndarray:
    """(..., 3) -> (...): the three channels added in numpy's own order (so the same bits as ``sum(axis=-1)``).

    numpy reduces a last axis of length 3 one element at a time, 20x slower than adding the three planes.
    """
    return values[..., 0] + values[..., 1] + values[..., 2]


def channel_mean(values: np.ndarray) -> np.ndarray:
    """(..., 3) float -> (...): the same bits as ``mean(axis=-1)`` (see :func:`channel_sum`)."""
    return channel_sum(values) / values.dtype.type(3)


def od_hue_and_chroma(od: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """OD hue (degrees in [0, 360)) and OD chroma of (..., 3) optical densities; see the module docstring."""
    plane = od @ _HUE_BASIS  # (..., 2); the neutral part drops out because each column sums to 0
    hue = np.degrees(np.arctan2(plane[..., 1], plane[..., 0])) % 360.0
    return hue, np.hypot(plane[..., 0], plane[..., 1])


def in_sector(hue: np.ndarray, sector: tuple[float, float]) -> np.ndarray:
    """(...) bool: ``hue`` (degrees) within ``sector`` (low, high), which wraps through 0 when low > high."""
    low, high = sector
    return (hue >= low) & (hue <= high) if low <= high else (hue >= low) | (hue <= high)


def _flatness(grey: np.ndarray) -> np.ndarray:
    """(H, W) float32 root-mean-square difference of each pixel to its 4 neighbours (edges replicated)."""
    padded = np.pad(grey, 1, mode="edge")
    centre = padded[1:-1, 1:-1]
    squares = [(padded[1:-1, :-2] - centre) ** 2, (padded[1:-1, 2:] - centre) ** 2,
               (padded[:-2, 1:-1] - centre) ** 2, (padded[2:, 1:-1] - centre) ** 2]
    return np.sqrt(sum(squares) / 4.0)


def _level(colour: np.ndarray) -> np.ndarray:
    """(3,) float RGB to (3,) uint8, rounded and clipped."""
    return np.clip(np.rint(colour), 0, 255).astype(np.uint8)


def _flat_bright(rgb: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(N, 3) float32 pixels of (H, W, 3) ``rgb`` and (N,) bool: bright (:data:`GLASS_PERCENTILE`) and flat."""
    values = rgb.reshape(-1, 3).astype(np.float32)
    grey = channel_mean(values)
    bright = grey >= np.percentile(grey, GLASS_PERCENTILE)
    return values, bright & (_flatness(grey.reshape(rgb.shape[:2])).ravel() < GLASS_MAX_STD)


def find_glass(rgb: np.ndarray) -> np.ndarray | None:
    """The glass's colour, (3,) float32 RGB, or None when the image shows too little glass to tell (see below).

    Glass = the brightest (:data:`GLASS_PERCENTILE`), flat (:data:`GLASS_MAX_STD`) pixels, their per-channel median;
    it counts with at least :data:`MIN_GLASS_SHARE` of the image, every channel >= :data:`MIN_GLASS_LEVEL` and an
    OD chroma <= :data:`MAX_CAST_CHROMA`. Without glass (tissue everywhere, a coloured drawing) a pixel's colour
    cannot be told from a cast's: hygiene then asks more colour of ink and finds blue ink by contrast alone.

    Args:
        rgb: (H, W, 3) uint8.
    """
    values, glass = _flat_bright(rgb)
    if glass.sum() < MIN_GLASS_SHARE * glass.size:
        return None
    white = np.median(values[glass], axis=0).astype(np.float32)
    if white.min() < MIN_GLASS_LEVEL or od_hue_and_chroma(optical_density(_level(white)))[1] > MAX_CAST_CHROMA:
        return None
    return white


def glass_white(rgb: np.ndarray) -> np.ndarray:
    """The white to balance against: (3,) float32 RGB; (255, 255, 255) means nothing to correct.

    Glass = the brightest (:data:`GLASS_PERCENTILE`), flat (:data:`GLASS_MAX_STD`) pixels; their per-channel median
    is robust to a few bright specks. With enough glass (:data:`MIN_GLASS_SHARE`, every channel at least
    :data:`MIN_GLASS_LEVEL`) that median is the white. Without (tissue everywhere), the brightest pixels are pale
    tissue, which is judged as it is, unless their colour is one H&E never has (an OD hue outside
    :data:`HE_HUE`, e.g. haematoxylin turned green-blue by a cyan cast): then only that colour is taken out (the
    white keeps the brightest pixels' highest channel at 255, so nothing is brightened overall).

    Args:
        rgb: (H, W, 3) uint8, e.g. a thumbnail (a few hundred pixels a side is plenty).
    """
    white = find_glass(rgb)
    if white is not None:
        return white
    values = rgb.reshape(-1, 3).astype(np.float32)
    grey = channel_mean(values)
    bright = grey >= np.percentile(grey, GLASS_PERCENTILE)
    brightest = np.median(values[bright], axis=0).astype(np.float32)
    hue, chroma = od_hue_and_chroma(optical_density(_level(brightest)))
    if not MIN_CAST_CHROMA <= chroma <= MAX_CAST_CHROMA or in_sector(hue, HE_HUE) or brightest.min() <= 0:
        return NEUTRAL_WHITE.copy()
    return brightest * (255.0 / brightest.max())


def white_balance(rgb: np.ndarray, white: np.ndarray) -> np.ndarray:
    """(H, W, 3) uint8 RGB with each channel scaled so that ``white`` ((3,) RGB) becomes (255, 255, 255), clipped.

    Scaling never darkens: a channel of ``white`` above 255 is not possible, and 255 leaves the channel unchanged.
    """
    white = np.asarray(white, dtype=np.float32).reshape(3)
    if not np.all(np.isfinite(white)) or white.min() <= 0:
        raise ValueError(f"The white of white_balance must be 3 positive levels. Got {white.tolist()} instead.")
    if np.all(white >= 255.0):
        return rgb
    scaled = rgb.astype(np.float32) * (255.0 / np.minimum(white, 255.0))
    return np.clip(np.rint(scaled), 0, 255).astype(np.uint8)


def pen_mask(
    rgb: np.ndarray,
    min_chroma: float = 0.0,
    thumbnail_violet_chroma: float | None = None,
    *,
    colour: tuple[np.ndarray, np.ndarray, np.ndarray] | None = None,
) -> dict[str, np.ndarray]:
    """Per-pixel pen colour of a white-balanced image: ``{"green", "blue", "black"}`` -> (H, W) bool, disjoint.

    Green: OD hue in :data:`GREEN_HUE`, chroma >= :data:`MIN_GREEN_CHROMA`, not too dark for a hue. Blue: hue in
    :data:`BLUE_HUE` with chroma >= :data:`MIN_BLUE_CHROMA`, or in :data:`VIOLET_HUE` with a chroma no stain reaches
    (:data:`MIN_VIOLET_CHROMA`). Black: dark (:data:`MIN_BLACK_OD`) and nearly neutral. Single pixels of these
    colours occur in real tissue (JPEG noise at dark nuclei): tell strokes by their connected size.

    Args:
        rgb: (H, W, 3) uint8, white-balanced (:func:`white_balance`).
        min_chroma: Raises the green and blue chroma floors: hygiene asks ink to be at least 40% as intense as the
            image's own stain, so that a faded image's ink still counts and a faint tint does not.
        thumbnail_violet_chroma: On a slide's thumbnail, also blue ink over tissue: OD hue in
            :data:`THUMBNAIL_VIOLET_HUE` (bluer than haematoxylin) with at least this OD chroma. A thumbnail's box
            averages keep far less chroma than :data:`MIN_VIOLET_CHROMA` (a made slide's tissue at 4 um/px: 99.9%
            <= 0.14; blue ink over it 0.36-0.53 at hues 75-92), so the tissue detector passes a floor read off the
            picture's own stain. None (hygiene): no such rule.
        colour: ``(optical_density(rgb), *od_hue_and_chroma(od))`` when the caller has them already.
    """
    od, hue, chroma = colour if colour is not None else (optical_density(rgb), *od_hue_and_chroma(optical_density(rgb)))
    mean_od = channel_mean(od)
    black = (mean_od >= MIN_BLACK_OD) & (chroma < MAX_BLACK_CHROMA_RATIO * mean_od)
    green = in_sector(hue, GREEN_HUE) & (chroma >= max(MIN_GREEN_CHROMA, min_chroma)) & (mean_od * 3 <= MAX_STAIN_OD)
    blue = (in_sector(hue, BLUE_HUE) & (chroma >= max(MIN_BLUE_CHROMA, min_chroma))) | (
        in_sector(hue, VIOLET_HUE) & (chroma >= MIN_VIOLET_CHROMA)
    )
    if thumbnail_violet_chroma is not None:
        blue |= in_sector(hue, THUMBNAIL_VIOLET_HUE) & (chroma >= thumbnail_violet_chroma)
    return {"green": green & ~black, "blue": blue & ~black, "black": black}


def ink_contrast(od: np.ndarray, window: int = CONTRAST_WINDOW) -> dict[str, np.ndarray]:
    """Per-pixel pen colour of what a thin dark structure adds to its surroundings: colour -> (h, w) bool, disjoint.

    Ink on a slide adds its own OD vector to the tissue's (Beer-Lambert), so the OD a stroke adds to its
    surroundings is the ink's colour whatever it covers, and a colour cast (the same OD everywhere) cancels out. The
    surroundings are the OD opened (per channel, a square ``window`` px wide: structures narrower than it vanish);
    the difference is classed green, blue or black as :func:`pen_mask` classes colours (sectors
    :data:`CONTRAST_GREEN_HUE`, :data:`CONTRAST_BLUE_HUE`). A nucleus adds haematoxylin, whose hue (96) is no ink's
    here, but a few of its pixels may be: tell strokes by their length (the caller).

    Args:
        od: (h, w, 3) optical density (:func:`optical_density`), e.g. of a thumbnail; balanced or not.
        window: Width of the opening (thumbnail px); strokes up to about ``window - 3`` px wide are measured.
    """
    background = _opening(od, window)
    added = od - background  # (h, w, 3) >= 0
    hue, chroma = od_hue_and_chroma(added)
    mean = channel_mean(added)
    black = (mean >= MIN_CONTRAST_BLACK_OD) & (chroma < MAX_CONTRAST_BLACK_RATIO * mean)
    strong = (mean >= MIN_CONTRAST_OD) & ~black
    return {"green": strong & in_sector(hue, CONTRAST_GREEN_HUE) & (chroma >= MIN_CONTRAST_CHROMA[0]),
            "blue": strong & in_sector(hue, CONTRAST_BLUE_HUE) & (chroma >= MIN_CONTRAST_CHROMA[1]), "black": black}


def _running_extreme(values: np.ndarray, size: int, axis: int, extreme) -> np.ndarray:
    """``extreme`` (np.maximum or np.minimum) of ``values`` over a centred window of ``size`` px along ``axis``.

    Edges are repeated. By doubling: a window of 2w is two windows of w, so log2(size) array operations, several
    times faster than scipy.ndimage's filters on a few hundred thousand uint8 values.
    """
    half = size // 2
    pad = [(0, 0)] * values.ndim
    pad[axis] = (half, size - 1 - half)
    out = np.pad(values, pad, mode="edge")
    width = 1
    while width < size:
        step = min(width, size - width)
        head = [slice(None)] * values.ndim
        tail = [slice(None)] * values.ndim
        head[axis], tail[axis] = slice(0, out.shape[axis] - step), slice(step, None)
        out = extreme(out[tuple(head)], out[tuple(tail)])
        width += step
    return out


def dilated(mask: np.ndarray, size: int = 3) -> np.ndarray:
    """(h, w) bool: ``mask`` dilated by a ``size`` x ``size`` square (odd ``size``).

    The same pixels as scipy.ndimage's ``binary_dilation`` with a 3 x 3 square, ``(size - 1) // 2`` iterations and
    its border of 0 (a repeated edge adds nothing a centred window does not hold), about 10x faster.
    """
    out = mask
    for axis in (0, 1):
        out = _running_extreme(out, size, axis, np.maximum)
    return out


def _opening(values: np.ndarray, size: int) -> np.ndarray:
    """(h, w, c): each channel of ``values`` opened by a ``size`` x ``size`` square (min, then max).

    The same values as scipy.ndimage's ``grey_opening`` per channel (a flat, odd window: its reflected borders
    hold values the window holds anyway), in a third of its time.
    """
    out = values
    for extreme in (np.minimum, np.maximum):
        for axis in (0, 1):
            out = _running_extreme(out, size, axis, extreme)
    return out


def _closing(rgb: np.ndarray, size: int) -> np.ndarray:
    """(h, w, 3) uint8: each channel of ``rgb`` closed by a ``size`` x ``size`` square (max, then min; edges kept)."""
    out = rgb
    for extreme in (np.maximum, np.minimum):
        for axis in (0, 1):
            out = _running_extreme(out, size, axis, extreme)
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
        One (box, pixels, od) per line: its bounding box, (box shape) bool pixels and (3,) float64 mean OD over what
        lies beside it.
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
        seen = rgb[box][straight].astype(np.float64).sum(axis=0)
        expected = _local_colour(rgb, beside, box)[straight].astype(np.float64).sum(axis=0)
        lines.append((box, pixels, -np.log10((seen + 1.0) / (expected + 1.0))))
    return lines


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
    (OD opened by :data:`LINE_WINDOW`, as :func:`ink_contrast`) at least :data:`MIN_LINE_OD`, at least
    :data:`MIN_LINE_ALONG` on average along a :data:`LINE_LENGTH`-px segment in its best direction, and at most
    :data:`MAX_LINE_ACROSS` of that across it: long and thin, which nuclei (short) and tissue texture (no direction)
    are not. Connected lines spanning at least :data:`MIN_LINE_SPAN` of the image are named by their colour taken
    over all their pixels at once: summed intensity over the summed local mean of the pixels beside the line, per
    channel. A sum is what JPEG's chroma subsampling keeps (it averages colour over 2x2 pixels, which turns a thin
    black line over eosin pink pixel by pixel), and a cast cancels in the ratio. Black: OD chroma below
    :data:`MAX_LINE_BLACK_RATIO` of the mean OD; green or blue by OD hue (:data:`LINE_GREEN_HUE`,
    :data:`LINE_BLUE_HUE`; for a line of at least :data:`LONG_LINE` x the image's longest side in pixels
    :data:`LONG_LINE_BLUE_HUE`: JPEG moves a thin blue stroke's sum towards haematoxylin, and a stroke is long,
    tissue's short there); tissue's own lines (haematoxylin, eosin) are none.

    Args:
        rgb: (h, w, 3) uint8, e.g. the image box-averaged by 2 or more (aligned to JPEG's 2x2 colour blocks).
    """
    out = {colour: np.zeros(rgb.shape[:2], dtype=bool) for colour in PEN_COLOURS}
    long_line = LONG_LINE * max(rgb.shape[:2])
    for box, pixels, od in line_colours(rgb):
        hue, chroma = (float(v) for v in od_hue_and_chroma(od))
        mean = float(od.mean())
        if mean <= 0:
            continue
        if chroma < MIN_LINE_GREEN_RATIO * mean:
            colour = "black"
        elif in_sector(np.array(hue), LINE_GREEN_HUE):
            colour = "green"
        elif chroma < MAX_LINE_BLACK_RATIO * mean:
            colour = "black"
        elif in_sector(np.array(hue), LINE_BLUE_HUE if pixels.sum() < long_line else LONG_LINE_BLUE_HUE):
            colour = "blue"
        else:
            continue
        out[colour][box] |= pixels
    return out
