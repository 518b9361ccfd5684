"""Every picture of a run folder and the page that shows them, written by :func:`write_pictures`.

``confusion_matrix.png``, ``per_class.png`` (also under ``heads/<name>/`` with several heads), ``heads.png`` (several
heads), ``embedding_map.png``, ``vote_maps/*.png`` and ``report.html``. Pictures never cost a run its results: one
that fails is logged and left out, and vote maps are skipped with a warning when the original images are gone.
A slide's vote map is drawn on its thumbnail, with the tissue found at extraction as its outline
(:mod:`pipeline.report.slide_pictures`).
"""

from __future__ import annotations

import logging
import re
import time
from collections.abc import Callable
from pathlib import Path

import numpy as np

from pipeline.classify.results import ClassificationResult, HeadResult
from pipeline.classify.settings import ClassificationSettings
from pipeline.data.images import DecodedImage, pixels_sha256, read_image, read_mask
from pipeline.data.records import ImageRecord, find_records
from pipeline.errors import ImageReadError, PipelineError
from pipeline.report import plots
from pipeline.report.html_page import Picture, write_report
from pipeline.report.picks import REASONS, Pick, resolve_requests, select_images
from pipeline.report.slide_pictures import slide_picture
from pipeline.report.vote_maps import MAX_DISPLAY_SIDE, VoteMap, render_vote_map

logger = logging.getLogger(__name__)

VOTE_MAPS_DIR = "vote_maps"


def write_pictures(
    folder: Path, result: ClassificationResult, settings: ClassificationSettings, title: str
) -> list[Picture]:
    """Draw every picture of the run into ``folder`` and write ``report.html`` titled ``title``; return them."""
    started = time.perf_counter()
    best = result.best
    pictures = _attempt("the score pictures", lambda: write_score_pictures(folder, result, best))
    if len(result.heads) > 1:
        pictures += _attempt("heads.png", lambda: [write_heads(folder, result)])
        for run in result.heads:
            _attempt(f"the pictures of {run.name}", lambda run=run: write_score_pictures(
                folder / "heads" / run.name, result, run))
    pictures += _attempt("embedding_map.png", lambda: [write_embedding_map(folder, result, best, settings.seed)])
    # a fused run's caches cut other tiles: its vote maps show the head on the first cache alone (report.html says so)
    drawn = best.members[0] if result.fusion is not None else best
    pictures += _attempt("the vote maps", lambda: write_vote_maps(folder, result, drawn, list(settings.vote_maps)))
    _attempt("report.html", lambda: [write_report(folder, result, settings, pictures, title)])
    logger.info("pictures: %d files and report.html in %.1f s", len(pictures), time.perf_counter() - started)
    return pictures


def _attempt(what: str, draw: Callable[[], list]) -> list:
    try:
        return draw()
    except Exception:  # a broken picture must not lose the run's metrics and submission: report it and go on
        logger.warning("Could not draw %s; the run's other files are written.", what, exc_info=True)
        return []


def write_score_pictures(folder: Path, result: ClassificationResult, run: HeadResult) -> list[Picture]:
    """``confusion_matrix.png`` and ``per_class.png`` of one head's out-of-fold predictions."""
    metrics, classes = run.metrics, result.classes
    n = int(np.sum(metrics["confusion_matrix"]))
    title = f"{run.name}: out-of-fold predictions of {n} images"
    figure = plots.confusion_matrix_figure(np.array(metrics["confusion_matrix"]), classes, f"Confusion matrix, {title}")
    plots.save_figure(figure, folder / "confusion_matrix.png")
    figure = plots.per_class_figure(metrics["per_class"], classes, metrics["weighted_f1"], f"Per-class scores, {title}")
    plots.save_figure(figure, folder / "per_class.png")
    return [
        Picture(Path("confusion_matrix.png"), "Confusion matrix",
                "Rows: true class; columns: predicted class. Each cell: image count and share of its row.", "scores"),
        Picture(Path("per_class.png"), "Per-class scores",
                "Precision, recall and F1 of each class; n = images of the class; dashed: weighted F1.", "scores"),
    ]


