"""Tissue and pen statistics of slides for ``quality.csv``, from what the tissue detector found on the thumbnail.

A slide's hygiene scores (:func:`pipeline.hygiene.checks.image_quality`) are taken inside its tissue mask, from which
the detector has already taken the pen out, so its ``q_*_ink_fraction`` stay near 0 whatever was drawn on the glass.
What a person checking a slide cohort wants is the detector's own account: the share of the thumbnail that is tissue
and the share under pen strokes of each colour (margins included, as tiles avoid them), so that a slide where pen
covers much of the tissue, or where little tissue was found, stands out in ``quality.csv``.

Extraction stores them in the slide's feature file when its tiles lie on detected tissue; for other files (a mask
beside the slide, ``--tissue all``, caches made before) :func:`add_slide_statistics` computes them once after
extraction (thumbnail and tissue again, 0.05-0.2 s a slide) and writes them into the file, where every later reader
(``classify.py``'s run folder) finds them.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np
from scipy.ndimage import label

from pipeline.cache import store
from pipeline.data.colour import (
    MIN_VIOLET_CHROMA,
    glass_white,
    od_hue_and_chroma,
    optical_density,
    pen_mask,
    white_balance,
)
from pipeline.data.slide_backends import reads_as_slide
from pipeline.data.slide_tiles import SlideTissue, find_slide_tissue
from pipeline.data.slides import Slide
from pipeline.data.tissue import TissueSettings
from pipeline.errors import PipelineError
from pipeline.hygiene.checks import SLIDE_STATS

__all__ = ["SLIDE_STATS", "add_slide_statistics", "slide_statistics"]

logger = logging.getLogger(__name__)

PEN_COLOURS = ("green", "blue", "black")  # the order of SLIDE_STATS' colours
_EIGHT = np.ones((3, 3), dtype=bool)


def slide_statistics(found: SlideTissue, settings: TissueSettings | None = None) -> dict[str, float]:
    """The :data:`SLIDE_STATS` of one slide: shares of its thumbnail's area.

    Each 8-connected pen stroke (with its margin) counts whole for the colour most of its inked pixels have
    (:func:`pipeline.data.colour.pen_mask` with the detector's thumbnail rule for blue ink over tissue), so the
    colours add up to ``slide_pen_fraction``.
    """
    settings = settings or TissueSettings()
    area = found.tissue.size
    stats = {"slide_tissue_fraction": float(found.tissue.sum() / area), "slide_pen_fraction": float(found.pen.sum()
                                                                                                      / area)}
    stats.update({f"slide_pen_{colour}_fraction": 0.0 for colour in PEN_COLOURS})
    if not found.pen.any():
        return stats
    balanced = white_balance(found.thumbnail, glass_white(found.thumbnail))
    # the detector's floor for blue ink over tissue: a multiple of the stain's median OD chroma (data/tissue.py)
    stain = od_hue_and_chroma(optical_density(balanced[found.tissue]))[1] if found.tissue.any() else np.zeros(1)
    violet = min(max(settings.violet_factor * float(np.median(stain)), settings.min_violet_chroma), MIN_VIOLET_CHROMA)
    colours = pen_mask(balanced, thumbnail_violet_chroma=violet)
    strokes, n = label(found.pen, structure=_EIGHT)
    votes = np.stack([np.bincount(strokes[colours[c]], minlength=n + 1) for c in PEN_COLOURS])  # (3, n + 1)
    sizes = np.bincount(strokes.ravel(), minlength=n + 1)
    winner = votes[:, 1:].argmax(axis=0)  # (n,) colour of each stroke
    for k, colour in enumerate(PEN_COLOURS):
        stats[f"slide_pen_{colour}_fraction"] = float(sizes[1:][winner == k].sum() / area)
    return stats


def add_slide_statistics(image_paths: dict[str, Path], files: dict[str, Path], attrs: dict[str, dict]) -> int:
    """Compute the statistics of the slides whose feature files lack them and write them into those files.

    Args:
        image_paths: Image id -> image file (slides are told by :func:`reads_as_slide`).
        files: Image id -> its feature file.
        attrs: Image id -> the file's attributes; updated in place for the slides done.

    Returns:
        The number of slides done. A slide that cannot be read again is logged and left without statistics.
    """
    done = 0
    for image_id, values in attrs.items():
        path = image_paths.get(image_id)
        if "slide_pen_fraction" in values or path is None or image_id not in files or not reads_as_slide(path):
            continue
        try:
            item = store.read_image_features(files[image_id])
            with Slide(path, mpp=item.coords_attrs.get("mpp_level0")) as slide:  # the MPP extraction used
                stats = slide_statistics(find_slide_tissue(slide))
            attrs[image_id] = store.update_attributes(files[image_id], stats).attrs
        except (PipelineError, store.FileProblem, OSError, ValueError) as exc:
            logger.warning("No tissue and pen statistics for %s: %s", image_id, exc)
            continue
        done += 1
    return done
