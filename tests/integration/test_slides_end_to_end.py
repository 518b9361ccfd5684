"""extract.py on a folder of made slides and an image without a mask: tissue found, tiles of a physical size,
TRIDENT's attributes, features equal to OpenSlide's own pixels, bad slides reported, resume, classify unchanged."""

import contextlib
import csv
import hashlib
import json
import logging
import re
import shutil

import h5py
import numpy as np
import pytest
import torch
from PIL import Image

from benchmarks import slide_maker
from pipeline import cache
from pipeline.cli.classify import main as classify_main
from pipeline.data.records import find_records
from pipeline.data.slides import Slide
from pipeline.data.tiling import TilingSettings
from pipeline.embed.embedder import Embedder
from pipeline.errors import CacheError, ImageReadError, SlideReadError
from pipeline.extract import decoding
from pipeline.extract.run import run_extraction
from pipeline.extract.settings import ExtractionSettings
from pipeline.extract.sharding import pixel_counts
from pipeline.extract.verify import verify_cache
from tests.conftest import TINY_SIZE

openslide = pytest.importorskip("openslide")

TARGET_MPP = 3.0  # 32-px tiles of 96 um: 192 level-0 px at 20x (read at the 1/4 level, 48 px, resized), 384 at 40x



@pytest.fixture(scope="module")
def slide_data(tmp_path_factory, patches):
    """train_data/: a 20x and a 40x Aperio slide of the same tissue (green and black pen), a generic TIFF with
    resolution tags in cm, a generic TIFF without MPP and a PNG without a mask (tissue on glass)."""
    root = tmp_path_factory.mktemp("slides") / "data"
    folder = root / "train_data"
    folder.mkdir(parents=True)
    at20 = slide_maker.default_layout(4096, 4096, patches, pens=("green", "black"))
    layouts = {"a20.svs": at20, "a40.svs": slide_maker.doubled(at20), "g20.tif": at20}
    slide_maker.write_slide(folder / "a20.svs", at20, "aperio", mpp=0.5, app_mag=20)
    slide_maker.write_slide(folder / "a40.svs", layouts["a40.svs"], "aperio", mpp=0.25, app_mag=40)
    slide_maker.write_slide(folder / "g20.tif", at20, "generic", mpp=0.5, unit="cm")
    slide_maker.write_slide(folder / "nompp.tif", slide_maker.default_layout(1024, 1024, patches), "generic",
                            unit="none")
    plain = slide_maker.default_layout(512, 512, patches)
    Image.fromarray(plain.render(0, 0, 512, 512, 1)).save(folder / "img_0001.png")
    rows = ["sample_index,label", "a20.svs,a", "a40.svs,b", "g20.tif,a", "nompp.tif,b", "img_0001.png,b"]
    (root / "train_labels.csv").write_text("\n".join(rows) + "\n")
    return root, layouts, plain


def _settings(root, out, **overrides):
    values = dict(data_dir=root, model="unused", out_dir=out, tiling=TilingSettings(tile_size=TINY_SIZE),
                  target_mpp=TARGET_MPP, workers=0, batch_size=16, progress=False, split="train")
    return ExtractionSettings(**{**values, **overrides})


@contextlib.contextmanager
def _plan_warnings():
    """The messages extraction's plan logs at WARNING, as a list filled while the block runs."""
    lines, handler = [], logging.Handler(logging.WARNING)
    handler.emit = lambda record: lines.append(record.getMessage())
    planner = logging.getLogger("pipeline.extract.plan")
    planner.addHandler(handler)
    try:
        yield lines
    finally:
        planner.removeHandler(handler)


@pytest.fixture(scope="module")
def extracted(slide_data, tmp_path_factory, tiny_model):
    root, layouts, plain = slide_data
    with _plan_warnings() as lines:  # caplog is function-scoped
        summary = run_extraction(_settings(root, tmp_path_factory.mktemp("features")), tiny_model)
    assert any("1 image(s) have no mask file (e.g. img_0001.png)" in line for line in lines)
    return summary, layouts, plain


