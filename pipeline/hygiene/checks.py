"""Cheap per-image checks computed while an image is decoded for extraction: stain scores and perceptual hashes.

:func:`image_quality` gives the attributes every feature file stores: the ``q_*`` scores of
:mod:`pipeline.hygiene.stain`, ``q_version`` (:data:`QUALITY_VERSION`) and ``phashes``, 64-bit DCT perceptual hashes
of the image's 8 flips and 90-degree rotations (16-digit hex strings), so that a flipped, rotated, resized or
re-encoded copy is found by comparing one hash with eight.

Pen strokes are left out of the hash: where the thumbnail finds ink, the hash's 32x32 grey thumbnail is the mean of the
other pixels of each cell, and cells that are mostly ink are filled from their neighbours. An inked copy of an image
then keeps its link (a dark blob on pale tissue moved the plain hash by up to 24 bits; masked, at most 8: see
docs/hygiene.md); an image without ink gets exactly the plain hash, so hashes of files scored before stay comparable.
"""

from __future__ import annotations

import numpy as np
from PIL import Image
from scipy.fft import dctn
from scipy.ndimage import binary_dilation, convolve

from pipeline.hygiene.stain import stain_scores

# Bump when a score's or the hash's definition changes: extract.py then re-scores older files (no re-embedding) and
# assessment ignores their scores until it has.
QUALITY_VERSION = 8  # 3: white balance against the glass; blue and black pen strokes; 4: strokes by contrast;
# 5: thin pen lines by shape, named by their summed colour (ink_lines); hashes on every (thumbnail step // 2)-th pixel;
# 6: a long thin line is blue up to OD hue 100 (JPEG turns a thin blue stroke's sum towards haematoxylin), and a
# line needs fewer straight pixels to be named (a stroke broken by the nuclei it crosses);
# 7: a long line is named against the tissue's own dark structures beside it (bluer or less chromatic than they are:
# ink over crowded tissue; as blue as they are: haematoxylin, no longer blue up to 100), and a colour's ink share is
# its strokes' plus that of its lines' pixels they miss (was the larger of the two);
# 8: without glass, a blue stroke by contrast must be 32 degrees bluer than the image's other dark structures (20 when
# it spans most of the image; a cast through JPEG turns groups of nuclei blue), and off-hue colour needs the blind ink
# floor (pale stain plus a cast); a short line is blue only when 26 degrees bluer than the structures beside it
SCORES = (
    "q_stain_fraction",
    "q_stain_chroma",
    "q_off_hue_fraction",
    "q_green_ink_fraction",
    "q_blue_ink_fraction",
    "q_black_ink_fraction",
    "q_flat_fill_fraction",
    "q_white_fraction",
)
# A slide's tissue detector's account (pipeline.hygiene.slide_stats): shares of its thumbnail, written after extraction
SLIDE_STATS = ("slide_tissue_fraction", "slide_pen_fraction", "slide_pen_green_fraction", "slide_pen_blue_fraction",
               "slide_pen_black_fraction")
HASH_SIDE = 32  # the DCT is taken on a 32x32 grey thumbnail, its 8x8 lowest frequencies give the 64 bits
MIN_CELL_WEIGHT = 0.25  # a hash cell with less than this share of non-ink pixels is filled from its neighbours
FILL_ITERATIONS = 32  # Jacobi steps of that fill: enough for holes of a few cells (a blob is at most ~6 across)
_NEIGHBOURS = np.array([[0.0, 0.25, 0.0], [0.25, 0.0, 0.25], [0.0, 0.25, 0.0]])


def _bits(coefficients: np.ndarray) -> int:
    values = coefficients.ravel()
    return int(np.packbits(values > np.median(values)).view(">u8")[0])


