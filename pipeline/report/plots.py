"""Pictures of a run's scores: confusion matrix, per-class scores, heads compared, a 2-D map of image embeddings.

Figures are built with matplotlib's object API on an Agg canvas: no pyplot, so no display, no global figure
registry and nothing to close. Sizes suit a laptop screen (about 6-9 inches wide at :data:`DPI`).
"""

from __future__ import annotations

import importlib.util
import logging
import textwrap
from pathlib import Path

import numpy as np
from matplotlib import colormaps
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_rgb
from matplotlib.figure import Figure
from matplotlib.lines import Line2D

logger = logging.getLogger(__name__)

DPI = 110
LABEL_WIDTH = 12  # characters per line of a class name on an axis; longer names wrap at spaces


# tab10 reordered so that the first classes avoid red, purple and pink, which vanish on H&E's pink and purple
CLASS_PALETTE = ("#1f77b4", "#ff7f0e", "#2ca02c", "#e6b800", "#17becf", "#8c564b", "#7f7f7f", "#d62728", "#9467bd",
                 "#e377c2")


def class_colors(n_classes: int) -> np.ndarray:
    """(n_classes, 3) float RGB in [0, 1], one distinct colour per class, the same in every picture."""
    if n_classes <= len(CLASS_PALETTE):
        return np.asarray([to_rgb(color) for color in CLASS_PALETTE[:n_classes]], dtype=np.float64)
    if n_classes <= 20:
        return np.asarray(colormaps["tab20"].colors[:n_classes], dtype=np.float64)
    return colormaps["hsv"](np.linspace(0, 1, n_classes, endpoint=False))[:, :3]


def wrap_label(name: str, width: int = LABEL_WIDTH) -> str:
    """A class name broken over lines of at most ``width`` characters (a single long word stays whole)."""
    return "\n".join(textwrap.wrap(name, width, break_long_words=False)) or name


def new_figure(width: float, height: float, layout: str | None = "constrained") -> Figure:
    """A figure of ``width`` x ``height`` inches on its own Agg canvas (constrained layout unless told otherwise)."""
    figure = Figure(figsize=(width, height), dpi=DPI, layout=layout)
    FigureCanvasAgg(figure)
    return figure


def save_figure(figure: Figure, path: Path) -> Path:
    """Write a figure as PNG at :data:`DPI` and release its artists."""
    path.parent.mkdir(parents=True, exist_ok=True)
    # the fastest zlib level: several times quicker than the default on photos, files about 10% larger
    figure.savefig(path, dpi=DPI, facecolor="white", pil_kwargs={"compress_level": 1})
    figure.clear()
    return path


def confusion_matrix_figure(matrix: np.ndarray, classes: list[str], title: str) -> Figure:
    """Counts and row-normalised rates; rows are true classes, columns predicted ones.

    Args:
        matrix: (C, C) int counts.
        classes: C class names.
        title: The figure's title.
    """
    matrix = np.asarray(matrix, dtype=np.int64)
    n = len(classes)
    rates = matrix / np.maximum(matrix.sum(axis=1, keepdims=True), 1)
    side = min(7.0, 3.5 + 0.9 * n)
    figure = new_figure(side + 2.0, side)
    ax = figure.add_subplot()
    image = ax.imshow(rates, cmap="Blues", vmin=0.0, vmax=1.0)
    fontsize = 11 if n <= 6 else 8 if n <= 12 else 6
    for row in range(n):
        for col in range(n):
            color = "white" if rates[row, col] > 0.55 else "black"
            ax.text(col, row, f"{matrix[row, col]}\n{rates[row, col]:.0%}", ha="center", va="center",
                    fontsize=fontsize, color=color)
    _class_ticks(ax, classes, upright=n <= 5)
    ax.set_yticks(range(n), [wrap_label(c) for c in classes] if n <= 5 else classes)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title(title)
    figure.colorbar(image, ax=ax, shrink=0.8, label="share of the true class (row-normalised)")
    return figure


