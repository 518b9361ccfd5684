import logging

import numpy as np
import pytest
from PIL import Image

from pipeline import cache
from pipeline.classify.settings import ClassificationSettings
from pipeline.cli.classify import build_parser, settings_from_args
from pipeline.cli.classify import main as classify_main
from pipeline.cli.extract import main as extract_main
from pipeline.data.images import DecodedImage, pixels_sha256, pixels_xxh3
from pipeline.data.tiling import TilingSettings
from pipeline.extract.run import run_extraction
from pipeline.extract.settings import ExtractionSettings
from pipeline.report import plots
from pipeline.report.pictures import _pixels_changed
from pipeline.report.run import classify_and_write
from tests.conftest import random_pixels, write_fake_cache, write_pair

LABELS = ["Luminal A"] * 8 + ["Luminal B"] * 8 + ["HER2(+)"] * 8 + ["Triple negative"] * 6
SCORE_PICTURES = ("confusion_matrix.png", "per_class.png", "embedding_map.png")


def _run(cache_dir, tmp_path, **kwargs):
    values = dict(features=cache_dir, runs_root=tmp_path / "runs", folds=3, head="logreg")
    values.update(kwargs)
    return classify_and_write(ClassificationSettings(**values))


def _png_size(path):
    with Image.open(path) as image:
        image.verify()
    with Image.open(path) as image:
        assert image.format == "PNG"
        return image.size


def test_every_run_leaves_pictures_and_skips_vote_maps_without_the_images(tmp_path, caplog):
    cache_dir, _ = write_fake_cache(tmp_path, LABELS)  # its data folder holds labels but no images
    with caplog.at_level(logging.WARNING, logger="pipeline.report.pictures"):
        summary, run_dir = _run(cache_dir, tmp_path)
    for name in SCORE_PICTURES:
        width, height = _png_size(run_dir / name)
        assert 400 <= width <= 9 * plots.DPI and 300 <= height <= 9 * plots.DPI, name
    assert (run_dir / "report.html").is_file() and not (run_dir / "vote_maps").exists()
    assert "Vote maps skipped: the original images are not where extraction read them" in caplog.text
    assert not (run_dir / "heads.png").exists()


def test_head_all_adds_the_comparison_and_each_heads_pictures(tmp_path, monkeypatch):
    monkeypatch.setattr("pipeline.classify.settings.HEAD_NAMES", ("logreg", "lgbm"))  # the MLP adds time, not cover
    cache_dir, _ = write_fake_cache(tmp_path, LABELS)
    summary, run_dir = _run(cache_dir, tmp_path, head="all")
    _png_size(run_dir / "heads.png")
    for name in ("logreg", "lgbm"):
        for picture in ("confusion_matrix.png", "per_class.png"):
            _png_size(run_dir / "heads" / name / picture)
    page = (run_dir / "report.html").read_text()
    assert '<img src="heads.png"' in page and all(f"<td>{name}</td>" in page for name in ("logreg", "lgbm"))


def test_no_pictures_and_the_flags(tmp_path):
    cache_dir, _ = write_fake_cache(tmp_path, LABELS)
    summary, run_dir = _run(cache_dir, tmp_path, pictures=False)
    assert not list(run_dir.glob("*.png")) and not (run_dir / "report.html").exists()
    args = build_parser().parse_args(["--vote-maps", " img_0001.png, test/img_0000,,all", "--no-pictures"])
    assert args.no_pictures and args.vote_maps == " img_0001.png, test/img_0000,,all"
    settings = settings_from_args(args)
    assert settings.vote_maps == ("img_0001.png", "test/img_0000", "all") and not settings.pictures
    defaults = build_parser().parse_args([])
    assert defaults.vote_maps is None and settings_from_args(defaults).vote_maps == ()
    assert settings_from_args(defaults).pictures


def test_a_failing_picture_is_reported_and_the_run_keeps_its_results(tmp_path, caplog, monkeypatch):
    cache_dir, _ = write_fake_cache(tmp_path, LABELS, n_test=2)

    def broken(*args, **kwargs):
        raise RuntimeError("font cache is broken")

    monkeypatch.setattr(plots, "per_class_figure", broken)
    with caplog.at_level(logging.WARNING, logger="pipeline.report.pictures"):
        summary, run_dir = _run(cache_dir, tmp_path)
    assert "Could not draw the score pictures" in caplog.text and "font cache is broken" in caplog.text
    for name in ("metrics.json", "submission.csv", "embedding_map.png", "report.html"):
        assert (run_dir / name).is_file(), name
    assert "per_class.png" not in (run_dir / "report.html").read_text()


def _extract(data, tiny_vit_dir, features, tile_size):
    assert extract_main(["--data", str(data), "--model", str(tiny_vit_dir), "--out", str(features), "--tile-size",
                         str(tile_size), "--workers", "0", "--no-progress", "-q"]) == 0
    (cache_dir,) = cache.find_caches(features)
    return cache_dir


def _distinct_data(root, n_train=12, n_test=2):
    """96x64 images whose masks (the left half and one pixel of their own) differ, so no two share a fold group."""
    rng = np.random.default_rng(0)
    rows = ["sample_index,label"]
    for split, count in (("train", n_train), ("test", n_test)):
        for i in range(count):
            inside = np.zeros((64, 96), dtype=bool)
            inside[:, :48] = True
            inside[63, 95 - i] = True
            path = write_pair(root / f"{split}_data", f"{i:04d}", random_pixels(rng, 64, 96), inside)
            rows.append(f"{path.name},{'ab'[i % 2]}") if split == "train" else None
    (root / "train_labels.csv").write_text("\n".join(rows) + "\n")
    return root


