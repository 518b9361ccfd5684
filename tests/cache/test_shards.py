import json
import os

import pytest

from pipeline import cache
from pipeline.errors import CacheError


def _record(cache_dir, key, finished, images, skipped=(), split="all"):
    cache.write_shard_record(cache_dir, key, {
        "split": split, "finished": finished, "images": list(images),
        "skipped": {i: {"sample_index": i.split("/")[1] + ".png", "reason": "bad"} for i in skipped},
    })


def test_skipped_images_of_every_shard_are_merged_newest_first(tmp_path):
    cache.write_json(tmp_path / cache.SKIPPED_FILE, {  # from a version without shard records
        "train/img_0000": {"sample_index": "img_0000.png", "reason": "old"},
        "train/img_0005": {"sample_index": "img_0005.png", "reason": "old"},
    })
    assert set(cache.read_skipped(tmp_path)) == {"train/img_0000", "train/img_0005"}
    _record(tmp_path, "all-0of2", 2.0, ["train/img_0000", "train/img_0001"], skipped=["train/img_0001"])
    _record(tmp_path, "all-1of2", 1.0, ["train/img_0002", "train/img_0003"], skipped=["train/img_0003"])
    # img_0000 was embedded by shard 0 since; img_0005 belongs to no record and keeps its old entry
    assert cache.read_skipped(tmp_path) == {
        "train/img_0001": {"sample_index": "img_0001.png", "reason": "bad"},
        "train/img_0003": {"sample_index": "img_0003.png", "reason": "bad"},
        "train/img_0005": {"sample_index": "img_0005.png", "reason": "old"},
    }
    _record(tmp_path, "all-0of1", 3.0, ["train/img_0001", "train/img_0003"])  # a later run embedded both
    assert set(cache.read_skipped(tmp_path)) == {"train/img_0005"}
    assert set(cache.write_skipped(tmp_path)) == {"train/img_0005"}
    assert set(json.loads((tmp_path / cache.SKIPPED_FILE).read_text())) == {"train/img_0005"}
    assert [r["key"] for r in cache.read_shard_records(tmp_path)] == ["all-1of2", "all-0of2", "all-0of1"]


def test_a_broken_shard_record_is_ignored_with_a_warning(tmp_path, caplog):
    _record(tmp_path, "all-0of2", 1.0, ["train/img_0000"], skipped=["train/img_0000"])
    (tmp_path / "shards" / "all-1of2.json").write_text('{"images": ')
    assert set(cache.read_skipped(tmp_path)) == {"train/img_0000"}
    assert "all-1of2.json is unreadable" in caplog.text and "Run that shard again" in caplog.text


def _cache_of(root, tmp_path, files):
    cache_dir = tmp_path / "cache"
    cache.write_json(cache_dir / cache.SETTINGS_FILE, {"data_dir": str(root)})
    for image_id in files:
        path = cache.feature_path(cache_dir, image_id)
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(b"")  # only the names count here
    return cache_dir


def test_a_cache_missing_images_is_refused_with_their_names(make_data, tmp_path):
    root = make_data(n_train=14, n_test=2)
    files = [f"train/img_{i:04d}" for i in range(2)] + ["test/img_0000"]
    cache_dir = _cache_of(root, tmp_path, files)
    _record(cache_dir, "all-0of2", 1.0, files + ["train/img_0002"], skipped=["train/img_0002"])
    missing = [f"train/img_{i:04d}" for i in range(3, 13)]
    with pytest.raises(CacheError, match=rf"'{cache_dir}' lacks 12 image\(s\) of {root} that no extraction has "
                                         rf"embedded yet: {', '.join(missing)} \.\.\.\. If extract.py ran in shards"):
        cache.check_complete(cache_dir, cache.read_settings(cache_dir))
    assert cache.unembedded(cache_dir, []) == []


def test_only_the_splits_that_were_extracted_are_checked(make_data, tmp_path):
    root = make_data(n_train=2, n_test=2)
    train = ["train/img_0000", "train/img_0001"]
    cache_dir = _cache_of(root, tmp_path, train)
    cache.check_complete(cache_dir, cache.read_settings(cache_dir))  # no record: the splits that have files
    _record(cache_dir, "train-0of1", 1.0, train, split="train")
    cache.check_complete(cache_dir, cache.read_settings(cache_dir))
    _record(cache_dir, "all-0of2", 2.0, train, split="all")
    with pytest.raises(CacheError, match="lacks 2 image\\(s\\) .*: test/img_0000, test/img_0001\\. "):
        cache.check_complete(cache_dir, cache.read_settings(cache_dir))


def test_no_check_without_the_data_folder(tmp_path):
    cache_dir = _cache_of(tmp_path / "gone", tmp_path, [])
    cache.check_complete(cache_dir, cache.read_settings(cache_dir))
    cache.check_complete(cache_dir, {})
    assert not os.path.exists(tmp_path / "gone")


def test_skip_causes_counts_each_cause_and_shows_the_commonest_in_full():
    from pipeline.cache.shards import skip_causes

    reasons = ["d/img_1.png: file is empty (0 bytes). Re-export it.",
               "d/img_2.png: no mask found (expected d/mask_2.png). Add the mask.",
               "d/img_3.png: no mask found (expected d/mask_3.png). Add the mask."]
    assert skip_causes(reasons) == ("2 no mask found, 1 file is empty; e.g. d/img_2.png: no mask found (expected "
                                    "d/mask_2.png). Add the mask.")