def _class_ticks(ax: object, classes: list[str], upright: bool, notes: list[str] | None = None) -> None:
    """Class names under the x axis: wrapped and upright when few, on one line at 45 degrees when many."""
    pairs = list(zip(classes, notes or [""] * len(classes), strict=True))
    if upright:
        labels = [f"{wrap_label(c)}\n({note})" if note else wrap_label(c) for c, note in pairs]
        ax.set_xticks(range(len(classes)), labels)
    else:
        labels = [f"{c} ({note})" if note else c for c, note in pairs]
        ax.set_xticks(range(len(classes)), labels, rotation=45, ha="right", rotation_mode="anchor")


def per_class_figure(per_class: dict[str, dict], classes: list[str], weighted_f1: float, title: str) -> Figure:
    """Precision, recall and F1 of each class as grouped bars; support under each class name.

    Args:
        per_class: ``{class: {"precision", "recall", "f1", "support"}}`` as in ``metrics.json``.
        classes: Class names in display order.
        weighted_f1: The headline score, drawn as a dashed line and given in the title.
        title: The first part of the title.
    """
    n = len(classes)
    slanted = 0.0 if n <= 6 else min(2.5, 0.06 * max(len(c) for c in classes))  # room for names at 45 degrees
    figure = new_figure(min(9.0, 4.0 + 1.1 * n), 4.6 + slanted)
    ax = figure.add_subplot()
    names, width = ("precision", "recall", "f1"), 0.26
    colors = ("#4c72b0", "#dd8452", "#55a868")
    for k, (name, color) in enumerate(zip(names, colors, strict=True)):
        values = [per_class[c][name] for c in classes]
        bars = ax.bar(np.arange(n) + (k - 1) * width, values, width, label=name.replace("f1", "F1"), color=color)
        if n <= 6:  # opaque label boxes above the dashed line: it passes behind the values, never through them
            ax.bar_label(bars, fmt="%.2f", fontsize=7, padding=1, zorder=4,
                         bbox={"boxstyle": "square,pad=0.1", "facecolor": "white", "edgecolor": "none", "alpha": 1.0})
    ax.axhline(weighted_f1, color="black", linestyle="--", linewidth=1, label=f"weighted F1 {weighted_f1:.3f}",
               zorder=0.5)  # behind the bars (zorder 1) and the value labels
    _class_ticks(ax, classes, upright=n <= 6, notes=[f"n = {per_class[c]['support']}" for c in classes])
    ax.set_ylim(0, 1.12)
    ax.set_yticks(np.linspace(0, 1, 6))
    ax.set_ylabel("score")
    ax.set_xlabel("true class (support: images)")
    ax.set_title(f"{title}\nweighted F1 {weighted_f1:.3f}")
    ax.legend(ncol=4, loc="upper center", fontsize=8, frameon=False)
    return figure


def heads_figure(names: list[str], fold_scores: list[list[float]], pooled: list[float], title: str) -> Figure:
    """The heads side by side: mean weighted F1 over folds with its spread, each fold, and the pooled score.

    Args:
        names: Head names.
        fold_scores: Per head, the weighted F1 of each fold.
        pooled: Per head, the weighted F1 of the pooled out-of-fold predictions.
        title: The figure's title.
    """
    figure = new_figure(min(9.0, 5.0 + 1.2 * len(names)), 4.4)
    ax = figure.add_subplot()
    best = int(np.argmax(pooled))
    for i, scores in enumerate(fold_scores):
        scores = np.asarray(scores, dtype=np.float64)
        color = "#55a868" if i == best else "#8c8c8c"
        ax.bar(i, scores.mean(), 0.6, yerr=scores.std(), capsize=6, color=color, alpha=0.8)
        jitter = np.linspace(-0.12, 0.12, len(scores)) if len(scores) > 1 else np.zeros(1)
        ax.scatter(i + jitter, scores, color="black", s=14, zorder=3)
        ax.scatter(i, pooled[i], marker="D", color="#c44e52", s=40, zorder=4)
    # The pooled score goes under the head's name: a label inside the plot collides with some head's fold dots.
    ax.set_xticks(range(len(names)), [f"{n}{' (best)' if i == best else ''}\npooled {p:.3f}"
                                      for i, (n, p) in enumerate(zip(names, pooled, strict=True))])
    ax.set_ylim(0, 1.05)
    ax.set_ylabel("weighted F1")
    ax.set_xlabel("head")
    ax.set_title(title)
    handles = [
        Line2D([], [], color="#8c8c8c", linewidth=8, label="mean of folds ± sd"),
        Line2D([], [], color="black", marker="o", linestyle="", markersize=4, label="each fold"),
        Line2D([], [], color="#c44e52", marker="D", linestyle="", markersize=6, label="pooled out-of-fold"),
    ]
    ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0), fontsize=8, frameon=False)
    return figure


