import os

import h5py
import numpy as np
import pytest

from pipeline.cache import store
from pipeline.errors import CacheError


def _write(path, n=3, dim=4, **extra):
    features = np.arange(n * dim, dtype=np.float32).reshape(n, dim)
    attrs = {"image_id": "train/img_0000", "preprocessing": {"input_size": 224}, "tile_size": 224, **extra}
    store.write_image_features(path, features, np.zeros((n, 2)), np.ones(n), attrs)
    return features


def test_round_trip(tmp_path):
    path = tmp_path / "train" / "img_0000.h5"
    features = _write(path)
    item = store.read_image_features(path)
    np.testing.assert_array_equal(item.features, features)
    assert item.features.dtype == np.float32 and item.coords.dtype == np.int32 and item.coverage.dtype == np.float32
    assert item.attrs["schema_version"] == store.SCHEMA_VERSION
    assert item.attrs["image_id"] == "train/img_0000" and item.attrs["tile_size"] == 224
    assert item.attrs["preprocessing"] == '{"input_size": 224}'
    assert list(path.parent.iterdir()) == [path]  # no temporary file left


def test_zero_tiles_round_trip(tmp_path):
    _write(tmp_path / "a.h5", n=0, dim=8)
    assert store.read_image_features(tmp_path / "a.h5").features.shape == (0, 8)


def test_truncated_file_is_a_cache_error(tmp_path):
    path = tmp_path / "a.h5"
    _write(path)
    path.write_bytes(path.read_bytes()[:100])
    with pytest.raises(CacheError, match="a.h5: not a readable feature file"):
        store.read_image_features(path)
    with pytest.raises(CacheError, match="Delete it and run extract.py again"):
        store.read_attrs(path)


def test_other_schema_version(tmp_path):
    path = tmp_path / "a.h5"
    _write(path)
    with h5py.File(path, "a") as handle:
        handle.attrs["schema_version"] = 99
    with pytest.raises(CacheError, match="cache schema version 99; this version reads 1"):
        store.read_image_features(path)


def test_failed_write_leaves_no_file(tmp_path, monkeypatch):
    def broken_replace(src, dst):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(CacheError, match="No space left on device.*finished images are kept"):
        _write(tmp_path / "a.h5")
    assert list(tmp_path.iterdir()) == []


def test_shape_mismatch_is_refused(tmp_path):
    with pytest.raises(ValueError, match="disagree"):
        store.write_image_features(tmp_path / "a.h5", np.zeros((2, 4)), np.zeros((3, 2)), np.zeros(2), {})


def test_update_attributes_keeps_the_arrays_and_drops_what_it_is_told(tmp_path):
    path = tmp_path / "a.h5"
    features = _write(path, q_old=0.5, phashes=["0" * 16])
    stat = path.stat()
    item = store.update_attributes(path, {"q_new": 0.25, "phashes": ["f" * 16]}, keep=lambda key: key != "q_old")
    again = store.read_image_features(path)
    np.testing.assert_array_equal(again.features, features)
    assert again.attrs == item.attrs and again.attrs["q_new"] == 0.25 and "q_old" not in again.attrs
    assert again.attrs["phashes"] == '["ffffffffffffffff"]' and again.attrs["preprocessing"] == '{"input_size": 224}'
    assert path.stat().st_ino != stat.st_ino and list(path.parent.iterdir()) == [path]  # replaced by a rename


def test_update_attributes_of_a_broken_file_leaves_it(tmp_path):
    path = tmp_path / "a.h5"
    _write(path)
    data = path.read_bytes()[:100]
    path.write_bytes(data)
    with pytest.raises(store.FileProblem, match="not a readable feature file"):
        store.update_attributes(path, {"q_new": 1.0})
    assert path.read_bytes() == data


def test_attributes_are_stored_as_h5pys_own_api_stores_them(tmp_path):
    """Files from the fast attribute writer read exactly as if written with ``attrs[k] = v``."""
    attrs = {"name": "phikon", "unicode": "Lumière β", "count": 3, "big": 2**40, "ratio": 0.25, "flag": False,
             "yes": np.bool_(True), "npint": np.int32(7), "npfloat": np.float32(0.5), "config": {"a": [1, 2]},
             "hashes": ["ab", "cd"], "empty": ""}
    store._TYPES.clear()
    first = tmp_path / "first.h5"  # the attribute types made here ...
    store.write_image_features(first, np.zeros((1, 2)), np.zeros((1, 2)), np.ones(1), attrs)
    path = tmp_path / "fast.h5"  # ... and reused here
    store.write_image_features(path, np.zeros((1, 2)), np.zeros((1, 2)), np.ones(1), attrs)
    assert first.read_bytes() == path.read_bytes()
    reference = tmp_path / "reference.h5"
    with h5py.File(reference, "w") as handle:
        for key, value in {**attrs, "schema_version": store.SCHEMA_VERSION}.items():
            handle.attrs[key] = store.json.dumps(value) if isinstance(value, (dict, list)) else value
    with h5py.File(path, "r") as fast, h5py.File(reference, "r") as slow:
        assert sorted(fast.attrs) == sorted(slow.attrs)
        for key in slow.attrs:
            got, want = fast.attrs[key], slow.attrs[key]
            assert type(got) is type(want) and got == want, key
            assert fast.attrs.get_id(key).get_type().equal(slow.attrs.get_id(key).get_type()), key
            assert fast.attrs.get_id(key).shape == slow.attrs.get_id(key).shape == (), key
