import json
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import unquote

import pytest

from pipeline.classify.settings import ClassificationSettings
from pipeline.report.html_page import Picture, render_report, write_report
from pipeline.report.run import classify_and_write
from tests.conftest import write_fake_cache

LABELS = ["Luminal A"] * 8 + ["Luminal B"] * 8 + ["HER2(+)"] * 8 + ["Triple negative"] * 6


class _Links(HTMLParser):
    """Every src and href of a page, and its tags."""

    def __init__(self):
        super().__init__()
        self.targets, self.tags = [], []

    def handle_starttag(self, tag, attrs):
        self.tags.append(tag)
        self.targets += [value for name, value in attrs if name in ("src", "href")]


def _links(page):
    parser = _Links()
    parser.feed(page)
    return parser


def _run(tmp_path, **kwargs):
    cache_dir, _ = write_fake_cache(tmp_path, LABELS, n_test=3)
    values = {"features": cache_dir, "runs_root": tmp_path / "runs", "folds": 3, "head": "logreg", **kwargs}
    settings = ClassificationSettings(**values)
    return *classify_and_write(settings), settings


def test_report_shows_every_picture_and_the_metrics_and_references_only_existing_files(tmp_path):
    summary, run_dir, _ = _run(tmp_path)
    page = (run_dir / "report.html").read_text(encoding="utf-8")
    links = _links(page)
    assert links.targets, "the page links nothing"
    for target in links.targets:
        assert not target.startswith(("/", "http:", "https:", "file:")), target  # relative, offline
        assert (run_dir / unquote(target)).is_file(), target
    shown = {unquote(t) for t in links.targets}
    assert {"confusion_matrix.png", "per_class.png", "embedding_map.png", "metrics.json", "submission.csv"} <= shown
    assert "script" not in links.tags
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert f"<b>{metrics['weighted_f1']:.3f}</b>" in page
    assert f"<td>logreg</td><td>{metrics['weighted_f1']:.3f}</td>" in page
    for name in LABELS[::8]:
        assert f"<td>{name}</td>" in page


def test_missing_pictures_are_left_out_and_odd_names_are_quoted(tmp_path):
    summary, run_dir, settings = _run(tmp_path, pictures=False)
    folder = run_dir
    (folder / "vote_maps").mkdir()
    odd = Path("vote_maps") / "requested_img #3 & <b>.png"
    (folder / odd).write_bytes(b"\x89PNG\r\n\x1a\n")
    pictures = [Picture(odd, "train/img #3", "requested", "vote maps"),
                Picture(Path("vote_maps/gone.png"), "train/img_0001", "requested", "vote maps"),
                Picture(Path("embedding_map.png"), "Image embeddings", "never drawn", "embeddings")]
    page = render_report(folder, summary, settings, pictures, folder.name)
    targets = _links(page).targets
    assert "vote_maps/gone.png" not in page and "embedding_map.png" not in page and "Image embeddings" not in page
    assert "vote_maps/requested_img%20%233%20%26%20%3Cb%3E.png" in targets
    assert all((folder / unquote(t)).is_file() for t in targets)
    assert "train/img #3" in page and "<b>.png" not in page  # names are escaped, never markup
    path = write_report(folder, summary, settings, pictures, folder.name)
    assert path == folder / "report.html" and path.read_text(encoding="utf-8") == page


def test_hygiene_warnings_are_shown_first(tmp_path):
    summary, run_dir, settings = _run(tmp_path, pictures=False)
    summary.hygiene_warnings = ["hygiene flags 2 of 30 training images (6.7%): ink 2; <kept>"]
    page = render_report(run_dir, summary, settings, [], "run")
    assert '<p class="warning">hygiene flags 2 of 30 training images (6.7%): ink 2; &lt;kept&gt;</p>' in page
    assert page.index('class="warning"') < page.index("<h2>Metrics</h2>")


@pytest.mark.slow  # abmil with 2 repeats
def test_intervals_repeats_and_how_to_read_attention_maps(tmp_path):
    notes = {}
    for head in ("logreg", "abmil"):
        summary, run_dir, settings = _run(tmp_path / head, pictures=False, head=head, repeats=2)
        (run_dir / "vote_maps").mkdir()
        (run_dir / "vote_maps" / "wrong_img_0001.png").write_bytes(b"\x89PNG\r\n\x1a\n")
        pictures = [Picture(Path("vote_maps/wrong_img_0001.png"), "train/img_0001", "wrong", "vote maps")]
        page = render_report(run_dir, summary, settings, pictures, run_dir.name)
        m = summary.heads[0].metrics
        low, high = m["weighted_f1_ci95"]
        assert f"<td>{m['weighted_f1']:.3f}</td><td>[{low:.3f}, {high:.3f}]</td>" in page
        assert f"<td>{m['weighted_f1_repeats_mean']:.3f} ± {m['weighted_f1_repeats_std']:.3f}</td>" in page
        assert "duplicate groups resampled whole" in page and "run again with 2 seeds" in page
        notes[head] = page
    assert "Attention maps (abmil)" in notes["abmil"] and "bags of tiles (attention)" in notes["abmil"]
    assert "Attention maps" not in notes["logreg"] and "coloured by the class its vote went to" in notes["logreg"]
    assert "tile level, mean vote" in notes["logreg"]