def test_vote_maps_from_the_original_images(tmp_path, tiny_vit_dir, tiny_model, caplog):
    data = _distinct_data(tmp_path / "data")
    settings = ExtractionSettings(data_dir=data, model=str(tiny_vit_dir), out_dir=tmp_path / "features",
                                  tiling=TilingSettings(tile_size=32), workers=0, progress=False)
    cache_dir = run_extraction(settings, tiny_model).cache_dir
    (data / "train_data" / "mask_0004.png").unlink()  # drawn without its outline
    changed = data / "train_data" / "img_0005.png"  # re-saved with other pixels: its tiles no longer match
    Image.fromarray(255 - np.asarray(Image.open(changed))).save(changed)
    requests = ("test/img_0001", "img_0003.png", "img_0004", "img_0005", "no_such_image")
    with caplog.at_level(logging.WARNING, logger="pipeline.report.pictures"):
        summary, run_dir = _run(cache_dir, tmp_path, vote_maps=requests)
    maps = sorted(p.name for p in (run_dir / "vote_maps").iterdir())
    assert "requested_test_img_0001.png" in maps
    stems = {name.split("_", 1)[1] for name in maps}
    assert {"img_0003.png", "img_0004.png", "test_img_0001.png"} <= stems and "img_0005.png" not in stems
    reasons = {name.split("_", 1)[0] for name in maps}
    assert reasons <= {"wrong", "unsure", "correct", "requested"} and "unsure" in reasons
    assert len(maps) >= 6  # 2 unsure, 3 or more wrong or correct among the other 10, the requested test image
    assert "no cached image matches no_such_image" in caplog.text
    assert "No vote map for train/img_0005" in caplog.text and "changed since extraction" in caplog.text
    assert "Vote map of train/img_0004 drawn without its mask outline" in caplog.text
    for name in maps:
        width, height = _png_size(run_dir / "vote_maps" / name)
        assert width == round(8.0 * plots.DPI) and 300 < height < 9 * plots.DPI
    page = (run_dir / "report.html").read_text()
    assert all(f"vote_maps/{name}" in page for name in maps)


@pytest.mark.slow
def test_end_to_end_on_glas15_fills_vote_maps(glas15, tmp_path, tiny_vit_dir, capsys):
    features = tmp_path / "features"
    _extract(glas15, tiny_vit_dir, features, 64)
    run = tmp_path / "run"
    assert classify_main(["--features", str(features), "--labels", str(glas15 / "train_labels_binary.csv"),
                          "--folds", "3", "--head", "logreg", "--out", str(run), "--vote-maps", "test/img_0002",
                          "-q"]) == 0
    maps = sorted((run / "vote_maps").glob("*.png"))
    # 3 wrong + 2 unsure + 2 correct per class at most, at least the surest correct ones, and the requested one
    assert 5 <= len(maps) <= 10 and (run / "vote_maps" / "requested_test_img_0002.png") in maps
    for path in [*maps, *(run / name for name in SCORE_PICTURES)]:
        width, height = _png_size(path)
        assert 400 <= width <= 9 * plots.DPI and 300 <= height <= 9 * plots.DPI, path.name
    page = (run / "report.html").read_text()
    assert all(f"vote_maps/{path.name}" in page for path in maps)


def test_a_fused_run_draws_the_first_caches_vote_maps_and_says_so(tmp_path, tiny_vit_dir, tiny_model):
    data = _distinct_data(tmp_path / "data")
    caches = []
    for tile_size in (32, 64):  # 64 px tiles: one tile per image, the 32 px cache has four
        settings = ExtractionSettings(data_dir=data, model=str(tiny_vit_dir), out_dir=tmp_path / "features",
                                      tiling=TilingSettings(tile_size=tile_size), workers=0, progress=False)
        caches.append(run_extraction(settings, tiny_model).cache_dir)
    summary, run_dir = _run(tuple(caches), tmp_path, vote_maps=("test/img_0001",))
    maps = sorted((run_dir / "vote_maps").glob("*.png"))
    assert maps and (run_dir / "vote_maps" / "requested_test_img_0001.png") in maps
    page = (run_dir / "report.html").read_text()
    assert f"These maps show logreg on the first cache alone ({caches[0].name})" in page
    assert all(f"vote_maps/{path.name}" in page for path in maps)
    assert "<h3>Caches alone and fused</h3>" in page and f"<td>{caches[1].name}</td>" in page
    assert f"The embeddings are the first cache&#x27;s ({caches[0].name})" in page


def test_an_image_changed_since_extraction_is_told_by_either_kind_of_pixel_checksum(rng):
    pixels = rng.integers(0, 256, size=(6, 5, 3), dtype=np.uint8)
    decoded = DecodedImage(pixels, "file", pixels_xxh3(pixels))
    other = 255 - pixels
    assert not _pixels_changed(decoded, {"pixels_xxh3": pixels_xxh3(pixels)})
    assert _pixels_changed(decoded, {"pixels_xxh3": pixels_xxh3(other)})
    assert not _pixels_changed(decoded, {"pixels_sha256": pixels_sha256(pixels)})  # a file from before xxh3
    assert _pixels_changed(decoded, {"pixels_sha256": pixels_sha256(other)})
    assert not _pixels_changed(decoded, {})  # no checksum at all: nothing to compare
