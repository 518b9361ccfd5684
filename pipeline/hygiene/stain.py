"""Stain and tissue scores that do not depend on absolute saturation or brightness (optical density, OD).

Every score is taken inside the mask (the whole image when the mask is empty) on a thumbnail whose longest side is
at most 160 px (every k-th pixel), white-balanced against the image's own glass first
(:func:`pipeline.data.colour.glass_white`): a scanner's colour cast then moves no score, and an image without glass
is scored as it is. The colour arithmetic lives in :mod:`pipeline.data.colour`, shared with tissue detection.
``OD = -log10((I + 1) / 256)`` per channel (Beer-Lambert): stain concentration
scales a pixel's OD vector, so pale, faint or faded staining shrinks it without turning it, and a brighter or darker
exposure adds the same OD to every channel. Each OD vector is split into its neutral part (the mean over R, G, B:
grey, brightness) and its colour part ``c = OD - mean(OD)``, a 2-D vector with

- an *OD hue*, its angle in degrees (basis ``(1, -1, 0)/sqrt 2``, ``(1, 1, -2)/sqrt 6``): the Ruifrok-Johnston
  haematoxylin vector lies at 96 degrees, eosin at 152, DAB at 234; 99.8% of the coloured pixels of 615 real H&E
  images lie in [55, 255]. Green inks lie at 285-360, teal/cyan at 0-35, yellow at ~268; grey has no hue. Blue inks
  lie at 50-90, short of haematoxylin, which no H&E mix goes below.
- an *OD chroma*, its length: 0 for grey, white and black; scaled down, not rotated, by fainter staining.

*Tissue* = masked pixels that absorb some light (summed OD >= 0.05: not all channels >~ 245). Scores (``q_`` names
as stored; docs/hygiene.md has what each threshold was read off):

- ``stain_fraction``: share of the tissue (at least 5% of the mask counts as tissue, so a blank slide scores 0) in
  H&E colours: OD hue in [55, 255], OD chroma >= 0.02 and summed OD <= 2.4 (darker is noise in black).
- ``stain_chroma``: 90th percentile OD chroma of those stained pixels (how strongly the image is stained): the
  yardstick of the two colour scores below.
- ``off_hue_fraction``: share of masked pixels saturated (HSV s, v >= 0.15) in HSV hues 45-190 (yellow, green,
  cyan) *and* at least 40% as intense as the image's own stain (OD chroma >= max(0.03, 0.4 x ``stain_chroma``)), so
  that a faint tint of the background is not counted.
- ``green_ink_fraction``, ``blue_ink_fraction``, ``black_ink_fraction``: share of masked pixels in pen strokes of
  that colour (:func:`pipeline.data.colour.pen_mask`, green and blue with the same floor: fading or desaturating an
  image pales its ink with its stain, so the ratio holds). A stroke is a connected set (8-neighbours, gaps of one
  thumbnail pixel bridged) of at least 8 pen pixels spanning at least 5, on or beside tissue: the scattered dark
  or saturated pixels of real nuclei are no stroke. Added to them: strokes by contrast
  (:func:`pipeline.data.colour.ink_contrast`, components spanning at least 30), which name blue over stained tissue
  and are blind to casts. Thin lines (:func:`pipeline.data.ink_lines.ink_lines`, on the image box-averaged to twice the
  thumbnail's resolution) are found by their shape and named by their summed colour, which JPEG's chroma
  subsampling keeps: a colour's score adds to its strokes' share that of its lines' pixels no stroke covers
  (:func:`_ink_shares`). An image without glass (:func:`pipeline.data.colour.find_glass` None) has no white to
  judge colour against: there green ink and off-hue colour need 80% of the stain's OD chroma (at most 0.25;
  off-hue at least 0.15, the most a cast adds), and blue ink by contrast alone, when bluer than the image's other
  dark structures (:func:`pipeline.hygiene.strokes.bluer_than_structures`).
- ``flat_fill_fraction``: share of the tissue whose 3x3 grey-level standard deviation is < 0.5 (of 255): constant,
  as drawn fills are even after JPEG; tissue keeps its grain when faded.
- ``white_fraction``: share of masked pixels that are not tissue (for the report).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from PIL import Image
from scipy.ndimage import uniform_filter

from pipeline.data.colour import (
    HE_HUE,
    MAX_CAST_CHROMA,
    MAX_STAIN_OD,
    PEN_COLOURS,
    channel_sum,
    contrast_colour,
    find_glass,
    glass_white,
    in_sector,
    ink_contrast,
    od_hue_and_chroma,
    optical_density,
    pen_mask,
    white_balance,
)
from pipeline.data.ink_lines import ink_lines
from pipeline.hygiene.strokes import MIN_CONTRAST_SPAN, bluer_than_structures, strokes

__all__ = ["StainScores", "od_hue_and_chroma", "optical_density", "stain_scores", "thumbnail_step"]

THUMBNAIL_SIDE = 160  # 25,600 pixels at most: plenty for fractions, and about 2 ms per image
MIN_STAIN_CHROMA = 0.02  # OD chroma below this has no reliable hue (JPEG noise near white is ~0.01)
BACKGROUND_OD = 0.05  # summed OD below this (all channels >~ 245) is background
INK_RELATIVE_CHROMA = 0.4  # ink and off-hue colour: at least this fraction as intense (OD chroma) as the stain ...
MIN_INK_CHROMA = 0.03  # ... and never below this OD chroma (images with little or no stain, e.g. drawings)
MIN_TISSUE_SHARE = 0.05  # stain_fraction is taken over the tissue pixels, but over at least this share of the mask
FLAT_STD = 0.5  # grey-level standard deviation (of 255) of a 3x3 neighbourhood below which it is a flat fill
STAIN_CHROMA_PERCENTILE = 90.0
BLIND_INK_RELATIVE = 0.8  # without glass, ink by colour is this fraction as intense as the stain (x1.5 casts <= 0.71,
BLIND_INK_CHROMA = 0.25  # green blobs plain, faded, desaturated >= 0.92), but never needs more than this OD chroma
MIN_LINE_FACTOR = 2  # thin lines are judged on the image box-averaged by at least this (JPEG's colour blocks)

_GREY_WEIGHTS = np.array([0.299, 0.587, 0.114], dtype=np.float32)


@dataclass
class StainScores:
    """The scores of one image and where its ink is.

    Attributes:
        scores: ``stain_fraction``, ``stain_chroma``, ``off_hue_fraction``, ``green_ink_fraction``,
            ``blue_ink_fraction``, ``black_ink_fraction``, ``flat_fill_fraction``, ``white_fraction`` (without the
            ``q_`` prefix).
        ink: (h, w) bool, pen strokes of any colour on the whole thumbnail (mask or not), for the perceptual hash.
        step: The thumbnail takes every ``step``-th pixel of the image.
    """

    scores: dict[str, float]
    ink: np.ndarray
    step: int


def thumbnail_step(shape: tuple[int, ...]) -> int:
    """Subsampling step so that the longest side of the thumbnail is <= :data:`THUMBNAIL_SIDE`."""
    return max(1, int(np.ceil(max(shape[:2]) / THUMBNAIL_SIDE)))


def _local_std(grey: np.ndarray) -> np.ndarray:
    """Standard deviation of each pixel's 3x3 neighbourhood (edges replicated): (H, W) float32."""
    mean = uniform_filter(grey, size=3, mode="nearest")
    mean_of_squares = uniform_filter(grey * grey, size=3, mode="nearest")
    return np.sqrt(np.maximum(mean_of_squares - mean * mean, 0.0))


