"""Vote maps: an image with its mask outline and every tile coloured by the class its vote went to.

A tile paints a square of side ``min(tile size, stride)`` centred on the tile (so overlapping tiles do not paint
over each other) in its top class's colour, over the image, with an opacity that grows with its confidence (the
top-class probability, from ``1 / C`` = unsure to 1 = sure). An image of one or two tiles (a tint would cover all of
it) keeps its pixels: its tiles are outlined in their classes' colours and the class probabilities are drawn as bars.
The images shown are picked by :mod:`pipeline.report.picks`.

A slide is drawn on its thumbnail (:mod:`pipeline.report.slide_pictures`): its tiles' level-0 corners and sizes are
divided by the thumbnail's downsample (:attr:`VoteMap.downsample`).

A bag head (abmil) gives every tile an attention weight: its vote maps are attention maps, where a tile's colour is its
own class and its opacity its weight relative to the image's largest (:func:`attention_colors`).
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass

import numpy as np
from matplotlib.collections import PolyCollection
from matplotlib.figure import Figure
from PIL import Image

from pipeline.report.plots import class_colors, new_figure

FEW_TILES = 2  # with this many tiles or fewer, a tint would cover (nearly) the whole image and show nothing
MAX_DISPLAY_SIDE = 1600  # images are downscaled to this longest side before drawing (the figure is ~900 px wide)
MIN_ALPHA, MAX_ALPHA = 0.2, 0.7  # opacity of an unsure and of a certain tile; the tissue stays visible


def tile_colors(tile_proba: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """RGBA of each tile: its top class's colour, opacity from :data:`MIN_ALPHA` to :data:`MAX_ALPHA` by confidence.

    Args:
        tile_proba: (n_tiles, C) tile class probabilities.
        colors: (C, 3) float RGB of each class.

    Returns:
        (n_tiles, 4) float RGBA in [0, 1].
    """
    tile_proba = np.asarray(tile_proba, dtype=np.float64)
    alpha = confidence_alpha(tile_proba.max(axis=1), tile_proba.shape[1])
    return np.column_stack([np.asarray(colors)[tile_proba.argmax(axis=1)], alpha])


def attention_colors(tile_proba: np.ndarray, attention: np.ndarray, colors: np.ndarray) -> np.ndarray:
    """RGBA of each tile of one image: its own top class's colour, opacity by attention relative to the image's largest.

    Args:
        tile_proba: (n_tiles, C) each tile's own class probabilities. attention: (n_tiles,) weights of the image.
        colors: (C, 3) float RGB of each class.

    Returns:
        (n_tiles, 4) float RGBA: opacity :data:`MIN_ALPHA` x 0.25 for no attention up to :data:`MAX_ALPHA` for the
        image's most attended tile, so tiles that did not count fade into the tissue.
    """
    attention = np.asarray(attention, dtype=np.float64)
    relative = attention / max(float(attention.max()), 1e-12)
    alpha = MIN_ALPHA * 0.25 + (MAX_ALPHA - MIN_ALPHA * 0.25) * relative
    return np.column_stack([np.asarray(colors)[np.asarray(tile_proba).argmax(axis=1)], alpha])


def confidence_alpha(confidence: np.ndarray, n_classes: int) -> np.ndarray:
    """Opacity of tiles whose top-class probability is ``confidence``: linear from 1 / C (unsure) to 1 (sure)."""
    floor = 1.0 / n_classes
    strength = np.clip((np.asarray(confidence) - floor) / max(1.0 - floor, 1e-12), 0.0, 1.0)
    return MIN_ALPHA + (MAX_ALPHA - MIN_ALPHA) * strength


def display_scale(width: int, height: int, max_side: int = MAX_DISPLAY_SIDE) -> float:
    """Factor (<= 1) that brings the longest side of an image down to ``max_side`` pixels."""
    return min(1.0, max_side / max(width, height, 1))


def tile_cells(coords: np.ndarray, tile_size: int, cell_size: int, scale: float, shape: tuple[int, int]) -> np.ndarray:
    """(n_tiles, 4) int ``x0, y0, x1, y1`` of each tile's painted square in display pixels (end exclusive).

    Args:
        coords: (n_tiles, 2) (x, y) top-left corners in original pixels.
        tile_size: Tile side in original pixels.
        cell_size: Side of the painted square in original pixels (``min(tile, stride)``).
        scale: Display pixels per original pixel.
        shape: (height, width) of the display image.
    """
    centres = np.asarray(coords, dtype=np.float64) + tile_size / 2.0
    low = np.round((centres - cell_size / 2.0) * scale).astype(np.int64)
    high = np.maximum(np.round((centres + cell_size / 2.0) * scale).astype(np.int64), low + 1)
    limit = np.array([shape[1], shape[0]])
    return np.column_stack([np.clip(low, 0, limit), np.clip(high, 0, limit)])


def paint_tiles(pixels: np.ndarray, cells: np.ndarray, rgba: np.ndarray) -> np.ndarray:
    """Blend each tile's colour over its cell of the image.

    Args:
        pixels: (H, W, 3) uint8 image at display size.
        cells: (n_tiles, 4) int ``x0, y0, x1, y1`` from :func:`tile_cells`.
        rgba: (n_tiles, 4) float colours from :func:`tile_colors`.

    Returns:
        (H, W, 3) uint8: ``(1 - a) * pixel + a * colour`` inside the cells, the image elsewhere.
    """
    color = np.zeros(pixels.shape, dtype=np.float64)
    alpha = np.zeros(pixels.shape[:2], dtype=np.float64)
    for (x0, y0, x1, y1), (r, g, b, a) in zip(cells, rgba, strict=True):
        color[y0:y1, x0:x1] = (r * 255.0, g * 255.0, b * 255.0)
        alpha[y0:y1, x0:x1] = a
    blended = pixels * (1.0 - alpha[..., None]) + color * alpha[..., None]
    return np.clip(np.round(blended), 0, 255).astype(np.uint8)


@dataclass
class VoteMap:
    """What one vote map shows.

    Attributes:
        image_id: E.g. ``"train/img_0003"``.
        pixels: (H, W, 3) uint8 original image.
        inside: (H, W) bool mask, or None when the mask could not be read (no outline is drawn).
        coords: (n_tiles, 2) (x, y) tile corners in original pixels.
        tile_proba: (n_tiles, C) tile probabilities.
        image_proba: (C,) the image's voted probabilities.
        label: True class index, or None for a test image.
        note: Why the image is shown and where its prediction comes from, e.g. ``"least confident · fold 2"``.
        attention: (n_tiles,) attention weights of a bag head (then ``tile_proba`` is each tile's own class), or None.
        downsample: Pixels of ``coords`` (and tile sizes) per pixel of ``pixels``: 1 for an image, a slide's level-0
            pixels per thumbnail pixel for a slide.
    """

    image_id: str
    pixels: np.ndarray
    inside: np.ndarray | None
    coords: np.ndarray
    tile_proba: np.ndarray
    image_proba: np.ndarray
    label: int | None
    note: str
    attention: np.ndarray | None = None
    downsample: float = 1.0


def painted_picture(
    vote_map: VoteMap, n_classes: int, tile_size: float, cell_size: float
) -> tuple[np.ndarray, np.ndarray, float]:
    """The picture a vote map shows, at display size, and where its tiles are on it.

    Args:
        vote_map: What to draw. n_classes: C. tile_size, cell_size: In the pixels of ``vote_map.coords``.

    Returns:
        (H', W', 3) uint8 picture with the tiles painted (left as it is for :data:`FEW_TILES` tiles or fewer),
        (n_tiles, 4) int ``x0, y0, x1, y1`` display cells (whole tiles for few tiles), and the display scale of
        ``vote_map.pixels``.
    """
    height, width = vote_map.pixels.shape[:2]
    scale = display_scale(width, height)
    pixels = vote_map.pixels
    if scale < 1:
        size = (max(1, round(width * scale)), max(1, round(height * scale)))
        pixels = np.asarray(Image.fromarray(pixels).resize(size, Image.Resampling.BOX))
    per_coord = scale / vote_map.downsample  # display pixels per pixel of the coordinates
    if len(vote_map.coords) <= FEW_TILES:  # the tiles' outlines only: a tint would cover the whole picture
        return pixels, tile_cells(vote_map.coords, tile_size, tile_size, per_coord, pixels.shape[:2]), scale
    cells = tile_cells(vote_map.coords, tile_size, cell_size, per_coord, pixels.shape[:2])
    colors = class_colors(n_classes)
    rgba = (tile_colors(vote_map.tile_proba, colors) if vote_map.attention is None
            else attention_colors(vote_map.tile_proba, vote_map.attention, colors))
    return paint_tiles(pixels, cells, rgba), cells, scale


def render_vote_map(vote_map: VoteMap, classes: list[str], tile_size: float, cell_size: float) -> Figure:
    """The figure of one vote map: title, painted image with the mask outline, and a colour key.

    ``tile_size`` and ``cell_size`` are in the pixels of ``vote_map.coords`` (level 0 for a slide).
    """
    height, width = vote_map.pixels.shape[:2]
    colors = class_colors(len(classes))
    few = len(vote_map.coords) <= FEW_TILES  # then outlines in the classes' colours, and probabilities as bars
    painted, cells, scale = painted_picture(vote_map, len(classes), tile_size, cell_size)
    size = (painted.shape[1], painted.shape[0])

    figure = _layout(vote_map, classes, width, height)
    ax, key_ax = figure.axes
    ax.imshow(painted, interpolation="antialiased")
    # edges show where the tiles are, also the faint (unsure) ones; pixel i spans [i - 0.5, i + 0.5]
    edges = [[(x0 - 0.5, y0 - 0.5), (x1 - 0.5, y0 - 0.5), (x1 - 0.5, y1 - 0.5), (x0 - 0.5, y1 - 0.5)]
             for x0, y0, x1, y1 in cells]
    if few:
        outline = np.asarray(colors)[vote_map.tile_proba.argmax(axis=1)]
        widths = 3 if vote_map.attention is None else 1 + 4 * vote_map.attention / vote_map.attention.max()
        ax.add_collection(PolyCollection(edges, facecolors="none", edgecolors=outline, linewidths=widths))
    else:
        ax.add_collection(PolyCollection(edges, facecolors="none", edgecolors=(1, 1, 1, 0.6), linewidths=0.5))
    if vote_map.inside is not None and vote_map.inside.any() and not vote_map.inside.all():
        inside = vote_map.inside
        if scale < 1:
            inside = np.asarray(Image.fromarray(inside.astype(np.uint8) * 255).resize(size, Image.Resampling.BOX)) > 127
        ax.contour(inside.astype(np.float32), levels=[0.5], colors="black", linewidths=1.2)
    ax.set_axis_off()
    if few:
        _draw_probabilities(key_ax, vote_map, colors, classes)
    elif vote_map.attention is None:
        _draw_key(key_ax, colors, classes)
    else:
        _draw_attention_key(key_ax, colors, classes)
    return figure


def _layout(vote_map: VoteMap, classes: list[str], width: int, height: int) -> Figure:
    """A figure with the title on top, the image axes below it and the key axes at the bottom, placed in inches.

    Placed by hand rather than by a layout engine, so the image fills the width whatever its aspect ratio.
    """
    fig_w = 8.0
    image_w = fig_w - 0.3
    image_h = image_w * height / width
    if image_h > 6.5:  # tall image: keep the figure on a laptop screen
        image_h = 6.5
        image_w = image_h * width / height
    title = _title(vote_map, classes)
    title_h = 0.2 + 0.19 * (title.count("\n") + 1)
    key_h = 0.2 * len(classes) + 0.05
    names_w = min(2.5, 0.3 + 0.075 * max(len(c) for c in classes))
    bottom_h = 0.75  # the key's tick labels and its two-line caption
    fig_h = title_h + image_h + 0.15 + key_h + bottom_h
    figure = new_figure(fig_w, fig_h, layout=None)
    figure.text(0.15 / fig_w, 1 - 0.1 / fig_h, title, ha="left", va="top", fontsize=10, color=_title_color(vote_map))
    figure.add_axes(((fig_w - image_w) / 2 / fig_w, (bottom_h + key_h + 0.15) / fig_h, image_w / fig_w,
                     image_h / fig_h))
    figure.add_axes((names_w / fig_w, bottom_h / fig_h, (fig_w - names_w - 0.3) / fig_w, key_h / fig_h))
    return figure


def _title(vote_map: VoteMap, classes: list[str]) -> str:
    predicted = int(vote_map.image_proba.argmax())
    truth = f"true {classes[vote_map.label]}" if vote_map.label is not None else "test image, no label"
    first = f"{vote_map.image_id}: {truth} · predicted {classes[predicted]} ({vote_map.image_proba.max():.2f})"
    votes = np.bincount(vote_map.tile_proba.argmax(axis=1), minlength=len(classes))
    counts = ", ".join(f"{votes[c]} {classes[c]}" for c in np.argsort(-votes, kind="stable") if votes[c])
    n = len(vote_map.tile_proba)
    third = f"{n} tile{'' if n == 1 else 's'} voted: {counts}"
    if vote_map.attention is not None:
        top = int(np.argmax(vote_map.attention))
        third = (f"attention: largest {vote_map.attention[top]:.2f} (even spread: {1 / n:.2f}) on a "
                 f"{classes[int(vote_map.tile_proba[top].argmax())]} tile; tiles on their own: {counts}")
    return "\n".join(textwrap.fill(line, 100) for line in (first, vote_map.note, third))


def _title_color(vote_map: VoteMap) -> str:
    if vote_map.label is None:
        return "black"
    return "#2a7a2a" if int(vote_map.image_proba.argmax()) == vote_map.label else "#b22222"


def _draw_key(ax: object, colors: np.ndarray, classes: list[str]) -> None:
    """One row per class: its colour from the least to the most confident tile, blended over white."""
    n = len(classes)
    confidence = np.linspace(1.0 / n, 1.0, 64)
    alpha = confidence_alpha(confidence, n)[None, :, None]
    key = (1.0 - alpha) + np.asarray(colors)[:, None, :] * alpha  # (C, 64, 3) over white
    ax.imshow(key, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xticks([0, len(confidence) - 1], [f"{1.0 / n:.2f} (unsure)", "1.00 (sure)"], fontsize=8)
    ax.set_xlabel("tile colour: the class its vote went to; opacity: its confidence (top-class probability)\n"
                  "black line: outline of the mask", fontsize=8)


def _draw_attention_key(ax: object, colors: np.ndarray, classes: list[str]) -> None:
    """One row per class: its colour from no attention to the image's most attended tile, blended over white."""
    n = len(classes)
    relative = np.linspace(0.0, 1.0, 64)
    alpha = (MIN_ALPHA * 0.25 + (MAX_ALPHA - MIN_ALPHA * 0.25) * relative)[None, :, None]
    key = (1.0 - alpha) + np.asarray(colors)[:, None, :] * alpha  # (C, 64, 3) over white
    ax.imshow(key, aspect="auto", interpolation="nearest")
    ax.set_yticks(range(n), classes, fontsize=8)
    ax.set_xticks([0, len(relative) - 1], ["no attention", "the image's largest"], fontsize=8)
    for label, align in zip(ax.get_xticklabels(), ("left", "right"), strict=True):
        label.set_horizontalalignment(align)  # the ends of the scale stay inside the figure
    ax.set_xlabel("tile colour: the tile's own class; opacity: its attention weight (how much it counted)\n"
                  "black line: outline of the mask", fontsize=8)


def _draw_probabilities(ax: object, vote_map: VoteMap, colors: np.ndarray, classes: list[str]) -> None:
    """One row per class: the image's probability as a bar, each tile's as a marker."""
    rows = np.arange(len(classes))
    ax.barh(rows, vote_map.image_proba, color=colors, height=0.7)
    for k, tile_proba in enumerate(vote_map.tile_proba):
        ax.scatter(tile_proba, rows, marker="|" if k == 0 else "x", color="black", s=60, zorder=3,
                   label=f"tile {k + 1}")
    ax.set_yticks(rows, classes, fontsize=8)
    ax.set_ylim(len(classes) - 0.5, -0.5)
    ax.set_xlim(0, 1)
    ax.tick_params(axis="x", labelsize=8)
    tiles = "each tile's (markers)" if len(vote_map.tile_proba) > 1 else "the tile's (marker)"
    outline = ("the colour of the class its vote went to" if vote_map.attention is None
               else "the tile's own class, thicker with more attention")
    ax.set_xlabel(f"class probabilities: the image's (bars) and {tiles}\n"
                  f"tile outline: {outline}; black line: outline of the mask", fontsize=8)
