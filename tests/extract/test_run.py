import json
import logging
import os
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import cache
from pipeline.cache import store
from pipeline.data.tiling import TilingSettings, tile_coverage
from pipeline.errors import ConfigError, ImageReadError
from pipeline.extract.run import run_extraction
from pipeline.extract.settings import ExtractionSettings
from tests.conftest import TINY_SIZE


def _settings(root, tmp_path, **overrides):
    values = dict(
        data_dir=root, model="unused", out_dir=tmp_path / "features", tiling=TilingSettings(tile_size=TINY_SIZE),
        workers=0, batch_size=3, progress=False,
    )
    values.update(overrides)
    return ExtractionSettings(**values)


def test_every_image_gets_a_file_with_exact_tiles(make_data, tmp_path, tiny_model):
    root = make_data(n_train=4, n_test=2)
    summary = run_extraction(_settings(root, tmp_path), tiny_model)
    assert summary.n_embedded == 6 and summary.n_tiles == 24 and not summary.skipped
    assert summary.cache_dir.name == f"{tiny_model.slug}_t32_s32_c0.50_n0_gcover1_fp32"
    item = store.read_image_features(summary.cache_dir / "test" / "img_0001.h5")
    assert item.features.shape == (4, 32) and item.features.dtype == np.float32
    # the mask is the left half (48 px): a column at 0 and one ending at its edge (16), in rows 0 and 32
    np.testing.assert_array_equal(item.coords, [[0, 0], [16, 0], [0, 32], [16, 32]])
    np.testing.assert_allclose(item.coverage, [1.0, 1.0, 1.0, 1.0])
    attrs = item.attrs
    assert attrs["image_id"] == "test/img_0001" and attrs["split"] == "test" and attrs["sample_index"] == "img_0001.png"
    assert (attrs["image_width"], attrs["image_height"], attrs["tile_size"], attrs["stride"]) == (96, 64, 32, 32)
    assert attrs["model_checksum"] == tiny_model.checksum and attrs["precision"] == "fp32"
    assert attrs["grid"] == "cover-v1"
    assert len(attrs["image_sha256"]) == 64 and len(attrs["mask_sha256"]) == 64
    assert json.loads(attrs["preprocessing"])["input_size"] == TINY_SIZE
    settings = cache.read_settings(summary.cache_dir)
    assert settings["data_dir"] == str(root.resolve()) and settings["feature_dim"] == 32


def test_a_fallback_tile_is_logged_with_what_happened_and_what_to_do(make_data, tmp_path, tiny_model, caplog):
    root = make_data(n_train=1, n_test=0)  # 96x64, the left 48 px inside: a 64-px tile holds at most 75% of mask
    with caplog.at_level(logging.INFO, logger="pipeline.extract.loop"):
        summary = run_extraction(_settings(root, tmp_path, tiling=TilingSettings(tile_size=64, min_coverage=0.9)),
                                 tiny_model)
    assert summary.fallbacks == {"train/img_0000": "best_coverage"}
    assert ("train/img_0000: no grid tile has 90% of its pixels inside the mask (the best has 75%), so the one 64-px "
            "tile holding the most mask was kept instead (75% inside); lower --min-coverage or --tile-size to keep "
            "more of such images") in caplog.text


def test_batches_across_images_do_not_change_features(make_data, tmp_path, tiny_model):
    root = make_data(n_train=3, n_test=0)
    one = run_extraction(_settings(root, tmp_path, batch_size=1, out_dir=tmp_path / "a"), tiny_model)
    many = run_extraction(_settings(root, tmp_path, batch_size=7, out_dir=tmp_path / "b"), tiny_model)
    for name in ("img_0000.h5", "img_0002.h5"):
        a = store.read_image_features(one.cache_dir / "train" / name).features
        b = store.read_image_features(many.cache_dir / "train" / name).features
        np.testing.assert_allclose(a, b, atol=1e-5)


