"""The libraries that read slides: which one opens a file, whether a TIFF is whole, regions as RGB over white.

OpenSlide (the ``openslide-python`` and ``openslide-bin`` wheels) is preferred; ``tiffslide`` (pure Python,
TIFF-based formats only) reads slides where OpenSlide is not installed. ``pip install -e ".[slides]"`` installs both.
"""

from __future__ import annotations

import ctypes
import sys
from pathlib import Path

import numpy as np
from PIL import Image

from pipeline.errors import SlideLibraryError, SlideReadError

# What OpenSlide reads; the TIFF-based ones are also checked for truncation before opening (tifffile reads the
# tile offsets, no pixel).
SLIDE_EXTENSIONS = (".svs", ".ndpi", ".mrxs", ".scn", ".tif", ".tiff", ".vms", ".vmu", ".bif", ".svslide")
TIFF_EXTENSIONS = (".svs", ".ndpi", ".scn", ".tif", ".tiff", ".bif", ".svslide")
BACKENDS = ("auto", "openslide", "tiffslide")
INSTALL_HINT = 'pip install -e ".[slides]"'


def is_slide(path: Path | str) -> bool:
    """True when the file name has an extension of ``SLIDE_EXTENSIONS`` (any case)."""
    return Path(path).suffix.lower() in SLIDE_EXTENSIONS


def reads_as_slide(path: Path | str) -> bool:
    """True when a file is a whole-slide image, False when it is an ordinary image (or not a slide format).

    ``.tif``/``.tiff`` are both: a TIFF whose first page is tiled, or that holds more than one resolution (a pyramid
    of pages or SubIFDs), is a slide; a stripped single-resolution one (what image editors and Pillow write) is an
    image. Every other extension of :data:`SLIDE_EXTENSIONS` is a slide. A TIFF that tifffile cannot parse (or
    without tifffile) stays an image, whose reader then reports it. Only the TIFF header and page directories are
    read, no pixel.
    """
    suffix = Path(path).suffix.lower()
    if suffix not in SLIDE_EXTENSIONS:
        return False
    if suffix not in (".tif", ".tiff"):
        return True
    try:
        import tifffile

        with tifffile.TiffFile(path) as tiff:
            first = tiff.pages[0]
            return bool(first.is_tiled or len(tiff.series[0].levels) > 1 or first.subifds)
    except Exception:  # noqa: BLE001 - no tifffile, or a file it cannot parse: an image, reported by its reader
        return False


def open_library(backend: str):
    """(name, opener) of the slide library: OpenSlide first, tiffslide where OpenSlide is not installed."""
    if backend in ("auto", "openslide"):
        try:
            import openslide
        except (ImportError, OSError) as exc:  # OSError: the wheel is there but its shared library is not
            if backend == "openslide":
                raise SlideLibraryError(f"OpenSlide cannot be loaded ({exc}). Install it with {INSTALL_HINT}.") from exc
        else:
            return "openslide", openslide.OpenSlide
    try:
        import tiffslide
    except ImportError as exc:
        raise SlideLibraryError(
            f"Reading whole-slide images needs OpenSlide or tiffslide, and neither is installed. Install them with "
            f"{INSTALL_HINT}."
        ) from exc
    return "tiffslide", tiffslide.TiffSlide


def check_complete(path: Path) -> None:
    """Raise :class:`SlideReadError` when a TIFF-based slide's tiles point past the end of the file.

    OpenSlide reports a truncated file as "unsupported", and tiffslide may decode a cut tile without complaint.
    """
    try:
        import tifffile
    except ImportError:  # OpenSlide alone: its own error stands
        return
    size = path.stat().st_size
    try:
        with tifffile.TiffFile(path) as tiff:
            end = max(
                (int(np.max(np.add(page.dataoffsets, page.databytecounts))) for page in tiff.pages
                 if len(page.dataoffsets)),
                default=0,
            )
    except Exception:  # noqa: BLE001 - not a TIFF tifffile can parse: the slide library's error says more
        return
    if end > size:
        raise SlideReadError(
            f"{path}: the file is truncated (its tiles go on to byte {end:,} but it has {size:,} bytes). Copy or "
            "download it again."
        )


def _direct_reader():
    """openslide-python's ctypes binding of ``openslide_read_region``, or None (absent, or a big-endian machine).

    The binding checks OpenSlide's error state after each call, as the public ``read_region`` does.
    """
    lowlevel = sys.modules.get("openslide.lowlevel")
    return getattr(lowlevel, "_read_region", None) if sys.byteorder == "little" else None


def read_openslide(handle, x0: int, y0: int, level: int, width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8 from OpenSlide's own premultiplied ARGB buffer, composited onto white.

    The public ``read_region`` un-premultiplies into a PIL RGBA image, which then costs two more copies to become
    an RGB array: about a third of a cached 256-px tile's read. Reading into numpy directly keeps the data side
    within a few percent of a bare ``read_region`` loop (benchmarks/bench_slide_read.py). Where the lower-level
    function is absent (another openslide-python) or the machine is big-endian, the public call is used.
    """
    raw_read = _direct_reader()
    if raw_read is None or width * height == 0:
        return _composited(np.asarray(handle.read_region((x0, y0), level, (width, height))))
    argb = np.empty((height, width), np.uint32)
    raw_read(handle._osr, (ctypes.c_uint32 * argb.size).from_buffer(argb), x0, y0, level, width, height)
    bgra = argb.view(np.uint8).reshape(height, width, 4)  # little-endian ARGB words: B, G, R, A bytes
    if bgra[:, :, 3].min() == 255:
        return np.asarray(Image.frombuffer("RGB", (width, height), argb, "raw", "BGRX", 0, 1))
    # premultiplied colour over white: c + 255 * (1 - a / 255)
    return (bgra[:, :, 2::-1] + (255 - bgra[:, :, 3:4].astype(np.uint16))).astype(np.uint8)


def _composited(rgba: np.ndarray) -> np.ndarray:
    """(h, w, 3) uint8: non-premultiplied RGBA over white; a fully opaque region (the usual case) is only sliced."""
    alpha = rgba[:, :, 3]
    if alpha.min() == 255:
        return np.ascontiguousarray(rgba[:, :, :3])
    a = alpha[:, :, None].astype(np.uint32)
    return ((rgba[:, :, :3] * a + 255 * (255 - a) + 127) // 255).astype(np.uint8)


def read_tiffslide(handle, x0: int, y0: int, level: int, width: int, height: int) -> np.ndarray:
    """(height, width, 3) uint8 through tiffslide, with the part outside the level made white.

    tiffslide pads that part with black, and warns when nothing is inside.
    """
    level_width, level_height = handle.level_dimensions[level]
    downsample = handle.level_downsamples[level]
    left, top = int(x0 / downsample), int(y0 / downsample)  # tiffslide's own rounding of the location
    inside_x = slice(max(0, -left), max(0, min(width, level_width - left)))
    inside_y = slice(max(0, -top), max(0, min(height, level_height - top)))
    out = np.full((height, width, 3), 255, np.uint8)
    if inside_x.start >= inside_x.stop or inside_y.start >= inside_y.stop:
        return out
    pixels = np.asarray(handle.read_region((x0, y0), level, (width, height), as_array=True))
    if pixels.ndim == 2 or pixels.shape[2] == 1:
        pixels = np.repeat(pixels.reshape(height, width, 1), 3, axis=2)
    elif pixels.shape[2] == 4:
        pixels = _composited(pixels)
    out[inside_y, inside_x] = pixels[inside_y, inside_x, :3]
    return out
