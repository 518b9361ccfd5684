import numpy as np
import pytest
from PIL import Image

from pipeline.report import plots

SUBTYPES = ["HER2(+)", "Luminal A", "Luminal B", "Triple negative"]
MANY = [f"class with a long name {i}" for i in range(12)]


def _fits_and_nothing_overlaps(figure):
    """Every artist lies inside the figure and no two tick labels of an axis overlap.

    Upright labels must have disjoint boxes; rotated ones (one line each) must be further apart, across their
    slant, than a line of text is high.
    """
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    box = figure.get_tightbbox(renderer)
    width, height = figure.get_size_inches()
    assert box.x0 >= -0.01 and box.y0 >= -0.01 and box.x1 <= width + 0.01 and box.y1 <= height + 0.01
    for ax in figure.axes:
        for labels in (ax.get_xticklabels(), ax.get_yticklabels()):
            labels = [label for label in labels if label.get_text()]
            boxes = [label.get_window_extent(renderer) for label in labels]
            for label, a, b in zip(labels, boxes, boxes[1:], strict=False):
                angle = np.radians(label.get_rotation())
                if angle == 0:
                    assert not a.overlaps(b), (label.get_text(), a, b)
                else:
                    assert "\n" not in label.get_text()
                    line = label.get_fontsize() * 1.2 * figure.dpi / 72
                    assert abs(b.x1 - a.x1) * np.sin(angle) > line, label.get_text()


def _png(figure, path):
    plots.save_figure(figure, path)
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        return image.format, image.size


def test_class_colours_are_distinct_and_stable():
    for n in (2, 4, 12, 25):
        colors = plots.class_colors(n)
        assert colors.shape == (n, 3) and len(np.unique(colors.round(3), axis=0)) == n
    np.testing.assert_array_equal(plots.class_colors(4), plots.class_colors(6)[:4])


def test_wrap_label_breaks_long_names_at_spaces():
    assert plots.wrap_label("Triple negative") == "Triple\nnegative"
    assert plots.wrap_label("HER2(+)") == "HER2(+)"
    assert plots.wrap_label("adenocarcinomatous") == "adenocarcinomatous"  # one long word stays whole


@pytest.mark.parametrize("classes", [["benign", "malignant"], SUBTYPES, MANY])
def test_confusion_matrix_shows_counts_and_row_rates(tmp_path, classes):
    n = len(classes)
    matrix = np.arange(n * n).reshape(n, n)
    matrix[0] = 0  # a class without images must not divide by zero
    figure = plots.confusion_matrix_figure(matrix, classes, "Confusion matrix")
    texts = [t.get_text() for t in figure.axes[0].texts]
    assert len(texts) == n * n and texts[0] == "0\n0%"
    row = matrix[1]
    assert texts[n + 1] == f"{row[1]}\n{row[1] / row.sum():.0%}"
    names = [t.get_text().replace("\n", " ") for t in figure.axes[0].get_yticklabels()]
    assert names == classes
    _fits_and_nothing_overlaps(figure)
    fmt, (width, height) = _png(figure, tmp_path / "cm.png")
    assert fmt == "PNG" and 500 <= width <= 9 * plots.DPI and 400 <= height <= 9 * plots.DPI


@pytest.mark.parametrize("classes", [SUBTYPES, MANY])
def test_per_class_bars_hold_the_scores_and_the_title_the_weighted_f1(tmp_path, classes):
    rng = np.random.default_rng(0)
    per_class = {c: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
                 for c, (p, r, f), s in zip(classes, rng.random((len(classes), 3)), rng.integers(1, 50, len(classes)),
                                            strict=True)}
    figure = plots.per_class_figure(per_class, classes, 0.6789, "Per-class scores")
    ax = figure.axes[0]
    assert "weighted F1 0.679" in ax.get_title()
    heights = [bar.get_height() for bar in ax.patches]
    expected = [per_class[c][name] for name in ("precision", "recall", "f1") for c in classes]
    np.testing.assert_allclose(heights, expected)
    assert f"(n = {per_class[classes[0]]['support']})" in ax.get_xticklabels()[0].get_text()
    _fits_and_nothing_overlaps(figure)
    fmt, (width, _) = _png(figure, tmp_path / "per_class.png")
    assert fmt == "PNG" and 400 <= width <= 9 * plots.DPI