def test_second_run_does_no_work_and_changes_are_re_embedded(make_data, tmp_path, tiny_model):
    root = make_data(n_train=3, n_test=1)
    settings = _settings(root, tmp_path)
    run_extraction(settings, tiny_model)
    again = run_extraction(settings, tiny_model)
    assert (again.n_embedded, again.n_reused, again.n_tiles) == (0, 4, 0)
    # a changed image is re-embedded; nothing else is
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(root / "train_data" / "img_0001.png")
    changed = run_extraction(settings, tiny_model)
    assert (changed.n_embedded, changed.n_reused) == (1, 3)
    # other tiling settings go to another folder and never mix
    other = run_extraction(_settings(root, tmp_path, tiling=TilingSettings(TINY_SIZE, 16, 0.5)), tiny_model)
    assert other.cache_dir != changed.cache_dir and other.n_embedded == 4
    forced = run_extraction(_settings(root, tmp_path, overwrite=True), tiny_model)
    assert forced.n_embedded == 4


def test_file_with_other_settings_is_re_embedded(make_data, tmp_path, tiny_model):
    root = make_data(n_train=2, n_test=0)
    settings = _settings(root, tmp_path)
    summary = run_extraction(settings, tiny_model)
    path = summary.cache_dir / "train" / "img_0000.h5"
    item = store.read_image_features(path)
    store.write_image_features(path, item.features, item.coords, item.coverage, {**item.attrs, "model_checksum": "x"})
    assert run_extraction(settings, tiny_model).n_embedded == 1


def test_bad_images_are_skipped_and_listed(make_data, tmp_path, tiny_model):
    root = make_data(n_train=4, n_test=1)
    (root / "train_data" / "img_0001.png").write_bytes(b"")
    (root / "train_data" / "mask_0002.png").unlink()
    Image.new("L", (10, 10)).save(root / "train_data" / "mask_0003.png")
    # --tissue mask: an image without its mask is skipped (auto finds its tissue: tests/integration/test_slides_*)
    summary = run_extraction(_settings(root, tmp_path, tissue="mask"), tiny_model)
    assert summary.n_embedded == 2
    assert set(summary.skipped) == {"train/img_0001", "train/img_0002", "train/img_0003"}
    assert "file is empty" in summary.skipped["train/img_0001"]
    assert "no mask found (expected mask_0002.png" in summary.skipped["train/img_0002"]
    assert "mask is 10x10 but its image is 96x64" in summary.skipped["train/img_0003"]
    on_disk = cache.read_skipped(summary.cache_dir)
    assert {k: v["reason"] for k, v in on_disk.items()} == summary.skipped
    assert on_disk["train/img_0002"]["sample_index"] == "img_0002.png"
    assert "3 skipped" in summary.line()


def test_strict_stops_at_the_first_bad_image_and_keeps_finished_files(make_data, tmp_path, tiny_model):
    root = make_data(n_train=4, n_test=0)
    (root / "train_data" / "img_0002.png").write_text("not a png")
    with pytest.raises(ImageReadError, match="img_0002.png: not a readable image.*--strict"):
        run_extraction(_settings(root, tmp_path, strict=True, batch_size=1), tiny_model)
    written = sorted(p.name for p in (tmp_path / "features").rglob("*.h5"))
    assert written == ["img_0000.h5", "img_0001.h5"]


def test_real_glas15_images(glas15, tmp_path, tiny_model):
    settings = ExtractionSettings(
        data_dir=glas15, out_dir=tmp_path, tiling=TilingSettings(tile_size=64, min_coverage=0.6), workers=1,
        progress=False,
    )
    summary = run_extraction(settings, tiny_model)
    assert summary.n_embedded == 15 and not summary.skipped
    from pipeline.data.images import read_mask

    for path in cache.list_image_files(summary.cache_dir, "train") + cache.list_image_files(summary.cache_dir, "test"):
        item = store.read_image_features(path)
        split, stem = item.attrs["split"], path.stem
        inside = read_mask(glas15 / f"{split}_data" / f"{stem.replace('img_', 'mask_')}.png", (600, 400)).inside
        assert len(item.features) >= 1
        assert (item.coords[:, 0] + 64 <= 600).all() and (item.coords[:, 1] + 64 <= 400).all()
        assert (item.coords >= 0).all()
        np.testing.assert_allclose(item.coverage, tile_coverage(inside, item.coords, 64), atol=1e-6)
        if not item.attrs["fallback"]:
            assert (item.coverage >= 0.6).all()
    assert run_extraction(settings, tiny_model).n_embedded == 0


