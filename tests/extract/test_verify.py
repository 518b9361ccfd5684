"""``extract.py --verify``: every cache file checked without a model; the list matches what extraction re-embeds."""

import json
import logging
import os
import shutil

import numpy as np
import pytest
from PIL import Image

from pipeline import cache
from pipeline.cache import store
from pipeline.cache.atomic import host_name
from pipeline.cache.claims import ShardClaim
from pipeline.cli.extract import main
from pipeline.data.tiling import TilingSettings
from pipeline.embed import loading
from pipeline.extract import loop, plan
from pipeline.extract.run import run_extraction
from pipeline.extract.settings import ExtractionSettings
from pipeline.extract.verify import verify_cache
from tests.conftest import TINY_SIZE, dead_pid


@pytest.fixture(autouse=True)
def _restore_logging():
    """main() points logging at the captured stderr of its test; later runs must not log into a closed stream."""
    handlers, level = logging.root.handlers[:], logging.root.level
    yield
    logging.root.handlers[:], logging.root.level = handlers, level


def _settings(root, out, model, **overrides):
    values = dict(data_dir=root, out_dir=out, model=str(model), tiling=TilingSettings(tile_size=TINY_SIZE),
                  workers=0, precision="fp32", progress=False)
    values.update(overrides)
    return ExtractionSettings(**values)


def _argv(root, out, tiny_vit_dir, *extra):
    return ["--verify", "--data", str(root), "--model", str(tiny_vit_dir), "--out", str(out), "--tile-size", "32",
            *extra]


def _state(folder):
    return {p: (p.stat().st_size, p.stat().st_mtime_ns) for p in folder.rglob("*")}


def _refuse(*args, **kwargs):
    raise AssertionError("--verify loaded a model or embedded")


def forbid_model(monkeypatch):
    """--verify must never load a model or embed: make both impossible."""
    monkeypatch.setattr(loading, "load_model", _refuse)
    monkeypatch.setattr(plan, "load_model", _refuse)
    monkeypatch.setattr(loop.EmbeddingLoop, "run", _refuse)


def test_a_good_cache_verifies_clean_without_a_model(make_data, tmp_path, tiny_model, tiny_vit_dir, capsys,
                                                     monkeypatch):
    root = make_data(n_train=4, n_test=2)
    summary = run_extraction(_settings(root, tmp_path / "f", tiny_vit_dir), tiny_model)
    forbid_model(monkeypatch)
    before = _state(tmp_path / "f")
    assert main(_argv(root, tmp_path / "f", tiny_vit_dir)) == 0
    out = capsys.readouterr().out
    assert f"cache: {summary.cache_dir}" in out
    assert "checked 6 images: 6 up to date, 0 would be re-embedded, 0 skipped as bad input" in out
    assert out.rstrip().endswith("result: all good, nothing to re-embed.")
    assert _state(tmp_path / "f") == before  # nothing written, not even a claim
    assert main(_argv(root, summary.cache_dir, tiny_vit_dir)) == 0  # --out may name the cache folder itself


