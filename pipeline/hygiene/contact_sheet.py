"""A contact sheet of the flagged images, one band per reason, that a person can scan in seconds."""

from __future__ import annotations

import io
import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.data.decoders import fast_pixels, open_unchecked
from pipeline.data.slide_backends import reads_as_slide
from pipeline.data.slides import Slide
from pipeline.hygiene.assessment import FLAGS, QualityReport
from pipeline.hygiene.rules import INK_COLOURS

THUMB = 150  # thumbnail side in pixels
GAP = 6  # white space between thumbnails, so neighbours do not read as one picture
CAPTION = 30  # caption height under each thumbnail
PER_ROW = 8
MAX_PER_REASON = 24  # a band never grows past three rows; the csv lists everything
TITLE = 28
_EXPLAIN = {
    "exact_duplicate": "same file or same decoded pixels as another image",
    "near_duplicate": "a flipped, rotated, resized or re-encoded copy of another image",
    "shared_mask": "the identical mask file as another image",
    "non_tissue": "too little stain, off-hue colours, flat fills or an outlying embedding",
    "ink": "green ink inside the mask",
}


def _thumbnail(path: Path | None) -> Image.Image:
    """A THUMB x THUMB square with the image fitted in it; grey when the image is missing or unreadable.

    Thread-safe (it changes no global state), so thumbnails are drawn in parallel; images too large for Pillow's own
    guard stay grey. A JPEG decodes at a fraction of its size (Pillow's draft); a common PNG through the fast decoder
    extraction uses (:func:`pipeline.data.decoders.fast_pixels`, half the time of Pillow's), the rest through Pillow.
    A whole-slide image gives its thumbnail from its coarsest fitting level (:meth:`Slide.thumbnail`), never level 0.
    """
    tile = Image.new("RGB", (THUMB, THUMB), (235, 235, 235))
    if path is None:
        return tile
    try:
        if reads_as_slide(path):
            with Slide(path) as slide:
                image = Image.fromarray(slide.thumbnail(THUMB))
        else:
            image = _image(path)
    except Exception:  # noqa: BLE001 - any unreadable file gets the grey square; extraction already reported it
        return tile
    image.thumbnail((THUMB, THUMB))
    tile.paste(image, ((THUMB - image.width) // 2, (THUMB - image.height) // 2))
    return tile


def _image(path: Path) -> Image.Image:
    """An ordinary image file as RGB (a JPEG at a fraction of its size)."""
    with Image.open(path) as opened:
        if opened.format == "JPEG":
            opened.draft("RGB", (THUMB, THUMB))
            return opened.convert("RGB")
        data = Path(path).read_bytes()
        pixels = fast_pixels(open_unchecked(io.BytesIO(data)), data)
        return (opened if pixels is None else Image.fromarray(pixels)).convert("RGB")


def _caption(report: QualityReport, i: int, flag: str) -> str:
    scores = report.scores
    if flag in ("exact_duplicate", "near_duplicate"):
        detail = f"~{report.nearest[i].split('/')[-1]} d={int(scores['nearest_phash_distance'][i])}"
    elif flag == "ink":
        detail = ", ".join(f"{colour} ink {scores[f'q_{colour}_ink_fraction'][i]:.1%}" for colour in INK_COLOURS
                           if report.rules[f"{colour}_ink"][i]) or "ink"
    elif flag == "non_tissue":
        detail = f"stain {scores['q_stain_fraction'][i]:.0%} flat {scores['q_flat_fill_fraction'][i]:.0%}"
    else:
        detail = f"group {int(report.duplicate_group[i])}"
    return f"{report.image_ids[i]}\n{detail}"


def write_contact_sheet(path: Path, report: QualityReport, image_paths: dict[str, Path]) -> bool:
    """Write a PNG of the flagged images grouped by reason; return False when nothing was flagged.

    Args:
        path: The PNG to write.
        report: The assessed images.
        image_paths: Image id -> image file; an image missing here, or unreadable, appears as a grey square, so the
            sheet never fails a run.

    Duplicates are ordered by group so that copies sit side by side.
    """
    bands = []
    for flag in FLAGS:
        members = np.nonzero(report.flags[flag])[0]
        if flag in ("exact_duplicate", "near_duplicate", "shared_mask"):
            members = members[np.argsort(report.duplicate_group[members], kind="stable")]
        if len(members):
            bands.append((flag, members[:MAX_PER_REASON], len(members)))
    if not bands:
        return False
    font = ImageFont.load_default()
    width = PER_ROW * (THUMB + GAP)
    heights = [TITLE + int(np.ceil(len(members) / PER_ROW)) * (THUMB + CAPTION) for _, members, _ in bands]
    sheet = Image.new("RGB", (width, sum(heights)), "white")
    draw = ImageDraw.Draw(sheet)
    shown_ids = sorted({report.image_ids[i] for _, members, _ in bands for i in members})
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:  # decoding releases the GIL
        shown = pool.map(lambda image_id: _thumbnail(image_paths.get(image_id)), shown_ids)
        thumbnails = dict(zip(shown_ids, shown, strict=True))
    top = 0
    for (flag, members, total), height in zip(bands, heights, strict=True):
        shown = f" (first {len(members)} of {total})" if total > len(members) else f" ({total})"
        draw.rectangle((0, top, width, top + TITLE - 4), fill=(40, 40, 60))
        draw.text((8, top + 7), f"{flag}{shown}: {_EXPLAIN[flag]}", fill="white", font=font)
        for k, i in enumerate(members):
            x, y = (k % PER_ROW) * (THUMB + GAP), top + TITLE + (k // PER_ROW) * (THUMB + CAPTION)
            sheet.paste(thumbnails[report.image_ids[i]], (x, y))
            draw.multiline_text((x + 3, y + THUMB + 2), _caption(report, i, flag), fill="black", font=font)
        top += height
    temp = path.with_name(f".{path.name}.tmp.png")
    sheet.save(temp)
    temp.replace(path)
    return True
