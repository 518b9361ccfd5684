"""Tissue detection and tiles on made slides with known tissue and pen strokes: the numbers docs/slides.md quotes.

Makes one slide (default layout, green, blue and black strokes across the first piece, glas15 patches when the
shared data is present) at 20x (0.5 um/px) and the same tissue at 40x (0.25 um/px), finds its tissue on a thumbnail
(``slide_tiles.find_slide_tissue``, about 8 um/px) and places 224-px tiles at 0.5 um/px. Prints, per scan and per
variant of the thumbnail (plain, green and yellow casts, faded): the detected tissue's precision and recall against
the truth, pen pixels called tissue, and for the tiles: share on true tissue (>= half their area), share of the true
tissue covered, tiles touching a pen stroke, and the time. ``--sheet PATH`` writes the contact sheet.

    python -m benchmarks.bench_tissue [--size 4096] [--sheet slides.png]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import SHARED_DATA, slide_maker
from benchmarks.colour_variants import cast
from benchmarks.stain_variants import fade
from pipeline.data.slide_tiles import SlideTissue, find_slide_tissue, plan_slide_tiles, tiles_for_slide
from pipeline.data.slides import Slide
from pipeline.data.tissue import tissue_and_pen
from pipeline.hygiene.slide_sheet import slide_view, write_slide_sheet

SHARED = SHARED_DATA / "glas15"
VARIANTS = {
    "plain": lambda p: p,
    "green cast": lambda p: cast(p, "green", 1.0),
    "yellow cast": lambda p: cast(p, "yellow", 1.5),
    "faded 50%": lambda p: fade(p, 0.5),
    "faded 70%": lambda p: fade(p, 0.7),
}


def doubled(layout: slide_maker.SlideLayout) -> slide_maker.SlideLayout:
    """The same tissue at twice the resolution."""
    return slide_maker.SlideLayout(
        layout.width * 2, layout.height * 2, tuple(tuple(v * 2 for v in r) for r in layout.tissue),
        tuple(np.repeat(np.repeat(p, 2, axis=0), 2, axis=1) for p in layout.patches),
        tuple((*(v * 2 for v in p[:4]), p[4]) for p in layout.pens),
    )


def truth_at(mask: np.ndarray, shape: tuple[int, int]) -> np.ndarray:
    """A level-0-aligned truth mask sampled (nearest) onto a thumbnail's grid."""
    rows = (np.arange(shape[0]) + 0.5) * mask.shape[0] / shape[0]
    cols = (np.arange(shape[1]) + 0.5) * mask.shape[1] / shape[1]
    return mask[np.ix_(rows.astype(int), cols.astype(int))]


def tile_scores(coords: np.ndarray, size0: int, layout: slide_maker.SlideLayout) -> tuple[float, float, int]:
    """(share of tiles on true tissue, share of true tissue covered, tiles touching pen), at downsample 16."""
    d = 16
    truth, pen = layout.tissue_mask(d), layout.pen_mask(d)
    covered = np.zeros_like(truth)
    on, on_pen = [], 0
    for x, y in coords:
        box = slice(y // d, -(-(y + size0) // d)), slice(x // d, -(-(x + size0) // d))
        on.append(truth[box].mean() >= 0.5)
        on_pen += bool(pen[box].any())
        covered[box] = True
    return float(np.mean(on)) if on else 0.0, float((covered & truth & ~pen).sum() / (truth & ~pen).sum()), on_pen


def main(argv: list[str] | None = None) -> int:
    """Run the measurement; print one line per scan and variant."""
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--size", type=int, default=4096, help="level-0 side of the 20x slide (multiple of 256)")
    parser.add_argument("--sheet", type=Path, default=None, help="write the slides' contact sheet here")
    args = parser.parse_args(argv)
    patches = slide_maker.he_patches(SHARED) if (SHARED / "train_data").is_dir() else slide_maker.synthetic_patches()
    at20 = slide_maker.default_layout(args.size, args.size, patches, pens=("green", "blue", "black"))
    views = []
    with tempfile.TemporaryDirectory() as folder:
        for name, layout, mpp in (("20x", at20, 0.5), ("40x", doubled(at20), 0.25)):
            path = slide_maker.write_slide(Path(folder) / f"{name}.svs", layout, "aperio", mpp=mpp)
            with Slide(path) as slide:
                start = time.perf_counter()
                found = find_slide_tissue(slide)
                plan = tiles_for_slide(slide, found, 0.5, 224)
                elapsed = time.perf_counter() - start
                views.append(slide_view(path.name, found, plan))
                thumb_mpp = slide.mpp * found.downsample[0]
                for variant, change in VARIANTS.items():
                    picture = change(found.thumbnail)
                    tissue, pen = tissue_and_pen(picture, thumb_mpp)
                    truth = truth_at(layout.tissue_mask(1 if layout.width <= 8192 else 16), tissue.shape)
                    pens = truth_at(layout.pen_mask(1 if layout.width <= 8192 else 16), tissue.shape)
                    precision = (tissue & truth).sum() / max(tissue.sum(), 1)
                    recall = (tissue & truth & ~pens).sum() / (truth & ~pens).sum()
                    tiles = plan if variant == "plain" else plan_slide_tiles(
                        SlideTissue(picture, tissue, pen, found.downsample).tissue, slide.dimensions, plan.size0,
                        pen=pen)
                    scale = 1 if name == "20x" else 2  # tile_scores reads the truth at the 20x layout's scale
                    on, covered, on_pen = tile_scores(tiles.coords // scale, tiles.size0 // scale, at20)
                    print(f"{name} {variant:12s} thumbnail {tissue.shape[1]}x{tissue.shape[0]} ({thumb_mpp:.1f} um/px)"
                          f"  tissue precision {precision:.3f} recall {recall:.3f} pen px as tissue "
                          f"{int((tissue & pens).sum())}  |  {len(tiles.coords)} tiles of {tiles.size0} px: on tissue "
                          f"{on:.3f} covered {covered:.3f} on pen {on_pen}"
                          + (f"  ({elapsed:.2f} s thumbnail + tissue + tiles)" if variant == "plain" else ""))
    if args.sheet:
        write_slide_sheet(args.sheet, views)
        print(f"contact sheet: {args.sheet}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