def test_invalid_batch_size(make_data, tmp_path, tiny_model):
    with pytest.raises(ConfigError, match="--batch-size must be a positive number of tiles. Got 0 instead."):
        run_extraction(_settings(make_data(), tmp_path, batch_size=0), tiny_model)


def test_an_image_that_became_unreadable_loses_its_old_file(make_data, tmp_path, tiny_model):
    root = make_data(n_train=2, n_test=0)
    settings = _settings(root, tmp_path)
    summary = run_extraction(settings, tiny_model)
    (root / "train_data" / "img_0001.png").write_bytes(b"broken")
    again = run_extraction(settings, tiny_model)
    assert set(again.skipped) == {"train/img_0001"}
    assert not (summary.cache_dir / "train" / "img_0001.h5").exists()
    assert (summary.cache_dir / "train" / "img_0000.h5").exists()


def test_quality_report_of_the_run_equals_one_read_back_from_the_cache(make_data, tmp_path, tiny_model):
    import shutil

    from pipeline.hygiene.assessment import assess_feature_sets

    root = make_data(n_train=5, n_test=2)
    shutil.copy(root / "train_data" / "img_0001.png", root / "test_data" / "img_0000.png")  # a cross-split copy
    settings = _settings(root, tmp_path)
    first = run_extraction(settings, tiny_model)  # every image from memory
    (first.cache_dir / "train" / "img_0003.h5").unlink()
    second = run_extraction(settings, tiny_model)  # one image from memory, the others read back
    sets = [cache.load_split(first.cache_dir, split) for split in ("train", "test")]
    expected = assess_feature_sets(sets)
    for report in (first.quality, second.quality):
        assert report.image_ids == expected.image_ids and len(report.image_ids) == 7
        for flag, values in expected.flags.items():
            np.testing.assert_array_equal(report.flags[flag], values)
        for name, values in expected.scores.items():
            np.testing.assert_allclose(report.scores[name], values, rtol=1e-5, atol=1e-6)
        np.testing.assert_array_equal(report.duplicate_group, expected.duplicate_group)
    assert expected.flags["exact_duplicate"].sum() == 2


def test_shards_run_one_after_the_other_then_finalize_equal_one_run(make_data, tmp_path, tiny_model,
                                                                     tiny_vit_dir):
    from pipeline.extract.quality_report import finalize_cache
    from pipeline.extract.sharding import Shard

    root = make_data(n_train=5, n_test=2)
    (root / "train_data" / "img_0003.png").write_bytes(b"")
    whole = run_extraction(_settings(root, tmp_path, out_dir=tmp_path / "one"), tiny_model)
    parts = [run_extraction(_settings(root, tmp_path, shard=Shard(i, 3)), tiny_model) for i in range(3)]
    assert [p.n_images for p in parts] == [3, 2, 2] and sum(p.n_embedded for p in parts) == 6
    assert [p.shard for p in parts] == ["0/3", "1/3", "2/3"] and all(p.quality is None for p in parts)
    assert parts[0].line().startswith("shard 0/3: 3 images: ") and "next: when every shard has finished" in \
        parts[0].line()
    cache_dir = parts[0].cache_dir
    assert not (cache_dir / "quality.csv").exists()
    assert set(cache.read_skipped(cache_dir)) == {"train/img_0003"}  # merged from the shards' records
    report = finalize_cache(_settings(root, tmp_path, model=str(tiny_vit_dir)))
    assert report.ok and (report.n_images, report.n_files, report.missing) == (7, 6, [])
    assert report.skipped == {"train/img_0003": whole.skipped["train/img_0003"]} and report.absent == []
    assert [r["key"] for r in report.shards] == ["all-0of3", "all-1of3", "all-2of3"]
    assert (cache_dir / "quality.csv").read_text() == (whole.cache_dir / "quality.csv").read_text()
    assert (cache_dir / cache.SKIPPED_FILE).read_text() == (whole.cache_dir / cache.SKIPPED_FILE).read_text()
    for path in whole.cache_dir.rglob("*.h5"):
        mine = store.read_image_features(cache_dir / path.relative_to(whole.cache_dir))
        np.testing.assert_allclose(mine.features, store.read_image_features(path).features, atol=1e-5)


