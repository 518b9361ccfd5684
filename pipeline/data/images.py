"""Decode images and masks into numpy arrays, with checksums and messages that name the file and the fix.

Rules (documented in the README):
- Images of any mode become RGB uint8; transparent pixels are composited onto white (the slide background);
  16-bit images are scaled to 8 bits (never clipped); CMYK uses Pillow's plain conversion (no colour profile);
  multi-frame files (TIFF, GIF) use their first frame, with a warning.
- A mask pixel is inside when its value is > 0 (in any channel, for a colour mask). An empty mask, or one with
  several values above 0 (soft, JPEG-compressed or multi-class), is used as such with a warning.
- EXIF orientation is NOT applied, to image or mask: both are used as stored, so they stay aligned.
- The pixel count is checked from the header, before any pixel is decoded (decompression-bomb guard), against our
  own limit: Pillow's process-wide one is neither used nor changed.
- Common PNGs and JPEGs are decoded by faster libraries with Pillow's exact pixels (:mod:`pipeline.data.decoders`).
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import xxhash
from PIL import Image, UnidentifiedImageError

from pipeline.data.decoders import fast_pixels, open_unchecked, pillow_rgb
from pipeline.errors import ImageReadError

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 250_000_000  # 250 Mpx, e.g. 16k x 15k; a header beyond this is refused before decoding.
EXIF_ORIENTATION = 0x0112  # 1 = as stored; 2..8 = mirrored and/or rotated for display
COLOUR_MODES = ("RGB", "RGBA", "RGBX", "RGBa", "CMYK", "YCbCr", "LAB", "HSV", "P")


@dataclass(frozen=True)
class DecodedImage:
    """An image decoded to RGB with the checksums that identify it.

    Attributes:
        pixels: (H, W, 3) uint8 RGB.
        file_sha256: SHA-256 of the file's bytes.
        pixels_xxh3: :func:`pixels_xxh3` of the decoded pixels (equal for a PNG and its lossless re-encoding).
    """

    pixels: np.ndarray
    file_sha256: str
    pixels_xxh3: str


@dataclass(frozen=True)
class DecodedMask:
    """A binary mask. ``inside`` is (H, W) bool; ``file_sha256`` is the SHA-256 of the file's bytes."""

    inside: np.ndarray
    file_sha256: str


def file_sha256(path: Path | str) -> str | None:
    """SHA-256 of a file's bytes, or None when it cannot be read (the loader then reports why)."""
    digest = hashlib.sha256()
    try:
        with open(path, "rb") as handle:
            for block in iter(lambda: handle.read(1 << 20), b""):
                digest.update(block)
    except OSError:
        return None
    return digest.hexdigest()


def read_bytes(path: Path) -> bytes:
    """Read a whole file, turning a missing or empty file into an :class:`ImageReadError`."""
    try:
        data = Path(path).read_bytes()
    except FileNotFoundError:
        raise ImageReadError(f"{path}: file not found. Restore it or remove its pair from the folder.") from None
    except IsADirectoryError:
        raise ImageReadError(f"{path}: is a folder, not an image file. Move it out of the data folder.") from None
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot be read ({exc.strerror or exc}). Check the file's permissions.") from exc
    if not data:
        raise ImageReadError(f"{path}: file is empty (0 bytes). Re-export or re-download it.")
    return data