def test_every_problem_is_listed_and_extraction_re_embeds_exactly_those(make_data, tmp_path, tiny_model, tiny_vit_dir,
                                                                         capsys, monkeypatch):
    root = make_data(n_train=5, n_test=2)
    train = root / "train_data"
    (train / "img_0004.png").write_bytes(b"")  # a bad input: skipped by extraction
    settings = _settings(root, tmp_path / "f", tiny_vit_dir)
    cache_dir = run_extraction(settings, tiny_model).cache_dir
    nan = store.read_image_features(cache_dir / "train" / "img_0000.h5")
    nan.features[2, 5] = np.nan
    store.write_image_features(cache_dir / "train" / "img_0000.h5", nan.features, nan.coords, nan.coverage, nan.attrs)
    data = (cache_dir / "train" / "img_0001.h5").read_bytes()
    (cache_dir / "train" / "img_0001.h5").write_bytes(data[: len(data) // 2])
    Image.fromarray(np.zeros((64, 96, 3), np.uint8)).save(train / "img_0002.png")
    Image.fromarray(np.full((64, 96), 255, np.uint8)).save(train / "mask_0003.png")
    other = store.read_image_features(cache_dir / "test" / "img_0000.h5")
    store.write_image_features(cache_dir / "test" / "img_0000.h5", other.features, other.coords, other.coverage,
                               {**other.attrs, "min_coverage": 0.25})
    (cache_dir / "test" / "img_0001.h5").unlink()
    shutil.copy(cache_dir / "train" / "img_0002.h5", cache_dir / "train" / "img_0099.h5")
    (cache_dir / "train" / f".img_0003.h5{store.TEMP_MARKER}{dead_pid()}-abcdef01").write_bytes(b"partial")

    with monkeypatch.context() as patch:
        forbid_model(patch)
        assert main(_argv(root, tmp_path / "f", tiny_vit_dir)) == 1
    out = capsys.readouterr().out
    expected_lines = [
        "checked 7 images: 0 up to date, 6 would be re-embedded, 1 skipped as bad input",
        "  re-embed train/img_0000: 1 of 128 embedding values are NaN or infinite",
        "  re-embed train/img_0001: not a readable feature file (",
        "  re-embed train/img_0002: the image file changed since it was embedded",
        "  re-embed train/img_0003: the mask file changed since it was embedded",
        "  re-embed test/img_0000: made with other settings (min_coverage)",
        "  re-embed test/img_0001: no feature file",
        "  skipped  train/img_0004: ",
        "  not in the data folder: train/img_0099.h5 (readable); delete it if the image was removed",
        "  leftover temporary file ",
        "result: 6 image(s) would be re-embedded: run extract.py with the same flags; 1 file(s) have no image: "
        "delete them if their images were removed.",
    ]
    for line in expected_lines:
        assert line in out, line
    assert "file is empty (0 bytes)" in out and "(retried on each run)" in out

    again = run_extraction(settings, tiny_model)
    assert again.n_embedded == 6  # exactly the listed images; img_0004 is tried again and skipped again
    assert set(again.skipped) == {"train/img_0004"}
    report = verify_cache(settings)
    assert (report.n_ok, report.to_embed, report.leftovers) == (6, {}, [])
    assert list(report.orphans) == ["train/img_0099.h5"] and not report.ok
    (cache_dir / "train" / "img_0099.h5").unlink()
    assert verify_cache(settings).ok


def test_no_cache_for_these_flags(make_data, tmp_path, tiny_vit_dir, capsys, monkeypatch):
    root = make_data(n_train=2, n_test=0)
    forbid_model(monkeypatch)
    assert main(_argv(root, tmp_path / "empty", tiny_vit_dir)) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: No cache for --model {tiny_vit_dir} with these tiling settings under ")
    assert "Pass the flags of the extraction, or --out CACHE_FOLDER." in err


def test_several_precisions_need_a_choice(make_data, tmp_path, tiny_model, tiny_vit_dir, capsys, monkeypatch):
    root = make_data(n_train=2, n_test=0)
    cache_dir = run_extraction(_settings(root, tmp_path / "f", tiny_vit_dir), tiny_model).cache_dir
    forbid_model(monkeypatch)
    shutil.copytree(cache_dir, cache_dir.with_name(cache_dir.name.replace("_fp32", "_bf16")))
    assert main(_argv(root, tmp_path / "f", tiny_vit_dir)) == 2
    assert "Several caches match these flags" in capsys.readouterr().err
    assert main(_argv(root, tmp_path / "f", tiny_vit_dir, "--precision", "fp32")) == 0


def test_a_running_extraction_is_noted(make_data, tmp_path, tiny_model, tiny_vit_dir):
    root = make_data(n_train=2, n_test=0)
    settings = _settings(root, tmp_path / "f", tiny_vit_dir)
    cache_dir = run_extraction(settings, tiny_model).cache_dir
    with ShardClaim(cache_dir, cache.shard_key("all", 1, 2), "1/2"):
        report = verify_cache(settings)
    assert report.ok and any(f"an extraction (shard 1/2, host {host_name()}, pid {os.getpid()}) is writing "
                             "this cache now" in note for note in report.notes)
    assert not any("is writing" in note for note in verify_cache(settings).notes)
    assert cache.read_settings(cache_dir)["model_checksum"] == tiny_model.checksum


def test_files_of_an_older_hygiene_version_are_up_to_date_and_noted(make_data, tmp_path, tiny_model, tiny_vit_dir,
                                                                     capsys, monkeypatch):
    root = make_data(n_train=3, n_test=0)
    cache_dir = run_extraction(_settings(root, tmp_path / "f", tiny_vit_dir), tiny_model).cache_dir
    store.update_attributes(cache_dir / "train" / "img_0001.h5", {"q_he_fraction": 0.5},
                            keep=lambda key: not key.startswith("q_"))
    forbid_model(monkeypatch)
    assert main(_argv(root, tmp_path / "f", tiny_vit_dir)) == 0
    out = capsys.readouterr().out
    assert "checked 3 images: 3 up to date, 0 would be re-embedded" in out
    assert ("note: 1 file(s) hold hygiene scores of an older version: extract.py with the same flags re-scores them "
            "without re-embedding") in out


def test_a_preprocessing_changed_since_the_cache_is_named_without_a_model(make_data, tmp_path, tiny_model,
                                                                          tiny_vit_dir, capsys, monkeypatch):
    # e.g. efficientnet-lite0's statistics or phikon's filter, fixed after the cache was made
    from pipeline.embed.preprocessing import Preprocessing
    from pipeline.extract import verify

    root = make_data(n_train=2, n_test=1)
    run_extraction(_settings(root, tmp_path / "f", tiny_vit_dir), tiny_model)
    now = Preprocessing(TINY_SIZE, (0.5,) * 3, (0.5,) * 3, "bicubic")
    assert now != tiny_model.preprocessing
    monkeypatch.setattr(verify, "predicted_preprocessing", lambda model: now if model == str(tiny_vit_dir) else None)
    forbid_model(monkeypatch)
    assert main(_argv(root, tmp_path / "f", tiny_vit_dir)) == 1
    out = capsys.readouterr().out
    assert f"now preprocesses tiles as {now.to_dict()}; the cache was made with" in out
    assert "checked 3 images: 0 up to date, 3 would be re-embedded" in out
    assert "re-embed train/img_0000: made with other settings (preprocessing)" in out


def test_the_current_preprocessing_of_a_table_encoder_verifies_clean(make_data, tmp_path, tiny_model, tiny_vit_dir,
                                                                     capsys, monkeypatch):
    from pipeline.extract import verify

    root = make_data(n_train=2, n_test=1)
    run_extraction(_settings(root, tmp_path / "f", tiny_vit_dir), tiny_model)
    monkeypatch.setattr(verify, "predicted_preprocessing", lambda model: tiny_model.preprocessing)
    forbid_model(monkeypatch)
    assert main(_argv(root, tmp_path / "f", tiny_vit_dir)) == 0
    assert "now preprocesses" not in capsys.readouterr().out


def _make_old_layout(cache_dir):
    """Turn a cache into one made before the tile layout had a name: no "grid" attribute, no "_gcover1" part."""
    for path in cache_dir.rglob("*.h5"):
        store.update_attributes(path, {}, keep=lambda key: key != "grid")
    settings = json.loads((cache_dir / cache.SETTINGS_FILE).read_text())
    del settings["grid"]
    (cache_dir / cache.SETTINGS_FILE).write_text(json.dumps(settings))
    old = cache_dir.with_name(cache_dir.name.replace(f"_{cache.grid_tag()}_", "_"))
    cache_dir.rename(old)
    return old


def test_a_cache_of_the_old_tile_layout_is_named_and_never_mixed(make_data, tmp_path, tiny_model, tiny_vit_dir,
                                                                  capsys, monkeypatch):
    root = make_data(n_train=3, n_test=1)
    settings = _settings(root, tmp_path / "f", tiny_vit_dir)
    old = _make_old_layout(run_extraction(settings, tiny_model).cache_dir)
    with monkeypatch.context() as patch:
        forbid_model(patch)
        assert main(_argv(root, tmp_path / "f", tiny_vit_dir)) == 2
        err = capsys.readouterr().err
        assert f"{old} was made with the same flags before it: its grid started at the image's top-left corner" in err
        assert f"Run extract.py with these flags to make a new cache, or pass --out {old} to check the old one." in err
        assert main(_argv(root, old, tiny_vit_dir)) == 0
        out = capsys.readouterr().out
        assert "note: this cache was made before tile layout 'cover-v1' (its grid started at" in out
        assert "checked 4 images: 4 up to date" in out
    again = run_extraction(settings, tiny_model)
    assert again.cache_dir != old and again.n_embedded == 4  # a new cache; the old one is left as it is
    assert "grid" not in store.read_image_features(old / "train" / "img_0000.h5").attrs
    assert store.read_image_features(again.cache_dir / "train" / "img_0000.h5").attrs["grid"] == "cover-v1"
