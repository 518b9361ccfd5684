"""Decode images and masks into numpy arrays, with checksums and messages that name the file and the fix.

Rules (documented in the README):
- Images of any mode become RGB uint8; transparent pixels are composited onto white (the slide background);
  16-bit images are scaled to 8 bits; multi-frame files (TIFF, GIF) use their first frame.
- A mask pixel is inside when its value is > 0 (in any channel, for a colour mask).
- EXIF orientation is NOT applied, to image or mask: both are used as stored, so they stay aligned.
- The pixel count is checked from the header, before any pixel is decoded (decompression-bomb guard).
"""

from __future__ import annotations

import hashlib
import io
import logging
import warnings
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, UnidentifiedImageError

from pipeline.errors import ImageReadError

logger = logging.getLogger(__name__)

DEFAULT_MAX_PIXELS = 250_000_000  # 250 Mpx, e.g. 16k x 15k; a header beyond this is refused before decoding.


@dataclass(frozen=True)
class DecodedImage:
    """An image decoded to RGB with the checksums that identify it.

    Attributes:
        pixels: (H, W, 3) uint8 RGB.
        file_sha256: SHA-256 of the file's bytes.
        pixels_sha256: SHA-256 of the decoded pixels and their shape (equal for a PNG and its lossless re-encoding).
    """

    pixels: np.ndarray
    file_sha256: str
    pixels_sha256: str


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
    except OSError as exc:
        raise ImageReadError(f"{path}: cannot be read ({exc.strerror or exc}). Check the file's permissions.") from exc
    if not data:
        raise ImageReadError(f"{path}: file is empty (0 bytes). Re-export or re-download it.")
    return data


def _open(path: Path, data: bytes, max_pixels: int) -> Image.Image:
    """Open from bytes, refuse oversized headers, then decode the first frame fully."""
    # PIL refuses anything above twice its own limit before we can apply ours, so lift it to ours.
    if Image.MAX_IMAGE_PIXELS is not None and Image.MAX_IMAGE_PIXELS < max_pixels:
        Image.MAX_IMAGE_PIXELS = max_pixels
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", Image.DecompressionBombWarning)
            image = Image.open(io.BytesIO(data))
            width, height = image.size
            if width * height > max_pixels:
                raise ImageReadError(
                    f"{path}: the header says {width}x{height} = {width * height:,} pixels, above the limit of "
                    f"{max_pixels:,}. If the image is genuine, raise the limit with --max-pixels."
                )
            if getattr(image, "n_frames", 1) > 1:
                logger.warning("%s has %d frames; using the first.", path, image.n_frames)
                image.seek(0)
            image.load()
    except ImageReadError:
        raise
    except Image.DecompressionBombError as exc:
        raise ImageReadError(f"{path}: {exc} If the image is genuine, raise the limit with --max-pixels.") from exc
    except UnidentifiedImageError:
        raise ImageReadError(
            f"{path}: not a readable image (unknown format or corrupt header). Replace the file with a PNG, JPEG "
            "or TIFF."
        ) from None
    except (OSError, ValueError, SyntaxError, EOFError) as exc:
        raise ImageReadError(
            f"{path}: image data is corrupt or truncated ({exc}). Re-export or re-download it."
        ) from exc
    return image


def _to_rgb(image: Image.Image) -> np.ndarray:
    """Convert any PIL mode to (H, W, 3) uint8 RGB."""
    if image.mode in ("I;16", "I;16B", "I;16L", "I", "F"):
        values = np.asarray(image, dtype=np.float64)
        top = 65535.0 if image.mode.startswith("I;16") else max(float(values.max()), 1.0)
        gray = np.clip(np.round(values / top * 255.0), 0, 255).astype(np.uint8)
        return np.repeat(gray[:, :, None], 3, axis=2)
    has_alpha = image.mode in ("RGBA", "LA", "PA") or (image.mode == "P" and "transparency" in image.info)
    if has_alpha:
        rgba = image.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return np.asarray(Image.alpha_composite(white, rgba).convert("RGB"))
    return np.asarray(image.convert("RGB"))


def pixels_sha256(pixels: np.ndarray) -> str:
    """SHA-256 of an array's shape and bytes: equal decoded pixels give equal checksums."""
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
    image = _open(path, data, max_pixels)
    try:
        pixels = np.ascontiguousarray(_to_rgb(image))
    except (OSError, ValueError) as exc:
        raise ImageReadError(f"{path}: cannot be converted to RGB ({exc}). Re-export it as an RGB PNG.") from exc
    return DecodedImage(pixels, hashlib.sha256(data).hexdigest(), pixels_sha256(pixels))


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
    mask = _open(path, data, max_pixels)
    if mask.size != tuple(size):
        raise ImageReadError(
            f"{path}: mask is {mask.size[0]}x{mask.size[1]} but its image is {size[0]}x{size[1]}. Masks must have "
            "their image's size; re-export the mask at the image's resolution (it is never resized silently)."
        )
    if mask.mode in ("RGB", "RGBA", "CMYK", "YCbCr", "LAB", "HSV"):
        logger.debug("%s is a colour mask; a pixel is inside when any colour channel is > 0.", path)
        values = np.asarray(mask.convert("RGB"))
        inside = values.max(axis=2) > 0
    elif mask.mode in ("LA", "PA"):
        inside = np.asarray(mask.convert("L")) > 0
    elif mask.mode == "P":
        inside = np.asarray(mask.convert("RGB")).max(axis=2) > 0
    else:
        inside = np.asarray(mask) > 0
    return DecodedMask(np.ascontiguousarray(inside, dtype=bool), hashlib.sha256(data).hexdigest())
