"""``report.html``: one self-contained page with the run's metrics tables and every picture, readable offline.

The page has no script and loads nothing from the network; pictures and files are linked by paths relative to the
run folder, and only files that exist when the page is written are referenced.
"""

from __future__ import annotations

import html
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

from pipeline.classify.confidence import ci_text
from pipeline.classify.results import ClassificationResult, HeadResult
from pipeline.classify.settings import ClassificationSettings
from pipeline.report.headline import submission_text

REPORT_FILE = "report.html"
SECTIONS = {
    "scores": "Scores of the best head",
    "heads": "Heads compared",
    "embeddings": "Image embeddings",
    "vote maps": "Vote maps: where in the tissue the votes went",
}
LINKED_FILES = ("metrics.json", "oof_predictions.csv", "submission.csv", "config.json")
STYLE = """
body { font-family: system-ui, sans-serif; margin: 1.5em auto; max-width: 1240px; color: #222; padding: 0 1em; }
h1 { font-size: 1.5em; } h2 { font-size: 1.2em; margin-top: 1.6em; border-bottom: 1px solid #ccc; }
table { border-collapse: collapse; margin: 0.6em 0; font-size: 0.92em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.7em; text-align: right; }
th:first-child, td:first-child { text-align: left; }
tr.best td { font-weight: bold; background: #eef7ee; }
figure { margin: 0.8em 0; } figure img { max-width: 100%; border: 1px solid #ddd; }
figcaption { font-size: 0.9em; color: #555; }
.gallery { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 1em; }
.muted { color: #666; font-size: 0.9em; }
.warning { background: #fff4e0; border-left: 4px solid #e69500; padding: 0.4em 0.8em; }
"""


@dataclass(frozen=True)
class Picture:
    """A picture of the run folder as the report shows it.

    Attributes:
        path: Relative to the run folder, e.g. ``vote_maps/wrong_img_0003.png``.
        title: Short heading.
        caption: How to read it.
        section: A key of :data:`SECTIONS`.
    """

    path: Path
    title: str
    caption: str
    section: str


def write_report(
    folder: Path, result: ClassificationResult, settings: ClassificationSettings, pictures: list[Picture], title: str
) -> Path:
    """Write ``report.html`` into the run folder and return its path; ``title`` is the run folder's final name."""
    path = Path(folder) / REPORT_FILE
    path.write_text(render_report(Path(folder), result, settings, pictures, title), encoding="utf-8")
    return path


def _headline(result: ClassificationResult, best: HeadResult, settings: ClassificationSettings) -> str:
    """The page's first line: a fused run says the submission is the fused result and how each member scored."""
    esc = html.escape
    scope = (f"on the pooled out-of-fold predictions of {result.train.n_images} training images "
             f"({len(result.classes)} classes, {settings.folds}-fold cross-validation over images)")
    if result.fusion is not None:
        return f"<p><b>{esc(submission_text(result, best))}</b> Scores {scope}.</p>"
    return (f"<p>Best head <b>{esc(best.name)}</b>: weighted F1 <b>{best.metrics['weighted_f1']:.3f}</b> {scope}; "
            "the submission uses it.</p>")


def render_report(
    folder: Path, result: ClassificationResult, settings: ClassificationSettings, pictures: list[Picture], title: str
) -> str:
    """The page's HTML; pictures and files missing from ``folder`` are left out."""
    best = result.best
    esc = html.escape
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f"<title>{esc(title)}: weighted F1 {best.metrics['weighted_f1']:.3f}</title>",
        f"<style>{STYLE}</style></head><body>",
        f"<h1>{esc(title)}</h1>",
        _headline(result, best, settings),
        f'<p class="muted">{esc(_caches_text(result))} · {esc(best.classifier.scheme.describe())} · seed '
        f"{settings.seed} · class weights {'on' if settings.class_weight else 'off'}"
        f" · {result.test.n_images if result.test is not None else 0} test images</p>",
        *[f'<p class="warning">{esc(line)}</p>' for line in result.hygiene_warnings],
        "<h2>Metrics</h2>",
        _heads_table(result),
        _fusion_table(result),
        _per_class_table(result),
    ]
    present = [p for p in pictures if (folder / p.path).is_file()]
    for section, heading in SECTIONS.items():
        shown = [p for p in present if p.section == section]
        if not shown:
            continue
        parts.append(f"<h2>{esc(heading)}</h2>")
        if section == "vote maps":
            parts.append(f'<p class="muted">{esc(_vote_maps_note(result))}</p>')
            parts.append('<div class="gallery">' + "".join(_figure(p) for p in shown) + "</div>")
        else:
            parts.extend(_figure(p) for p in shown)
    links = [f'<a href="{quote(name)}">{esc(name)}</a>' for name in LINKED_FILES if (folder / name).is_file()]
    if links:
        parts.append(f"<h2>Files</h2><p>{' · '.join(links)}</p>")
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def _caches_text(result: ClassificationResult) -> str:
    """``Cache NAME``, or for a fused run ``late fusion of caches A + B``."""
    if result.fusion is None:
        return f"Cache {result.cache_dir.name}"
    return f"{result.fusion.mode} fusion of caches {' + '.join(result.fusion.labels)}"


