"""A contact sheet of slides: each thumbnail with its tissue outline and its tiles, to check every slide in seconds.

The outline is the mask's inner edge (a tissue pixel with a 4-neighbour outside the tissue, or on the picture's
border), drawn over the tiles so that it stays visible; tiles are 1-px rectangles. Both are drawn at the panel's own
resolution (the thumbnail is shrunk first), so lines stay one pixel wide and crisp.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, replace
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from pipeline.data.slide_tiles import SlideTilePlan, SlideTissue

OUTLINE = (255, 170, 0)  # amber: no stain or pen colour, visible on glass and tissue
TILE_EDGE = (0, 90, 255)  # blue tile edges
PANEL = 320  # a slide's panel: the thumbnail fitted in PANEL x PANEL
GAP = 8
CAPTION = 30
PER_ROW = 4


@dataclass(frozen=True)
class SlideView:
    """What the sheet shows of one slide.

    Attributes:
        name: The slide's file name (the caption's first line).
        thumbnail: (h, w, 3) uint8 RGB.
        tissue: (h, w) bool tissue mask on the thumbnail's grid.
        coords: (n, 2) level-0 (x, y) tile corners.
        size0: Tile side in level-0 pixels.
        downsample: (x, y) level-0 pixels per thumbnail pixel.
        note: A short second caption line (e.g. "no tissue found"); "" for the tile count only.
    """

    name: str
    thumbnail: np.ndarray
    tissue: np.ndarray
    coords: np.ndarray
    size0: int
    downsample: tuple[float, float]
    note: str = ""


def slide_view(name: str, found: SlideTissue, plan: SlideTilePlan) -> SlideView:
    """The sheet's view of a slide from what :mod:`pipeline.data.slide_tiles` found and planned on it."""
    return SlideView(name, found.thumbnail, found.tissue, plan.coords, plan.size0, found.downsample, plan.note)


def small_view(name: str, found: SlideTissue, plan: SlideTilePlan, max_side: int = 2 * PANEL) -> SlideView:
    """:func:`slide_view` with the thumbnail and mask shrunk to at most ``max_side`` a side.

    Cheap to send between processes and to keep for every slide of a run until the sheet is drawn.
    """
    view = slide_view(name, found, plan)
    height, width = view.thumbnail.shape[:2]
    scale = min(1.0, max_side / max(height, width))
    if scale == 1.0:
        return view
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    thumbnail = np.asarray(Image.fromarray(view.thumbnail).resize(size, Image.Resampling.BOX))
    tissue = np.asarray(Image.fromarray(view.tissue).resize(size, Image.Resampling.NEAREST))
    downsample = (view.downsample[0] * width / size[0], view.downsample[1] * height / size[1])
    return replace(view, thumbnail=thumbnail, tissue=tissue, downsample=downsample)


def mask_edge(mask: np.ndarray) -> np.ndarray:
    """(h, w) bool: mask pixels with a 4-neighbour outside the mask (the picture's border counts as outside)."""
    padded = np.pad(mask, 1, constant_values=False)
    inner = padded[:-2, 1:-1] & padded[2:, 1:-1] & padded[1:-1, :-2] & padded[1:-1, 2:]
    return mask & ~inner


def draw_slide(view: SlideView, max_side: int | None = None) -> np.ndarray:
    """The thumbnail (shrunk to at most ``max_side`` a side) with tiles and tissue outline: (h', w', 3) uint8."""
    if view.tissue.shape != view.thumbnail.shape[:2]:
        raise ValueError(f"{view.name}: the tissue mask {view.tissue.shape} must have the thumbnail's size "
                         f"{view.thumbnail.shape[:2]}.")
    picture, mask = Image.fromarray(view.thumbnail), view.tissue
    scale = 1.0 if max_side is None else min(1.0, max_side / max(view.thumbnail.shape[:2]))
    if scale < 1.0:
        size = (max(1, round(picture.width * scale)), max(1, round(picture.height * scale)))
        picture = picture.resize(size, Image.Resampling.BOX)
        mask = np.asarray(Image.fromarray(mask).resize(size, Image.Resampling.NEAREST))
    per_x = picture.width / view.thumbnail.shape[1] / view.downsample[0]  # panel pixels per level-0 pixel
    per_y = picture.height / view.thumbnail.shape[0] / view.downsample[1]
    draw = ImageDraw.Draw(picture)
    for x, y in np.asarray(view.coords).reshape(-1, 2):
        box = (x * per_x, y * per_y, (x + view.size0) * per_x - 1, (y + view.size0) * per_y - 1)
        draw.rectangle(tuple(round(v) for v in box), outline=TILE_EDGE)
    drawn = np.array(picture)
    drawn[mask_edge(mask)] = OUTLINE
    return drawn


def write_slide_sheet(path: Path, views: Sequence[SlideView]) -> None:
    """Write one PNG of every slide's panel (:func:`draw_slide`), PER_ROW a row, each with name and tile count."""
    if not views:
        raise ValueError("write_slide_sheet needs at least one slide. Got none instead.")
    rows = -(-len(views) // PER_ROW)
    width = min(len(views), PER_ROW) * (PANEL + GAP)
    sheet = Image.new("RGB", (width, rows * (PANEL + CAPTION + GAP)), "white")
    draw = ImageDraw.Draw(sheet)
    font = ImageFont.load_default()
    for k, view in enumerate(views):
        x, y = (k % PER_ROW) * (PANEL + GAP), (k // PER_ROW) * (PANEL + CAPTION + GAP)
        panel = Image.fromarray(draw_slide(view, PANEL))
        sheet.paste(panel, (x + (PANEL - panel.width) // 2, y + (PANEL - panel.height) // 2))
        caption = f"{view.name}\n{len(view.coords)} tiles" + (f"; {view.note}" if view.note else "")
        draw.multiline_text((x + 3, y + PANEL + 2), caption, fill="black", font=font)
    temp = path.with_name(f".{path.name}.tmp.png")
    sheet.save(temp)
    temp.replace(path)