def test_finalize_names_what_no_shard_has_embedded(make_data, tmp_path, tiny_model, tiny_vit_dir):
    from pipeline.cache.claims import ShardClaim
    from pipeline.extract.quality_report import finalize_cache
    from pipeline.extract.sharding import Shard

    root = make_data(n_train=3, n_test=1)
    done = run_extraction(_settings(root, tmp_path, shard=Shard(1, 2)), tiny_model)
    report = finalize_cache(_settings(root, tmp_path, model=str(tiny_vit_dir)))
    assert not report.ok and report.missing == ["train/img_0001", "test/img_0000"]
    assert report.absent == ["0/2"] and report.n_files == 2 and report.running == []
    text = report.text()
    assert "4 images: 2 embedded, 0 skipped as bad input, 2 not embedded yet" in text
    assert "  not embedded yet: train/img_0001, test/img_0000" in text
    assert "  no shard record yet from 0/2" in text
    assert "result: 2 image(s) are not embedded yet: run the shards that did not finish" in text
    assert (done.cache_dir / "quality.csv").exists()  # the report covers what there is
    with ShardClaim(done.cache_dir, "all-0of2", "0/2"):  # shard 0 is running now
        running = finalize_cache(_settings(root, tmp_path, model=str(tiny_vit_dir)))
    assert running.absent == [] and [c["shard"] for c in running.running] == ["0/2"]
    assert f"  running now: shard 0/2 (host {running.running[0]['host']}, pid {os.getpid()})" in running.text()


def test_only_a_single_process_draws_a_progress_bar(monkeypatch):
    from types import SimpleNamespace

    from pipeline import progress
    from pipeline.extract.launch import torchrun_launch
    from pipeline.extract.loop import EmbeddingLoop

    monkeypatch.setattr(progress, "stderr_is_terminal", lambda: True)
    launch = torchrun_launch({"TORCHELASTIC_RUN_ID": "job", "RANK": "0", "WORLD_SIZE": "2"})
    for launched, drawn in ((None, True), (launch, False)):  # ranks share a terminal: log lines, never bars
        plan = SimpleNamespace(settings=SimpleNamespace(progress=True), launch=launched)
        loop = EmbeddingLoop(plan, [], writer=None, summary=None)
        assert (loop._progress._bar is not None) == drawn
        loop._progress.close()


def test_settings_json_is_written_once(make_data, tmp_path, tiny_model):
    root = make_data(n_train=1, n_test=0)
    summary = run_extraction(_settings(root, tmp_path), tiny_model)
    path = summary.cache_dir / cache.SETTINGS_FILE
    before = (path.stat().st_ino, path.read_text())
    run_extraction(_settings(root, tmp_path, overwrite=True), tiny_model)
    assert (path.stat().st_ino, path.read_text()) == before  # not even replaced by an equal copy
    stale = {**json.loads(path.read_text()), "model_checksum": "other weights"}
    cache.write_json(path, stale)
    run_extraction(_settings(root, tmp_path), tiny_model)  # other settings: rewritten, files re-embedded
    assert cache.read_settings(summary.cache_dir)["model_checksum"] == tiny_model.checksum


def _as_version_1(path):
    """Rewrite a file as the first hygiene version wrote it: saturation statistics, no q_version."""
    old = {"q_he_fraction": 0.02, "q_off_hue_fraction": 0.0, "q_green_fraction": 0.0, "q_flat_fraction": 0.1,
           "q_white_fraction": 0.1, "phashes": ["0" * 16] * 8}
    store.update_attributes(path, old, keep=lambda key: not (key.startswith("q_") or key == "phashes"))