def _open(path: Path, data: bytes, max_pixels: int) -> tuple[Image.Image, np.ndarray | None]:
    """Open from bytes, refuse oversized or empty headers, then decode the first frame fully.

    Returns:
        The image and, when the fast path decoded it (:func:`~pipeline.data.decoders.fast_pixels`), its (H, W) or
        (H, W, 3) uint8 pixels; otherwise None and the image is loaded by Pillow.
    """
    try:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            # Not Image.open: its pixel limit is process-wide; the header is checked against ours just below.
            image = open_unchecked(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageReadError(
                    f"{path}: the header says {width}x{height} = {width * height:,} pixels, above the limit of "
                    f"{max_pixels:,}. If the image is genuine, raise the limit with --max-pixels."
                )
            if width == 0 or height == 0:
                raise ImageReadError(f"{path}: the header says {width}x{height} pixels (no pixel). Re-export it.")
            fast = fast_pixels(image, data)
            if fast is None:
                if getattr(image, "is_animated", False):  # cheaper than n_frames, which walks every frame of a GIF
                    logger.warning("%s has several frames (multi-page TIFF or animated GIF); using the first.", path)
                    image.seek(0)
                image.load()
            # a PNG's getexif() decodes the file unless its EXIF came before the pixels (the fast path's condition)
            known = fast is None or image.format != "PNG" or "exif" in image.info
            orientation = image.getexif().get(EXIF_ORIENTATION, 1) if known else 1
    except ImageReadError:
        raise
    except UnidentifiedImageError:
        raise ImageReadError(
            f"{path}: not a readable image (unknown format or corrupt header). Replace the file with a PNG, JPEG "
            "or TIFF."
        ) from None
    except Exception as exc:
        # A corrupt file makes Pillow's decoders raise almost anything (OSError, SyntaxError, TypeError,
        # struct.error, IndexError, ...): to the user they all mean the same, and one file must not end a long run.
        raise ImageReadError(
            f"{path}: image data is corrupt or truncated ({type(exc).__name__}: {exc}). Re-export or re-download it."
        ) from exc
    for warning in caught:
        logger.warning("%s: %s", path, warning.message)
    if orientation not in (0, 1):
        logger.warning(
            "%s has EXIF orientation %s; it is not applied (images and masks are used as stored, so they stay "
            "aligned).",
            path,
            orientation,
        )
    return image, fast


def pixels_xxh3(pixels: np.ndarray) -> str:
    """XXH3-128 of an array's shape and bytes: equal decoded pixels give equal checksums.

    What it serves is telling equal pixels from different ones (exact duplicates in other files, an image changed
    since extraction), not protecting against forgery: a 128-bit non-cryptographic hash does that at ~50 GB/s, where
    SHA-256 took 2.2 ms of a 1280x1024 image's ~45 ms of CPU. The file's SHA-256 still guards the cache.
    """
    digest = xxhash.xxh3_128(str(pixels.shape).encode())
    digest.update(np.ascontiguousarray(pixels).data)
    return digest.hexdigest()


def pixels_sha256(pixels: np.ndarray) -> str:
    """SHA-256 of an array's shape and bytes: the pixel checksum of files written before :func:`pixels_xxh3`."""
    digest = hashlib.sha256(str(pixels.shape).encode())
    digest.update(np.ascontiguousarray(pixels).data)
    return digest.hexdigest()


def read_image(path: Path | str, max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedImage:
    """Decode an image file to RGB.

    Raises:
        ImageReadError: Missing, empty, unreadable, truncated or oversized file.
    """
    path = Path(path)
    data = read_bytes(path)
    pixels = decode_pixels(path, data, max_pixels)
    return DecodedImage(pixels, *image_checksums(data, pixels))


def decode_pixels(path: Path, data: bytes, max_pixels: int = DEFAULT_MAX_PIXELS) -> np.ndarray:
    """(H, W, 3) uint8 RGB pixels of an image file's bytes (``path`` names it in errors).

    Raises:
        ImageReadError: Unreadable, truncated or oversized file.
    """
    image, fast = _open(path, data, max_pixels)
    if fast is not None:  # grey from the fast path: Pillow's L -> RGB copies the value to the three channels
        return fast if fast.ndim == 3 else np.repeat(fast[:, :, None], 3, axis=2)
    try:
        return np.ascontiguousarray(pillow_rgb(image))
    except (OSError, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot be converted to RGB ({exc}). Re-export it as an RGB PNG.") from exc


def image_checksums(data: bytes, pixels: np.ndarray) -> tuple[str, str]:
    """(SHA-256 of the file's bytes, :func:`pixels_xxh3` of its decoded pixels)."""
    return hashlib.sha256(data).hexdigest(), pixels_xxh3(pixels)


def _packed(rgb: np.ndarray) -> np.ndarray:
    """(H, W) uint32 from (H, W, 3) uint8: each colour packed into one integer, so that colours stay distinct."""
    rgb = rgb.astype(np.uint32)
    return (rgb[:, :, 0] << 16) | (rgb[:, :, 1] << 8) | rgb[:, :, 2]


def _mask_values(mask: Image.Image, fast: np.ndarray | None = None) -> np.ndarray:
    """(H, W) values whose > 0 means inside (from ``fast``, the fast path's pixels, when it decoded the mask)."""
    if fast is not None:
        return _packed(fast) if fast.ndim == 3 else fast
    if mask.mode in COLOUR_MODES:
        return _packed(np.asarray(mask.convert("RGB")))
    if mask.mode in ("LA", "La", "PA"):
        return np.asarray(mask.convert("L"))
    return np.asarray(mask)


def _warn_about_mask(path: Path, values: np.ndarray, inside: np.ndarray, colour: bool) -> None:
    if not inside.any():
        logger.warning(
            "%s: mask is empty (no pixel > 0); extraction falls back to the centre tile of the image.", path
        )
        return
    # The usual binary mask: every inside pixel holds the largest value, found without gathering the inside pixels
    # (which cost more than decoding a 1280x1024 mask); any other mask is looked at as before.
    if np.count_nonzero(values == values.max()) == np.count_nonzero(inside):
        return
    kept = values[inside]
    low, high = kept.min(), kept.max()
    if low != high:
        shown = (f"#{int(low):06x} and #{int(high):06x}" if colour else f"{low} and {high}")
        logger.warning(
            "%s: mask holds several values above 0 (%s); every pixel > 0 counts as inside. If it is a soft, "
            "JPEG-compressed or multi-class mask, threshold it and save it as a 0/255 PNG.",
            path,
            shown,
        )


def read_mask(path: Path | str, size: tuple[int, int], max_pixels: int = DEFAULT_MAX_PIXELS) -> DecodedMask:
    """Decode a mask file to a boolean (H, W) array; a pixel is inside when its value is > 0.

    Args:
        path: The mask file.
        size: (width, height) of the image the mask belongs to.
        max_pixels: Header pixel-count limit.

    Raises:
        ImageReadError: Missing mask, unreadable file, or a size other than the image's.
    """
    path = Path(path)
    data = read_bytes(path)
    mask, fast = _open(path, data, max_pixels)
    if mask.size != tuple(size):
        turned = mask.size == (size[1], size[0]) and size[0] != size[1]
        hint = (
            " It is the image turned by 90 degrees: EXIF orientation is not applied, so export both as stored."
            if turned
            else ""
        )
        raise ImageReadError(
            f"{path}: mask is {mask.size[0]}x{mask.size[1]} but its image is {size[0]}x{size[1]}. Masks must have "
            f"their image's size; re-export the mask at the image's resolution (it is never resized silently).{hint}"
        )
    try:
        values = _mask_values(mask, fast)
    except (OSError, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot be read as a mask ({exc}). Save it as a 0/255 grayscale PNG.") from exc
    inside = np.ascontiguousarray(values > 0, dtype=bool)
    _warn_about_mask(path, values, inside, colour=mask.mode in COLOUR_MODES)
    return DecodedMask(inside, hashlib.sha256(data).hexdigest())