def test_heads_side_by_side_with_folds_and_pooled_score(tmp_path):
    figure = plots.heads_figure(["logreg", "lgbm", "mlp"], [[0.7, 0.8, 0.9], [0.5, 0.6, 0.7], [0.6, 0.9, 0.3]],
                                [0.81, 0.6, 0.55], "Heads compared")
    ax = figure.axes[0]
    np.testing.assert_allclose([bar.get_height() for bar in ax.patches], [0.8, 0.6, 0.6])
    assert [t.get_text() for t in ax.get_xticklabels()] == ["logreg (best)\npooled 0.810", "lgbm\npooled 0.600",
                                                            "mlp\npooled 0.550"]
    _fits_and_nothing_overlaps(figure)
    assert not ax.texts  # nothing written inside the plot, where fold dots are
    assert _png(figure, tmp_path / "heads.png")[0] == "PNG"


def test_pca_projection_finds_the_main_direction():
    rng = np.random.default_rng(0)
    embeddings = np.outer(np.linspace(-5, 5, 40), np.ones(8)) + rng.normal(scale=0.1, size=(40, 8))
    coords, method, labels = plots.project_2d(embeddings)
    if method == "PCA":
        assert abs(np.corrcoef(coords[:, 0], np.linspace(-5, 5, 40))[0, 1]) > 0.99
        assert labels[0].startswith("PC 1 (") and "of variance" in labels[1]
    one_dim, method, _ = plots.project_2d(np.arange(5.0)[:, None])
    assert method == "PCA" and one_dim.shape == (5, 2) and np.all(one_dim[:, 1] == 0)


def test_embedding_map_marks_wrong_predictions(tmp_path):
    rng = np.random.default_rng(1)
    labels = np.repeat(np.arange(4), 10)
    predictions = labels.copy()
    predictions[[3, 17, 25]] = (labels[[3, 17, 25]] + 1) % 4
    predictions[5] = -1  # never validated: not marked
    coords = rng.normal(size=(40, 2))
    figure = plots.embedding_map_figure(coords, labels, predictions, SUBTYPES, ("PC 1", "PC 2"), "Embeddings")
    ax = figure.axes[0]
    rings = ax.collections[len(SUBTYPES)]
    np.testing.assert_allclose(rings.get_offsets(), coords[[3, 17, 25]])
    legend = [t.get_text() for t in ax.get_legend().get_texts()]
    assert legend == [f"{c} (10)" for c in SUBTYPES] + ["wrong prediction (3)"]
    _fits_and_nothing_overlaps(figure)
    assert _png(figure, tmp_path / "embedding_map.png")[0] == "PNG"


def test_the_weighted_f1_line_passes_behind_the_bars_and_the_value_labels():
    per_class = {c: {"precision": 0.66 + 0.01 * i, "recall": 0.7, "f1": 0.65, "support": 10}
                 for i, c in enumerate(SUBTYPES)}
    figure = plots.per_class_figure(per_class, SUBTYPES, 0.6789, "Per-class scores")
    ax = figure.axes[0]
    (line,) = [line for line in ax.lines if line.get_linestyle() == "--"]
    figure.canvas.draw()
    renderer = figure.canvas.get_renderer()
    y = ax.transData.transform((0, 0.6789))[1]
    crossed = [text for text in ax.texts if text.get_window_extent(renderer).y0 - 2 <= y
               <= text.get_window_extent(renderer).y1 + 2]
    assert crossed  # value labels at the line's height: the case that matters
    for text in crossed:
        box = text.get_bbox_patch()
        assert text.get_zorder() > line.get_zorder() and box.get_facecolor()[3] == 1.0 and box.get_alpha() in (None, 1)
    assert all(bar.get_zorder() > line.get_zorder() for bar in ax.patches)