def _vote_maps_note(result: ClassificationResult) -> str:
    """How to read the vote maps (of the first cache's head alone in a fused run, whose caches' tiles differ)."""
    best = result.best
    note = ""
    if result.fusion is not None:
        best = best.members[0]
        note = (f"These maps show {best.name} on the first cache alone ({result.fusion.labels[0]}): the caches of a "
                "fused run cut other tiles, so the fused prediction has no tiles of its own; the title's prediction "
                "is that cache's. ")
    return note + _how_to_read(best)


def _how_to_read(best: HeadResult) -> str:
    """How to read the vote maps of one head (attention maps for a bag head such as abmil)."""
    if best.oof_tile_attention is None:
        return ("Each tile is coloured by the class its vote went to and is more opaque the more confident it is; "
                "the title gives the true and the predicted class.")
    return (f"Attention maps ({best.name}): the head weighs every tile of an image and classifies the weighted "
            "mixture, so an image's prediction comes mostly from its most opaque tiles. Each tile is coloured by "
            "its own class (the head's classifier applied to that tile alone) and its opacity shows its attention "
            "weight, relative to the image's highest; a faint tile barely counted, whatever its colour. The title "
            "gives the true and the predicted class and the largest weight. The weights sum to 1 over an image, "
            "so with n tiles 1/n is an even spread; one tile far above that is what decided the image.")


def _figure(picture: Picture) -> str:
    source = quote(picture.path.as_posix())
    title = html.escape(picture.title)
    return (f'<figure><a href="{source}"><img src="{source}" alt="{title}" loading="lazy"></a>'
            f"<figcaption><b>{title}</b>: {html.escape(picture.caption)}</figcaption></figure>")


def _heads_table(result: ClassificationResult) -> str:
    best = result.best.name
    repeats = any(run.metrics.get("repeats", 1) > 1 for run in result.heads)
    rows = ["<table><tr><th>head</th><th>weighted F1</th><th>95% CI</th><th>folds (mean ± sd)</th>"
            + ("<th>repeats (mean ± sd)</th>" if repeats else "")
            + "<th>macro F1</th><th>95% CI</th><th>accuracy</th><th>time</th></tr>"]
    for run in result.heads:
        m = run.metrics
        repeated = (f"<td>{m['weighted_f1_repeats_mean']:.3f} ± {m['weighted_f1_repeats_std']:.3f}</td>"
                    if "weighted_f1_repeats_mean" in m else "<td>-</td>") if repeats else ""
        rows.append(
            f'<tr{" class=best" if run.name == best else ""}><td>{html.escape(run.name)}</td>'
            f"<td>{m['weighted_f1']:.3f}</td><td>{ci_text(m, 'weighted_f1')}</td>"
            f"<td>{m['weighted_f1_folds_mean']:.3f} ± {m['weighted_f1_folds_std']:.3f}</td>{repeated}"
            f"<td>{m['macro_f1']:.3f}</td><td>{ci_text(m, 'macro_f1')}</td><td>{m['accuracy']:.3f}</td>"
            f"<td>{run.seconds:.1f} s</td></tr>"
        )
    note = ('<p class="muted">95% CI: bootstrap over the training images of the pooled out-of-fold predictions '
            "(1,000 resamples; duplicate groups resampled whole).")
    if repeats:
        note += (f" Repeats: the whole cross-validation run again with {result.heads[0].metrics['repeats']} seeds "
                 "(new folds, new head seeds); mean ± sd of the pooled weighted F1.")
    return "".join(rows) + "</table>" + note + "</p>"


def _fusion_table(result: ClassificationResult) -> str:
    """A fused run: per head, the head on each cache alone and fused, scored on the same folds."""
    fusion = result.fusion
    if fusion is None:
        return ""
    rows = ["<table><tr><th>head</th><th>cache</th><th>weighted F1</th><th>95% CI</th><th>macro F1</th>"
            "<th>95% CI</th><th>accuracy</th></tr>"]
    for run in result.heads:
        for label, member in [*zip(fusion.labels, run.members, strict=True), (f"fused ({fusion.mode})", run)]:
            m = member.metrics
            rows.append(f'<tr{" class=best" if member is run else ""}><td>{html.escape(run.name)}</td>'
                        f"<td>{html.escape(label)}</td><td>{m['weighted_f1']:.3f}</td>"
                        f"<td>{ci_text(m, 'weighted_f1')}</td><td>{m['macro_f1']:.3f}</td>"
                        f"<td>{ci_text(m, 'macro_f1')}</td><td>{m['accuracy']:.3f}</td></tr>")
    how = ("the mean of the caches' image probabilities" if fusion.mode == "late"
           else "one head on each image's pooled features of every cache side by side")
    return ("<h3>Caches alone and fused</h3>" + "".join(rows) + "</table>"
            f'<p class="muted">Fusion ({fusion.mode}): {how}. Every row uses the same folds; the table above and the '
            "files score the fused predictions.</p>")


def _per_class_table(result: ClassificationResult) -> str:
    per_class = result.best.metrics["per_class"]
    rows = [f"<table><tr><th>class ({html.escape(result.best.name)})</th><th>precision</th><th>recall</th>"
            "<th>F1</th><th>support</th></tr>"]
    for name in result.classes:
        s = per_class[name]
        rows.append(f"<tr><td>{html.escape(name)}</td><td>{s['precision']:.3f}</td><td>{s['recall']:.3f}</td>"
                    f"<td>{s['f1']:.3f}</td><td>{s['support']}</td></tr>")
    return "".join(rows) + "</table>"