def write_heads(folder: Path, result: ClassificationResult) -> Picture:
    """``heads.png``: every head's weighted F1 (fold mean and spread, each fold, pooled)."""
    runs = result.heads
    figure = plots.heads_figure([r.name for r in runs], [r.metrics["weighted_f1_folds"] for r in runs],
                                [r.metrics["weighted_f1"] for r in runs],
                                f"Heads compared: weighted F1 over {len(runs[0].metrics['weighted_f1_folds'])} folds")
    plots.save_figure(figure, folder / "heads.png")
    return Picture(Path("heads.png"), "Heads compared",
                   "Bars: mean weighted F1 of the folds ± sd; dots: each fold; diamond: pooled out-of-fold score. "
                   "The best head fills the top of the run folder.", "heads")


def write_embedding_map(folder: Path, result: ClassificationResult, run: HeadResult, seed: int) -> Picture:
    """``embedding_map.png``: mean tile embedding of each training image in 2-D, coloured by true class."""
    coords, method, axis_labels = plots.project_2d(result.train.image_embeddings(), seed)
    valid = np.isfinite(run.oof_proba).all(axis=1)
    predictions = np.where(valid, np.nan_to_num(run.oof_proba).argmax(axis=1), -1)
    title = f"Image embeddings (mean of each image's tiles), {method}; {run.name} out-of-fold"
    figure = plots.embedding_map_figure(coords, result.labels, predictions, result.classes, axis_labels, title)
    plots.save_figure(figure, folder / "embedding_map.png")
    fused = (f" The embeddings are the first cache's ({result.fusion.labels[0]}); the crosses mark the fused "
             "predictions." if result.fusion is not None else "")
    return Picture(Path("embedding_map.png"), f"Image embeddings ({method})",
                   "One point per training image, coloured by its true class; ringed crosses: wrong out-of-fold "
                   "predictions." + fused, "embeddings")


def write_vote_maps(folder: Path, result: ClassificationResult, run: HeadResult, requests: list[str]) -> list[Picture]:
    """Vote maps of the selected validation images and of the requested ones, under ``vote_maps/``.

    Skipped with a warning when the original images are no longer where extraction read them.
    """
    train, test = result.train, result.test
    picks = select_images(result.labels, run.oof_proba)
    requested, unknown = resolve_requests(requests, train.image_ids, train.sample_index,
                                          test.image_ids if test is not None else [])
    if unknown:
        logger.warning("--vote-maps: no cached image matches %s; use image ids (train/img_0003), file names "
                       "(img_0003.png) or all.", ", ".join(unknown))
    known = {(p.split, p.index) for p in picks}
    picks += [p for p in requested if (p.split, p.index) not in known]
    data_dir = Path(result.cache_settings.get("data_dir", ""))
    try:
        records = {r.image_id: r for r in find_records(data_dir, slides=True)}
    except PipelineError as exc:
        logger.warning("Vote maps skipped: the original images are not where extraction read them (%s). Put them "
                       "back there to get vote maps. %s", data_dir, exc)
        return []
    tile_size = int(train.image_attrs[0]["tile_size"])
    cell_size = min(tile_size, int(train.image_attrs[0].get("stride") or tile_size))
    pictures = []
    for pick in picks:
        drawn = _vote_map(pick, result, run, records, (tile_size, cell_size))
        if drawn is None:
            continue
        vote_map, sizes = drawn
        stem = re.sub(r"[^A-Za-z0-9._-]", "_", vote_map.image_id.replace("/", "_").removeprefix("train_"))
        path = Path(VOTE_MAPS_DIR) / f"{pick.reason}_{stem}.png"
        plots.save_figure(render_vote_map(vote_map, result.classes, *sizes), folder / path)
        predicted = result.classes[int(vote_map.image_proba.argmax())]
        truth = result.classes[vote_map.label] if vote_map.label is not None else "unknown"
        caption = f"{REASONS[pick.reason]}; true {truth}, predicted {predicted} ({vote_map.image_proba.max():.2f})"
        if vote_map.attention is not None:
            caption += f"; largest attention {vote_map.attention.max():.2f}"
        pictures.append(Picture(path, vote_map.image_id, caption, "vote maps"))
    return pictures


