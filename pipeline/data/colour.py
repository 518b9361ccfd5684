"""Per-pixel colour of H&E images in optical density (OD): white balance against the glass, stain hue, pen colours.

One implementation for every reader of colour: the hygiene scores (:mod:`pipeline.hygiene.stain`) and a tissue
detector on a slide thumbnail both call :func:`glass_white`, :func:`white_balance`, :func:`optical_density`,
:func:`od_hue_and_chroma`, :func:`pen_mask` and :func:`ink_contrast` on an (H, W, 3) uint8 RGB array (hygiene
also :func:`pipeline.data.ink_lines.ink_lines`).

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
- *Pen by contrast* (:func:`ink_contrast`, balanced or not): the OD a thin structure adds to its surroundings
  (:func:`contrast_colour`) is the ink's own colour over glass and stain alike, and a cast cancels; it names blue
  over eosin, which has haematoxylin's hue, and ink on images without glass (:func:`find_glass` None).
- *Thin lines* (:mod:`pipeline.data.ink_lines`, on the image box-averaged by 2 or more): found by their shape (long,
  thin, dark), which JPEG keeps, and named by their colour summed along them, which JPEG's chroma subsampling keeps too.

A tissue detector would take tissue = absorbing (summed OD >= 0.05 after :func:`white_balance`) and not
:func:`pen_mask`.
"""

from __future__ import annotations

import numpy as np

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


def contrast_colour(od: np.ndarray, window: int = CONTRAST_WINDOW) -> tuple[np.ndarray, ...]:
    """What each pixel adds to its surroundings: (h, w, 3) OD, and its (h, w) OD hue, OD chroma and mean OD.

    The surroundings are the OD opened (per channel, a square ``window`` px wide: structures narrower than it
    vanish); see :func:`ink_contrast`.
    """
    added = od - _opening(od, window)  # (h, w, 3) >= 0
    return (added, *od_hue_and_chroma(added), channel_mean(added))


def ink_contrast(od: np.ndarray, window: int = CONTRAST_WINDOW, *,
                 added: tuple[np.ndarray, ...] | None = None) -> dict[str, np.ndarray]:
    """Per-pixel pen colour of what a thin dark structure adds to its surroundings: colour -> (h, w) bool, disjoint.

    Ink on a slide adds its own OD vector to the tissue's (Beer-Lambert), so the OD a stroke adds to its
    surroundings (:func:`contrast_colour`) is the ink's colour whatever it covers, and a colour cast (the same OD
    everywhere) cancels out. The difference is classed green, blue or black as :func:`pen_mask` classes colours
    (sectors :data:`CONTRAST_GREEN_HUE`, :data:`CONTRAST_BLUE_HUE`). A nucleus adds haematoxylin, whose hue (96) is
    no ink's here, but a few of its pixels may be: tell strokes by their length (the caller).

    Args:
        od: (h, w, 3) optical density (:func:`optical_density`), e.g. of a thumbnail; balanced or not.
        window: Width of the opening (thumbnail px); strokes up to about ``window - 3`` px wide are measured.
        added: ``contrast_colour(od, window)`` when the caller has it already.
    """
    _, hue, chroma, mean = added if added is not None else contrast_colour(od, window)
    black = (mean >= MIN_CONTRAST_BLACK_OD) & (chroma < MAX_CONTRAST_BLACK_RATIO * mean)
    strong = (mean >= MIN_CONTRAST_OD) & ~black
    return {"green": strong & in_sector(hue, CONTRAST_GREEN_HUE) & (chroma >= MIN_CONTRAST_CHROMA[0]),
            "blue": strong & in_sector(hue, CONTRAST_BLUE_HUE) & (chroma >= MIN_CONTRAST_CHROMA[1]), "black": black}


def running_extreme(values: np.ndarray, size: int, axis: int, extreme) -> np.ndarray:
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
        out = running_extreme(out, size, axis, np.maximum)
    return out


def _opening(values: np.ndarray, size: int) -> np.ndarray:
    """(h, w, c): each channel of ``values`` opened by a ``size`` x ``size`` square (min, then max).

    The same values as scipy.ndimage's ``grey_opening`` per channel (a flat, odd window: its reflected borders
    hold values the window holds anyway), in a third of its time.
    """
    out = values
    for extreme in (np.minimum, np.maximum):
        for axis in (0, 1):
            out = running_extreme(out, size, axis, extreme)
    return out