def _saturated_off_hue(small: np.ndarray) -> np.ndarray:
    """(h, w) bool: saturated (HSV s, v >= 0.15) in HSV hues 45-190 degrees (yellow, green, cyan)."""
    hsv = np.asarray(Image.fromarray(small).convert("HSV"), dtype=np.uint8)
    hue = hsv[..., 0].astype(np.float32) * (360.0 / 255.0)
    saturated = (hsv[..., 1] >= 0.15 * 255) & (hsv[..., 2] >= 0.15 * 255)
    return saturated & (hue > 45.0) & (hue < 190.0)


def _thin_lines(pixels: np.ndarray, step: int) -> tuple[dict[str, np.ndarray], int]:
    """Thin pen lines (:func:`pipeline.data.ink_lines.ink_lines`) on the image box-averaged by a factor.

    The factor is half the thumbnail's step, at least :data:`MIN_LINE_FACTOR`: twice the thumbnail's resolution,
    where a thin stroke is still a line, in whole 2x2 blocks, over which JPEG averages colour.

    Returns:
        Colour -> (ceil(H / factor), ceil(W / factor)) bool, and the factor.
    """
    factor = max(MIN_LINE_FACTOR, step // 2)
    view = np.asarray(Image.fromarray(np.ascontiguousarray(pixels)).reduce(factor))
    return ink_lines(view), factor


def _on_grid(fine: np.ndarray, shape: tuple[int, ...]) -> np.ndarray:
    """(h, w) bool: ``fine`` ((H', W') bool) resized to ``shape``, a pixel set where any of its area is."""
    if not fine.any():
        return np.zeros(shape[:2], dtype=bool)
    resized = Image.fromarray(fine.astype(np.uint8) * 255).resize((shape[1], shape[0]), Image.Resampling.BOX)
    return np.asarray(resized) > 0


def _ink_shares(pens: dict[str, np.ndarray], lines: dict[str, np.ndarray], mask: np.ndarray, inside: np.ndarray,
                step: int, factor: int) -> dict[str, float]:
    """Colour -> share of the mask in ink: its strokes' and its lines' pixels that no stroke covers.

    Strokes: ``pens``, (h, w) on the thumbnail (every ``step``-th pixel), over ``mask``; lines: on the image
    box-averaged by ``factor``, over ``inside`` ((H, W) bool) there. Never less than the lines' share alone: colour
    and shape see different parts of one stroke (its colour over glass and pale tissue, its shape over nuclei).
    """
    n_inside = float(np.count_nonzero(mask))  # count_nonzero: a bool array's sum() adds it as integers, 10x slower
    shares = {colour: float(np.count_nonzero(pens[colour] & mask) / n_inside) for colour in PEN_COLOURS}
    named = [colour for colour in PEN_COLOURS if lines[colour].any()]
    if not named:
        return shares
    shape = lines[named[0]].shape
    fine_mask = np.ascontiguousarray(inside[::factor, ::factor])
    fine_mask = fine_mask if fine_mask.any() else np.ones(shape, bool)
    n_fine = np.count_nonzero(fine_mask)
    rows = np.minimum(np.arange(shape[0]) * factor // step, mask.shape[0] - 1)  # the thumbnail pixel of each
    columns = np.minimum(np.arange(shape[1]) * factor // step, mask.shape[1] - 1)
    for colour in named:
        on_lines = lines[colour] & fine_mask
        missed = np.count_nonzero(on_lines & ~pens[colour][rows[:, None], columns[None, :]])
        shares[colour] = max(shares[colour] + missed / n_fine, np.count_nonzero(on_lines) / n_fine)
    return shares


def stain_scores(pixels: np.ndarray, inside: np.ndarray) -> StainScores:
    """Score one image; see the module docstring.

    Args:
        pixels: (H, W, 3) uint8 RGB.
        inside: (H, W) bool mask; empty means the whole image.
    """
    step = thumbnail_step(pixels.shape)
    small = np.ascontiguousarray(pixels[::step, ::step])
    glass = find_glass(small)
    blind = glass is None
    small = white_balance(small, glass_white(small) if blind else glass)
    mask = inside[::step, ::step]
    if not mask.any():
        mask = np.ones(mask.shape, dtype=bool)
    od = optical_density(small)  # (h, w, 3)
    od_sum = channel_sum(od)
    hue, chroma = od_hue_and_chroma(od)
    n_inside = float(np.count_nonzero(mask))  # count_nonzero: a bool array's sum() adds it as integers, 10x slower
    tissue = mask & (od_sum >= BACKGROUND_OD)
    n_tissue = float(np.count_nonzero(tissue))
    stained = tissue & (od_sum <= MAX_STAIN_OD) & in_sector(hue, HE_HUE) & (chroma >= MIN_STAIN_CHROMA)
    stain_chroma = float(np.percentile(chroma[stained], STAIN_CHROMA_PERCENTILE)) if stained.any() else 0.0
    # ink and off-hue colour must be at least INK_RELATIVE_CHROMA as intense as the image's own stain: a faint tint of
    # the background is not ink, and a fading or desaturation that pales the stain pales the ink alike
    floor = max(MIN_INK_CHROMA, INK_RELATIVE_CHROMA * stain_chroma)
    off_hue_floor, ink_floor = floor, floor
    if blind:  # no glass to judge colour against: colour counts only beyond what a cast can add to the stain ...
        ink_floor = max(floor, min(BLIND_INK_CHROMA, BLIND_INK_RELATIVE * stain_chroma))
        off_hue_floor = max(ink_floor, MAX_CAST_CHROMA)
    pens = pen_mask(small, ink_floor, colour=(od, hue, chroma))
    if blind:  # ... and blue ink only by contrast: a cast turns pale haematoxylin as blue as a pen on glass
        pens["blue"] = np.zeros_like(mask)
    any_pen = pens["green"] | pens["blue"] | pens["black"]
    beside = (od_sum >= BACKGROUND_OD) & ~any_pen  # tissue of the whole thumbnail, pen left out
    pens = strokes(pens, beside)
    # thin strokes by the OD they add to their surroundings: found over stained tissue too, whatever the cast
    added = contrast_colour(od)
    by_contrast = ink_contrast(od, added=added)
    contrast = strokes(by_contrast, beside, MIN_CONTRAST_SPAN)
    if blind and contrast["blue"].any():  # ... and named blue only when bluer than the image's own nuclei
        contrast["blue"] = bluer_than_structures(contrast, by_contrast["black"], added)
    taken = pens["green"] | pens["blue"] | pens["black"]
    pens = {colour: pens[colour] | (contrast[colour] & ~taken) for colour in PEN_COLOURS}
    lines, factor = _thin_lines(pixels, step)
    ink_shares = _ink_shares(pens, lines, mask, inside, step, factor)
    any_line = lines["green"] | lines["blue"] | lines["black"]
    ink = pens["green"] | pens["blue"] | pens["black"] | _on_grid(any_line, mask.shape)
    flat = _local_std(small.astype(np.float32) @ _GREY_WEIGHTS) < FLAT_STD
    scores = {
        "stain_fraction": float(np.count_nonzero(stained) / max(n_tissue, MIN_TISSUE_SHARE * n_inside)),
        "stain_chroma": stain_chroma,
        "off_hue_fraction": float(
            np.count_nonzero(_saturated_off_hue(small) & (chroma >= off_hue_floor) & mask) / n_inside),
        **{f"{colour}_ink_fraction": ink_shares[colour] for colour in PEN_COLOURS},
        "flat_fill_fraction": float(np.count_nonzero(flat & tissue) / max(n_tissue, 1.0)),
        "white_fraction": 1.0 - n_tissue / n_inside,
    }
    return StainScores(scores, ink, step)
