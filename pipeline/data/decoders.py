"""Opening image files without process-wide state, and a fast path for the common PNGs and JPEGs.

Pillow stays the reference: every file is opened (header only) by Pillow's own format plugins, so the header checks,
the modes and the error messages are Pillow's. Only the pixels of the two formats users' data comes in are decoded
by faster libraries, where they give exactly Pillow's pixels (a test compares them, file by file):

- an 8-bit grey or RGB PNG without transparency, animation or late EXIF: libpng through ``imagecodecs``
  (about 2x faster than Pillow's own PNG decoder on 1280x1024 H&E);
- a whole (ending in its EOI marker) grey or YCbCr/RGB JPEG (not CMYK, not MPO): libjpeg-turbo through
  ``imagecodecs`` (about 2.5x faster: Pillow decodes line by line into its own buffers, then converts).

Everything else (16-bit, palette, alpha, CMYK, TIFF, GIF, ...) and any file the fast decoder refuses is decoded by
Pillow, so a corrupt file gets Pillow's error, worded as before. Without ``imagecodecs`` Pillow decodes everything.
"""

from __future__ import annotations

import logging
import struct
from typing import IO

import numpy as np
from PIL import Image, UnidentifiedImageError

try:  # a dependency (wheels for Linux, macOS and Windows); a missing or broken install only costs speed
    import imagecodecs
except ImportError:  # pragma: no cover - exercised by monkeypatching FAST_DECODERS in the tests
    imagecodecs = None

logger = logging.getLogger(__name__)

FAST_DECODERS = imagecodecs is not None  # tests switch the fast path off to compare with Pillow
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
JPEG_END = b"\xff\xd9"  # EOI: cannot occur inside entropy-coded data (0xFF there is followed by 0x00)
_OPEN_ERRORS = (SyntaxError, IndexError, TypeError, struct.error)  # what Image.open takes for "not this format"


def open_unchecked(source: IO[bytes]) -> Image.Image:
    """Open an image lazily (header only) like :func:`PIL.Image.open`, without Pillow's decompression-bomb check.

    :func:`PIL.Image.open` refuses (or warns about) large headers from a process-wide limit,
    ``Image.MAX_IMAGE_PIXELS``; the callers check the header's size against their own limit (``--max-pixels``)
    instead, and changing the global around each call would race with any other thread that opens images. So this
    tries Pillow's registered format plugins in Pillow's own order, as ``Image.open`` does, and skips only the check.

    Raises:
        UnidentifiedImageError: No plugin recognises the file.
    """
    Image.init()  # registers every plugin once (a no-op afterwards)
    source.seek(0)
    prefix = source.read(16)
    for name in Image.ID:
        factory, accept = Image.OPEN[name]
        result = not accept or accept(prefix)
        if not result or isinstance(result, str):  # a string: "this format, but unsupported" (Image.open warns)
            continue
        source.seek(0)
        try:
            return factory(source, "")
        except _OPEN_ERRORS:
            continue
    raise UnidentifiedImageError("cannot identify image file")


def header_size(path: str) -> tuple[int, int]:
    """(width, height) from an image file's header, without decoding it and without Pillow's pixel limit.

    Raises:
        OSError, UnidentifiedImageError: The file cannot be read or is not an image.
    """
    with open(path, "rb") as handle:
        image = open_unchecked(handle)
        return image.size


def _png_chunks_after_data(data: bytes) -> set[bytes]:
    """Types of the PNG chunks that follow the first IDAT (Pillow's lazy open has not read them)."""
    types: set[bytes] = set()
    offset, seen_data = len(PNG_SIGNATURE), False
    while offset + 8 <= len(data):
        length = int.from_bytes(data[offset : offset + 4], "big")
        kind = data[offset + 4 : offset + 8]
        seen_data = seen_data or kind == b"IDAT"
        if seen_data and kind != b"IDAT":
            types.add(kind)
        offset += 12 + length
    return types


def _plain_png(image: Image.Image, data: bytes) -> bool:
    """True for an 8-bit grey or RGB PNG that libpng decodes to exactly Pillow's pixels.

    Not for: other bit depths (Pillow scales 1-4 bit grey and keeps the high byte of 16 bits), palette, alpha or a
    transparent colour (composited onto white by the caller, from Pillow's modes), animation, and an EXIF chunk after
    the pixels (reading its orientation would make Pillow decode the file anyway).
    """
    if image.mode not in ("L", "RGB") or "transparency" in image.info or getattr(image, "is_animated", False):
        return False
    if data[12:16] != b"IHDR" or data[24] != 8:
        return False
    return "exif" in image.info or b"eXIf" not in _png_chunks_after_data(data)


def fast_pixels(image: Image.Image, data: bytes) -> np.ndarray | None:
    """The pixels of a lazily opened ``image`` as Pillow would give them, decoded by a faster library.

    Args:
        image: Opened from ``data`` by :func:`open_unchecked`, not loaded.
        data: The file's bytes.

    Returns:
        (H, W) uint8 for mode ``L``, (H, W, 3) uint8 for ``RGB``; None when the fast path does not apply or the
        fast decoder fails (the caller then lets Pillow decode, and word any error).
    """
    if not FAST_DECODERS:
        return None
    if image.format == "PNG" and _plain_png(image, data):
        decode = imagecodecs.png_decode
    elif image.format == "JPEG" and image.mode in ("L", "RGB") and data.endswith(JPEG_END):
        # libjpeg-turbo fills a truncated file with grey where Pillow refuses it: only whole files take this path
        decode = imagecodecs.jpeg8_decode
    else:
        return None
    try:
        pixels = decode(data)
    except Exception as exc:  # noqa: BLE001 - any failure means "let Pillow decode it"
        logger.debug("fast decoder refused the file (%s); Pillow decodes it", exc)
        return None
    expected = (image.height, image.width) if image.mode == "L" else (image.height, image.width, 3)
    if pixels.dtype != np.uint8 or pixels.shape != expected:
        return None
    return np.ascontiguousarray(pixels)


def _scaled_to_8_bits(image: Image.Image) -> np.ndarray:
    """(H, W) uint8 from a 16-bit, 32-bit integer or float single-channel image, scaled rather than clipped."""
    values = np.asarray(image, dtype=np.float64)
    if image.mode.startswith("I;16") or (image.mode == "I" and values.min() >= 0 and values.max() <= 65535):
        top = 65535.0  # 16-bit data (Pillow opens 16-bit PNG/TIFF as I;16 or I): scale its full range
    elif image.mode == "F" and values.min() >= 0 and values.max() <= 1:
        top = 1.0
    else:
        top = max(float(values.max()), 1.0)  # other 32-bit data has no fixed range: scale by its own maximum
    return np.clip(np.round(values / top * 255.0), 0, 255).astype(np.uint8)


def pillow_rgb(image: Image.Image) -> np.ndarray:
    """Convert a loaded image of any PIL mode to (H, W, 3) uint8 RGB; transparent pixels become white.

    Pillow already reduces 16-bit RGB(A) PNGs (48/64 bits) to 8 bits per channel by keeping the high byte, a
    scaling (65535 -> 255), not a clip.
    """
    if image.mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        gray = _scaled_to_8_bits(image)
        return np.repeat(gray[:, :, None], 3, axis=2)
    has_alpha = image.mode in ("RGBA", "LA", "PA", "La", "RGBa") or (
        image.mode in ("P", "L", "RGB") and "transparency" in image.info
    )
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))