def project_2d(embeddings: np.ndarray, seed: int = 0) -> tuple[np.ndarray, str, tuple[str, str]]:
    """2-D coordinates of image embeddings: UMAP when the ``umap`` package is installed, PCA otherwise.

    Args:
        embeddings: (n_images, D) float image embeddings.
        seed: UMAP's random state.

    Returns:
        (n_images, 2) float coordinates, the method's name and the two axis labels.
    """
    embeddings = np.asarray(embeddings, dtype=np.float64)
    n = len(embeddings)
    if n >= 10 and importlib.util.find_spec("umap") is not None:
        import umap  # optional: only used when the user installed it

        reducer = umap.UMAP(n_components=2, n_neighbors=min(15, n - 1), random_state=seed)
        return np.asarray(reducer.fit_transform(embeddings)), "UMAP", ("UMAP 1", "UMAP 2")
    centred = embeddings - embeddings.mean(axis=0)
    _, singular, components = np.linalg.svd(centred, full_matrices=False)
    coords = np.zeros((n, 2))
    k = min(2, len(singular))
    coords[:, :k] = centred @ components[:k].T
    variance = singular**2 / max(float((singular**2).sum()), 1e-12)
    shares = [variance[i] if i < k else 0.0 for i in range(2)]
    return coords, "PCA", (f"PC 1 ({shares[0]:.0%} of variance)", f"PC 2 ({shares[1]:.0%} of variance)")


def embedding_map_figure(
    coords: np.ndarray, labels: np.ndarray, predictions: np.ndarray, classes: list[str], axis_labels: tuple[str, str],
    title: str,
) -> Figure:
    """Images as points coloured by true class; wrong predictions ringed in black with a cross.

    Args:
        coords: (n_images, 2) projected coordinates.
        labels: (n_images,) int true class.
        predictions: (n_images,) int predicted class, -1 where there is none.
        classes: Class names.
        axis_labels: Labels of the x and y axes.
        title: The figure's title.
    """
    figure = new_figure(7.5, 5.6)
    ax = figure.add_subplot()
    colors = class_colors(len(classes))
    size = 60 if len(coords) <= 100 else 25 if len(coords) <= 1000 else 8
    for c, name in enumerate(classes):
        rows = labels == c
        ax.scatter(coords[rows, 0], coords[rows, 1], s=size, color=colors[c], alpha=0.85,
                   label=f"{name} ({int(rows.sum())})", edgecolors="white", linewidths=0.5)
    wrong = (predictions >= 0) & (predictions != labels)
    ax.scatter(coords[wrong, 0], coords[wrong, 1], s=size * 2.2, facecolors="none", edgecolors="black",
               linewidths=1.2, label=f"wrong prediction ({int(wrong.sum())})")
    ax.scatter(coords[wrong, 0], coords[wrong, 1], s=size * 0.6, marker="x", color="black", linewidths=1)
    ax.set_xlabel(axis_labels[0])
    ax.set_ylabel(axis_labels[1])
    ax.set_title(title)
    ax.legend(title="true class (images)", loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8,
              title_fontsize=8, frameon=False)
    return figure