def _on_truth(coords, size0, layout, downsample=16):
    """(share of tiles with >= half their area on true tissue, tiles touching a pen stroke)."""
    truth, pen = layout.tissue_mask(downsample), layout.pen_mask(downsample)
    truth &= ~pen
    on, on_pen = [], 0
    for x, y in coords:
        rows = slice(y // downsample, -(-(y + size0) // downsample))
        box = rows, slice(x // downsample, -(-(x + size0) // downsample))
        on.append(truth[box].mean() >= 0.5)
        on_pen += bool(pen[box].any())
    return float(np.mean(on)), on_pen


def test_every_slide_gets_a_file_and_a_slide_without_mpp_one_line_naming_mpp(extracted):
    summary, _, _ = extracted
    files = {path.name for path in cache.list_image_files(summary.cache_dir, "train")}
    assert files == {"a20.h5", "a40.h5", "g20.h5", "img_0001.h5"}
    reason = summary.skipped["train/nompp"]
    assert "nompp.tif" in reason and "--mpp" in reason and "\n" not in reason


def test_tiles_lie_on_tissue_never_on_pen_and_are_level0_corners(extracted):
    summary, layouts, _ = extracted
    for name, layout in layouts.items():
        with h5py.File(summary.cache_dir / "train" / name.replace(".svs", ".h5").replace(".tif", ".h5")) as f:
            coords, size0 = f["coords"][:], int(f["coords"].attrs["patch_size_level0"])
        downsample = 32 if name == "a40.svs" else 16
        on_tissue, on_pen = _on_truth(coords, size0, layout, downsample)
        assert len(coords) >= 80 and on_tissue >= 0.95 and on_pen == 0, (name, len(coords), on_tissue, on_pen)
        assert coords.max() + size0 <= layout.width  # level-0 pixels, within the slide


def test_a_40x_slide_gets_tiles_of_the_physical_size_of_a_20x_one_with_tridents_attributes(extracted):
    summary, _, _ = extracted
    read = {}
    for stem in ("a20", "a40", "g20"):
        with h5py.File(summary.cache_dir / "train" / f"{stem}.h5", "r") as f:  # as TRIDENT's and CLAM's loaders do
            features, coords = f["features"][:], f["coords"][:]
            attrs = dict(f["coords"].attrs)
        assert features.shape == (len(coords), 32) and coords.shape[1] == 2
        read[stem] = attrs
    assert read["a20"]["patch_size_level0"] == 192 and read["a40"]["patch_size_level0"] == 384
    for stem, power in (("a20", 20), ("a40", 40)):
        attrs = read[stem]
        assert attrs["patch_size"] == TINY_SIZE and attrs["level0_magnification"] == power
        assert attrs["target_magnification"] == round(10 / TARGET_MPP) and attrs["overlap"] == 0
        assert attrs["target_mpp"] == TARGET_MPP
    assert (read["a20"]["level0_width"], read["a40"]["level0_height"]) == (4096, 8192)
    assert read["a20"]["mpp_level0"] == 0.5 and read["a40"]["mpp_level0"] == 0.25
    assert read["g20"]["mpp_level0"] == pytest.approx(0.5)


def test_features_equal_the_model_on_openslides_own_pixels(extracted, slide_data, tiny_model):
    summary, _, _ = extracted
    root = slide_data[0]
    item = cache.store.read_image_features(summary.cache_dir / "train" / "a20.h5")
    picks = [0, len(item.coords) // 2, len(item.coords) - 1]
    filters = {"bilinear": Image.Resampling.BILINEAR, "bicubic": Image.Resampling.BICUBIC}
    resample = filters[tiny_model.preprocessing.interpolation]
    with openslide.OpenSlide(str(root / "train_data" / "a20.svs")) as slide:
        assert slide.level_downsamples[1] == pytest.approx(4.0)
        tiles = [np.asarray(slide.read_region((int(x), int(y)), 1, (48, 48)).convert("RGB")
                            .resize((TINY_SIZE, TINY_SIZE), resample)) for x, y in item.coords[picks]]
    expected = Embedder(tiny_model, torch.device("cpu"), "fp32", batch_size=4)(torch.from_numpy(np.stack(tiles)))
    np.testing.assert_allclose(item.features[picks], expected, atol=1e-5)


def test_an_image_without_a_mask_is_tiled_on_the_tissue_found_and_its_mask_saved(extracted):
    summary, _, plain = extracted
    item = cache.store.read_image_features(summary.cache_dir / "train" / "img_0001.h5")
    on_tissue, _ = _on_truth(item.coords, TINY_SIZE, plain, downsample=1)
    assert len(item.coords) >= 20 and on_tissue >= 0.95
    assert item.attrs["mask_sha256"] == "" and item.coords_attrs["patch_size_level0"] == TINY_SIZE
    assert item.coords_attrs["level0_width"] == 512
    mask = np.asarray(Image.open(summary.cache_dir / cache.TISSUE_DIR / "train" / "img_0001.png")).astype(bool)
    truth = plain.tissue_mask(1)
    assert mask.shape == (512, 512) and (mask & truth).sum() / mask.sum() >= 0.95  # glass stays out
    assert (mask & truth).sum() / truth.sum() >= 0.7  # made tissue holds glas15's white lumens (docs/slides.md)
    for stem in ("a20", "a40", "g20"):
        assert (summary.cache_dir / cache.TISSUE_DIR / "train" / f"{stem}.png").is_file()
    sheet = Image.open(summary.cache_dir / cache.SLIDE_SHEET)
    assert sheet.width >= 3 * 320


def test_quality_csv_groups_the_scans_of_one_slide_and_gives_their_tissue_and_pen(extracted):
    summary, layouts, _ = extracted
    with (summary.cache_dir / "quality.csv").open() as handle:
        rows = {row["image_id"]: row for row in csv.DictReader(handle)}
    same = [rows[f"train/{stem}"] for stem in ("a20", "a40", "g20")]  # one tissue: 20x, 40x, another container
    assert len({row["duplicate_group"] for row in same}) == 1 and all(row["near_duplicate"] == "1" for row in same)
    assert rows["train/img_0001"]["duplicate_group"] != same[0]["duplicate_group"]
    truth = layouts["a20.svs"]
    for row in same:  # green and black strokes across the first piece, no blue
        assert float(row["pen_green_fraction"]) > 0.005 and float(row["pen_black_fraction"]) > 0.005
        assert float(row["pen_blue_fraction"]) == 0
        assert 0.8 * truth.tissue_mask(16).mean() <= float(row["tissue_fraction"]) <= truth.tissue_mask(16).mean()
    assert rows["train/img_0001"]["pen_fraction"] == ""  # an image: no slide statistics
    with h5py.File(summary.cache_dir / "train" / "a40.h5", "r") as f:  # kept in the file, for classify.py
        assert f.attrs["slide_pen_fraction"] == pytest.approx(float(rows["train/a40"]["pen_fraction"]), abs=1e-4)


def test_slide_statistics_are_stored_at_extraction(slide_data, tmp_path, tiny_model, monkeypatch):
    from pipeline.extract import quality_report

    monkeypatch.setattr(quality_report, "add_slide_statistics", lambda *args: 0)  # no second pass after extraction
    summary = run_extraction(_settings(slide_data[0], tmp_path), tiny_model)
    with h5py.File(summary.cache_dir / "train" / "a20.h5", "r") as f:
        assert f.attrs["slide_pen_green_fraction"] > 0.005 and 0 < f.attrs["slide_tissue_fraction"] < 1
    with h5py.File(summary.cache_dir / "train" / "img_0001.h5", "r") as f:
        assert "slide_pen_fraction" not in f.attrs  # an image


def test_a_second_run_embeds_nothing(extracted, slide_data, tiny_model):
    summary, _, _ = extracted
    again = run_extraction(_settings(slide_data[0], summary.cache_dir.parent.parent), tiny_model)
    assert again.cache_dir == summary.cache_dir
    assert again.n_embedded == 0 and again.n_reused == 4


def test_verify_checks_slide_files_without_a_model(extracted, slide_data):
    summary, _, _ = extracted
    report = verify_cache(_settings(slide_data[0], summary.cache_dir))
    assert report.cache_dir == summary.cache_dir and report.n_images == 5 and report.n_ok == 4
    assert not report.to_embed and set(report.skipped) == {"train/nompp"} and not report.orphans


def test_shards_weigh_slides_by_their_level0_area_and_classify_sees_a_missing_slide(extracted, slide_data, tmp_path):
    summary, _, _ = extracted
    records = find_records(slide_data[0], "train", slides=True)
    weights = dict(zip([r.image_path.name for r in records], pixel_counts(records), strict=True))
    assert weights == {"img_0001.png": 512 * 512, "a20.svs": 4096**2, "a40.svs": 8192**2, "g20.tif": 4096**2,
                       "nompp.tif": 1024**2}
    settings = cache.read_settings(summary.cache_dir)
    cache.check_complete(summary.cache_dir, settings)  # every slide has a file or a skip entry
    copy = tmp_path / "copy"
    shutil.copytree(summary.cache_dir, copy)
    (copy / "train" / "a40.h5").unlink()
    with pytest.raises(CacheError, match="lacks 1 image.*train/a40"):
        cache.check_complete(copy, settings)


def test_a_decoding_worker_gives_the_same_files(extracted, slide_data, tmp_path, tiny_model):
    summary, _, _ = extracted
    other = run_extraction(_settings(slide_data[0], tmp_path, workers=1), tiny_model)  # tiles via shared memory
    assert other.n_embedded == 4 and set(other.skipped) == {"train/nompp"}
    for stem in ("a20", "a40", "g20", "img_0001"):
        ours, theirs = (cache.store.read_image_features(s.cache_dir / "train" / f"{stem}.h5") for s in (summary, other))
        np.testing.assert_array_equal(ours.coords, theirs.coords)
        np.testing.assert_allclose(ours.features, theirs.features, atol=1e-6)
        assert ours.coords_attrs == theirs.coords_attrs
    assert (other.cache_dir / cache.SLIDE_SHEET).is_file()


def test_slides_in_chunks_give_the_same_files_as_in_one_item(extracted, slide_data, tmp_path, tiny_model,
                                                             monkeypatch):
    summary, _, _ = extracted
    monkeypatch.setattr(decoding, "SLIDE_CHUNK_TILES", 7)  # the fixture's slides fit one default chunk (256)
    chunked = run_extraction(_settings(slide_data[0], tmp_path, workers=2), tiny_model)  # chunks of two workers
    assert chunked.n_embedded == 4 and set(chunked.skipped) == {"train/nompp"}
    for stem in ("a20", "a40", "g20", "img_0001"):
        ours, theirs = (cache.store.read_image_features(run.cache_dir / "train" / f"{stem}.h5")
                        for run in (summary, chunked))
        assert len(ours.coords) <= 256 and (stem == "img_0001" or len(ours.coords) > 3 * 7)
        np.testing.assert_array_equal(ours.coords, theirs.coords)
        np.testing.assert_array_equal(ours.coverage, theirs.coverage)
        np.testing.assert_allclose(ours.features, theirs.features, atol=1e-6)  # batches cut elsewhere: float order
        assert ours.coords_attrs == theirs.coords_attrs and ours.attrs["n_tiles"] == theirs.attrs["n_tiles"]


def test_a_slide_that_fails_after_some_chunks_gets_no_file_and_the_others_go_on(slide_data, tmp_path, tiny_model,
                                                                                monkeypatch):
    monkeypatch.setattr(decoding, "SLIDE_CHUNK_TILES", 7)
    read_tile, calls = Slide.read_tile, []

    def failing(self, *args, **kwargs):  # a40's 20th tile fails to decode: chunks 1-2 are queued by then
        calls.append(self.path.name)
        if self.path.name == "a40.svs" and calls.count("a40.svs") == 20:
            raise SlideReadError(f"{self.path}: a tile fails to decode (made up by the test)")
        return read_tile(self, *args, **kwargs)

    monkeypatch.setattr(Slide, "read_tile", failing)
    summary = run_extraction(_settings(slide_data[0], tmp_path), tiny_model)
    assert set(summary.skipped) == {"train/nompp", "train/a40"} and "made up" in summary.skipped["train/a40"]
    files = {path.name for path in cache.list_image_files(summary.cache_dir, "train")}
    assert files == {"a20.h5", "g20.h5", "img_0001.h5"} and summary.n_embedded == 3


def test_a_mask_file_beside_a_slide_places_its_tiles_under_auto_and_mask(slide_data, tmp_path, tiny_model):
    root, layouts, _ = slide_data
    data = tmp_path / "data"
    (data / "train_data").mkdir(parents=True)
    shutil.copy(root / "train_data" / "a20.svs", data / "train_data" / "m20.svs")
    x, y, w, h = layouts["a20.svs"].tissue[1]  # the mask: the second piece only, at 1/32 of level 0 (128 px)
    mask = np.zeros((128, 128), np.uint8)
    mask[-(-y // 32) : (y + h) // 32, -(-x // 32) : (x + w) // 32] = 255
    Image.fromarray(mask).save(data / "train_data" / "mask_m20.png")
    (data / "train_labels.csv").write_text("sample_index,label\nm20.svs,a\n")
    for tissue in ("auto", "mask"):
        summary = run_extraction(_settings(data, tmp_path / tissue, tissue=tissue), tiny_model)
        assert summary.n_embedded == 1, summary.skipped
        item = cache.store.read_image_features(summary.cache_dir / "train" / "m20.h5")
        centres = item.coords + item.coords_attrs["patch_size_level0"] / 2
        assert len(centres) >= 20 and (centres >= (x, y)).all() and (centres <= (x + w, y + h)).all()
        mask_sha = hashlib.sha256((data / "train_data" / "mask_m20.png").read_bytes()).hexdigest()
        assert item.attrs["mask_sha256"] == mask_sha and "tissue_detector" not in item.attrs
    Image.fromarray(mask[:, :100]).save(data / "train_data" / "mask_m20.png")  # not the slide's shape
    summary = run_extraction(_settings(data, tmp_path / "auto"), tiny_model)  # the mask changed: re-embedded
    reason = summary.skipped["train/m20"]
    assert "mask_m20.png" in reason and "not the shape of its slide" in reason


def test_strict_stops_at_the_slide_without_mpp(slide_data, tmp_path, tiny_model):
    with pytest.raises(ImageReadError, match="nompp.tif.*--mpp"):
        run_extraction(_settings(slide_data[0], tmp_path, strict=True), tiny_model)


def test_tissue_mask_mode_skips_slides_and_unmasked_images_as_before(slide_data, tmp_path, tiny_model):
    summary = run_extraction(_settings(slide_data[0], tmp_path, tissue="mask", target_mpp=None), tiny_model)
    assert summary.n_embedded == 0 and "no mask found" in summary.skipped["train/img_0001"]
    assert "_tissuemask_" in summary.cache_dir.name


def test_classify_runs_unchanged_on_a_slide_cache(tmp_path, patches, tiny_model):
    root = tmp_path / "data"
    folder = root / "train_data"
    folder.mkdir(parents=True)
    rows, rng = ["sample_index,label"], np.random.default_rng(0)
    for i in range(8):  # pieces at random places: slides that hygiene does not group as near duplicates
        pieces = tuple((int(x) * 64, int(y) * 64, int(w) * 64, int(h) * 64)
                       for x, y, w, h in zip(rng.integers(0, 8, 3), rng.integers(0, 8, 3), rng.integers(3, 8, 3),
                                             rng.integers(3, 8, 3), strict=True))
        layout = slide_maker.SlideLayout(1024, 1024, pieces, patches[i % len(patches):] + patches[: i % len(patches)])
        slide_maker.write_slide(folder / f"s{i}.svs", layout, "aperio", mpp=0.5, app_mag=20)
        rows.append(f"s{i}.svs,{'ab'[i % 2]}")
    (root / "train_labels.csv").write_text("\n".join(rows) + "\n")
    summary = run_extraction(_settings(root, tmp_path / "f", target_mpp=2.0), tiny_model)
    assert summary.n_embedded == 8
    assert classify_main(["--features", str(summary.cache_dir), "--head", "logreg", "--folds", "2", "--out",
                          str(tmp_path / "run"), "-q"]) == 0
    assert json.loads((tmp_path / "run" / "metrics.json").read_text())
    assert (tmp_path / "run" / "report.html").is_file()  # the report, pictures included, on a cache of slides
    with (tmp_path / "run" / "quality.csv").open() as handle:  # the slides' statistics, read from their files
        assert all(float(row["tissue_fraction"]) > 0.05 for row in csv.DictReader(handle))
    # vote maps drawn on the slides' thumbnails (tests/report/test_slide_pictures.py checks where the tiles land)
    maps = sorted(path.name for path in (tmp_path / "run" / "vote_maps").iterdir())
    assert len(maps) >= 2 and all(re.fullmatch(r"[a-z]+_s\d\.png", name) for name in maps), maps
    assert all(f"vote_maps/{name}" in (tmp_path / "run" / "report.html").read_text() for name in maps)
    # abmil on the slides' bags: attention maps on the thumbnails
    assert classify_main(["--features", str(summary.cache_dir), "--head", "abmil", "--folds", "2", "--out",
                          str(tmp_path / "mil"), "--vote-maps", "s0.svs", "-q"]) == 0
    assert (tmp_path / "mil" / "vote_maps" / "requested_s0.png").is_file() or any(
        name.endswith("_s0.png") for name in (p.name for p in (tmp_path / "mil" / "vote_maps").iterdir()))