def test_a_cache_from_an_older_hygiene_version_is_re_scored_not_re_embedded(make_data, tmp_path, tiny_model,
                                                                             monkeypatch, caplog):
    from pipeline.extract import loop
    from pipeline.hygiene.checks import QUALITY_VERSION

    root = make_data(n_train=3, n_test=1)
    settings = _settings(root, tmp_path)
    first = run_extraction(settings, tiny_model)
    paths = sorted(first.cache_dir.rglob("*.h5"))
    before = {path: store.read_image_features(path) for path in paths}
    for path in paths[:3]:
        _as_version_1(path)
    monkeypatch.setattr(loop.EmbeddingLoop, "run", lambda self: pytest.fail("re-scoring must not embed"))
    again = run_extraction(settings, tiny_model)
    assert (again.n_embedded, again.n_reused, again.n_rescored) == (0, 4, 3)
    assert "4 up to date (3 re-scored)" in again.line() and "3 of them to re-score" in caplog.text
    for path in paths:
        after = store.read_image_features(path)
        np.testing.assert_array_equal(after.features, before[path].features)
        np.testing.assert_array_equal(after.coords, before[path].coords)
        assert after.attrs == before[path].attrs and after.attrs["q_version"] == QUALITY_VERSION
        assert "q_he_fraction" not in after.attrs
    assert not again.quality.unscored.any()
    assert run_extraction(settings, tiny_model).n_rescored == 0


def test_without_the_checks_nothing_is_re_scored(make_data, tmp_path, tiny_model):
    root = make_data(n_train=2, n_test=0)
    first = run_extraction(_settings(root, tmp_path, quality_checks=False), tiny_model)
    assert "q_version" not in store.read_attrs(first.cache_dir / "train" / "img_0000.h5")
    assert first.quality.unscored.all()
    again = run_extraction(_settings(root, tmp_path), tiny_model)  # checks on: re-scored, not re-embedded
    assert (again.n_embedded, again.n_rescored) == (0, 2) and not again.quality.unscored.any()


def test_the_one_time_compile_is_timed_apart(make_data, tmp_path, tiny_model, monkeypatch):
    # compiling for real takes a minute on 2 cores: a first call that reports compiling stands in for it
    from pipeline.embed.embedder import Embedder

    real_run = Embedder._run

    def compiling_run(self, batch):
        if not self.compiled:
            self.compiled, self.compile_seconds = True, 2.5
        return real_run(self, batch)

    root = make_data(n_train=2, n_test=0)
    plain = run_extraction(_settings(root, tmp_path, out_dir=tmp_path / "plain"), tiny_model)
    assert "compiling" not in plain.timings
    monkeypatch.setattr(Embedder, "_run", compiling_run)
    summary = run_extraction(_settings(root, tmp_path), tiny_model)
    assert summary.timings["compiling"] == 2.5


def test_a_summary_fails_only_when_nothing_was_embedded_or_up_to_date():
    from pipeline.extract.summary import ExtractionSummary

    skipped = {"train/img_0": "d/img_0.png: no mask found (expected d/mask_0.png). Add the mask."}
    assert ExtractionSummary(Path("c"), 2, skipped=dict(skipped)).failure().startswith(
        "0 images embedded: 1 skipped: 1 no mask found; e.g. d/img_0.png")
    assert ExtractionSummary(Path("c"), 1, skipped=dict(skipped)).failure().startswith("0 images embedded: all 1")
    assert ExtractionSummary(Path("c"), 2, n_reused=1, skipped=dict(skipped)).failure() == ""
    assert ExtractionSummary(Path("c"), 2, n_embedded=1, skipped=dict(skipped)).failure() == ""
    assert ExtractionSummary(Path("c"), 0).failure() == ""  # a shard with no image is no failure


def test_tissue_all_tiles_the_whole_image_whatever_its_mask_and_resumes(make_data, tmp_path, tiny_model):
    root = make_data(n_train=2, n_test=0)  # 96x64, the mask is the left half
    (root / "train_data" / "mask_0001.png").unlink()
    first = run_extraction(_settings(root, tmp_path, tissue="all"), tiny_model)
    assert first.n_embedded == 2 and first.cache_dir.name.endswith("_tissueall_gcover1_fp32")
    for stem in ("img_0000", "img_0001"):
        item = store.read_image_features(first.cache_dir / "train" / f"{stem}.h5")
        assert len(item.coords) == 6 and item.attrs["mask_fraction"] == 1.0  # 3 x 2 tiles of 32 px
    again = run_extraction(_settings(root, tmp_path, tissue="all"), tiny_model)
    assert again.n_embedded == 0 and again.n_reused == 2
