"""Slide files before any pixel: which extensions are slides, which library opens them, whether a TIFF is whole.

OpenSlide (the ``openslide-python`` and ``openslide-bin`` wheels) is preferred; ``tiffslide`` (pure Python,
TIFF-based formats only) reads slides where OpenSlide is not installed. ``pip install -e ".[slides]"`` installs both.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

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