def _pixels_changed(decoded: DecodedImage, attrs: dict) -> bool:
    """True when the feature file's pixel checksum, of whichever kind it carries, no longer matches the image."""
    if attrs.get("pixels_xxh3"):
        return decoded.pixels_xxh3 != attrs["pixels_xxh3"]
    if attrs.get("pixels_sha256"):  # a file written before pixels_xxh3
        return pixels_sha256(decoded.pixels) != attrs["pixels_sha256"]
    return False


def _vote_map(pick: Pick, result: ClassificationResult, run: HeadResult, records: dict[str, ImageRecord],
              sizes: tuple[int, int]) -> tuple[VoteMap, tuple[float, float]] | None:
    """Gather one image's pixels, mask and probabilities, and its (tile, cell) size in its coordinates' pixels.

    None (with a warning) when that cannot be done. ``sizes`` are an image's; a slide's come from its own file.
    """
    features = result.train if pick.split == "train" else result.test
    image_id, attrs = features.image_ids[pick.index], features.image_attrs[pick.index]
    rows = features.image_index == pick.index
    if pick.split == "train":
        tile_proba, image_proba, label = run.oof_tile_proba[rows], run.oof_proba[pick.index], result.labels[pick.index]
        attention = run.oof_tile_attention[rows] if run.oof_tile_attention is not None else None
        note = f"{REASONS[pick.reason]} · out-of-fold, fold {int(run.folds[pick.index])}"
    else:
        tile_proba, image_proba, label = run.test_tile_proba[rows], run.test_proba[pick.index], None
        attention = run.test_tile_attention[rows] if run.test_tile_attention is not None else None
        note = f"{REASONS[pick.reason]} · final model trained on every training image"
    if not np.isfinite(image_proba).all():
        logger.warning("No vote map for %s: it was never validated, so it has no out-of-fold votes.", image_id)
        return None
    record = records.get(image_id)
    if record is None:
        logger.warning("No vote map for %s: its image is no longer in the data folder.", image_id)
        return None
    if record.kind == "slide":
        try:
            picture = slide_picture(record, result.cache_dir, attrs, MAX_DISPLAY_SIDE)
        except PipelineError as exc:
            logger.warning("No vote map for %s: %s", image_id, exc)
            return None
        return VoteMap(image_id, picture.pixels, picture.inside, features.coords[rows], tile_proba, image_proba,
                       int(label) if label is not None else None, note, attention, picture.downsample), (
                           picture.tile_size, picture.cell_size)
    try:
        decoded = read_image(record.image_path)
    except ImageReadError as exc:
        logger.warning("No vote map for %s: %s", image_id, exc)
        return None
    if _pixels_changed(decoded, attrs):
        logger.warning("No vote map for %s: %s changed since extraction, so its tiles would not match. Run "
                       "extract.py again.", image_id, record.image_path)
        return None
    inside = None
    if record.mask_path is None:
        logger.warning("Vote map of %s drawn without its mask outline: its mask file is gone.", image_id)
    else:
        height, width = decoded.pixels.shape[:2]
        try:
            inside = read_mask(record.mask_path, (width, height)).inside
        except ImageReadError as exc:
            logger.warning("Vote map of %s drawn without its mask outline: %s", image_id, exc)
    return VoteMap(image_id, decoded.pixels, inside, features.coords[rows], tile_proba, image_proba,
                   int(label) if label is not None else None, note, attention), sizes