def _masked_thumbnail(grey: Image.Image, ignored: np.ndarray) -> np.ndarray:
    """(32, 32) float64 mean grey level of each cell over the pixels not ``ignored`` ((H, W) bool), holes filled."""
    weight = (~ignored).astype(np.float32)
    size = (HASH_SIDE, HASH_SIDE)
    total = np.asarray(Image.fromarray(np.asarray(grey, np.float32) * weight, "F").resize(size, Image.Resampling.BOX))
    share = np.asarray(Image.fromarray(weight, "F").resize(size, Image.Resampling.BOX))
    valid = share >= MIN_CELL_WEIGHT
    mean = float(total.sum() / max(float(share.sum()), 1e-6))
    thumb = np.where(valid, total / np.maximum(share, 1e-6), mean).astype(np.float64)
    for _ in range(FILL_ITERATIONS):  # harmonic fill: each hole cell becomes the mean of its four neighbours
        average = convolve(thumb, _NEIGHBOURS, mode="nearest")
        thumb[~valid] = average[~valid]
    return thumb


def dihedral_phashes(pixels: np.ndarray, ink: np.ndarray | None = None, step: int = 1) -> list[str]:
    """Perceptual hashes of the image under the 8 flips/rotations, identity first.

    One DCT serves all eight: flipping an image along an axis flips the sign of the odd frequencies along it, and
    transposing it transposes the coefficients. The hash is taken on every ``step // 2``-th pixel: twice as dense as
    the stain thumbnail, whose grid alone moved a rotated copy's hash by up to 10 bits (the threshold), while this one
    keeps the full image's margins (copies within 4 bits, distinct images 16 or more apart on glas15 and lc25000) at
    a third of its CPU time (2.3 -> 0.8 ms on a 1280x1024 image; docs/hygiene.md).

    Args:
        pixels: (H, W, 3) uint8 RGB.
        ink: (h, w) bool pixels to leave out, on the grid of every ``step``-th pixel (the stain thumbnail); None or
            all False: the plain hash.
        step: Grid step of ``ink`` (1: the hash of the full image).

    Returns:
        8 hashes as 16-digit hex strings.
    """
    grid = max(1, step // 2)
    grey = Image.fromarray(np.ascontiguousarray(pixels[::grid, ::grid])).convert("L")
    if ink is None or not ink.any():
        thumb = np.asarray(grey.resize((HASH_SIDE, HASH_SIDE), Image.Resampling.BOX), dtype=np.float64)
    else:
        # each sample takes the ink of the thumbnail pixel it lies in; the dilation covers the ink's edges between
        rows = np.minimum(np.arange(grey.height) * grid // step, ink.shape[0] - 1)
        columns = np.minimum(np.arange(grey.width) * grid // step, ink.shape[1] - 1)
        thumb = _masked_thumbnail(grey, binary_dilation(ink)[rows][:, columns])
    low = dctn(thumb, norm="ortho")[:8, :8]
    odd = np.where(np.arange(8) % 2, -1.0, 1.0)
    variants = []
    for block in (low, low.T):
        for rows in (1.0, odd[:, None]):
            for columns in (1.0, odd[None, :]):
                variants.append(block * rows * columns)
    return [f"{_bits(v):016x}" for v in variants]


_BYTE_BITS = np.array([bin(value).count("1") for value in range(256)], dtype=np.uint8)


def hamming(first: np.ndarray, second: np.ndarray) -> np.ndarray:
    """Bit differences between uint64 hashes, broadcasting: popcount of XOR, as uint8."""
    xor = np.bitwise_xor(first, second)
    if hasattr(np, "bitwise_count"):  # numpy >= 2: one instruction per hash
        return np.bitwise_count(xor)
    return _BYTE_BITS[np.asarray(xor).view(np.uint8)].reshape(*np.shape(xor), 8).sum(axis=-1, dtype=np.uint8)


def image_quality(pixels: np.ndarray, inside: np.ndarray) -> dict:
    """All cheap checks of one image, ready to store as feature-file attributes.

    Args:
        pixels: (H, W, 3) uint8 RGB.
        inside: (H, W) bool mask.

    Returns:
        ``q_version``, the :data:`SCORES` (floats) and ``phashes`` (8 hex strings).
    """
    stain = stain_scores(pixels, inside)
    scores = {f"q_{key}": value for key, value in stain.scores.items()}
    return {"q_version": QUALITY_VERSION, **scores, "phashes": dihedral_phashes(pixels, stain.ink, stain.step)}


def is_scored(attrs: dict) -> bool:
    """True when a file's hygiene attributes come from the current :data:`QUALITY_VERSION`."""
    return attrs.get("q_version") == QUALITY_VERSION
