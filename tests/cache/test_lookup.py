import json
from pathlib import Path

import pytest

from pipeline.cache.folder import SETTINGS_FILE, data_key
from pipeline.cache.lookup import caches_of, find_caches, recorded_data_dir, resolve_cache
from pipeline.errors import CacheError


def _cache(folder, data_dir):
    """A cache folder as extraction leaves it, as far as finding it goes: a settings.json naming its data folder."""
    folder.mkdir(parents=True)
    (folder / SETTINGS_FILE).write_text(json.dumps({"data_dir": str(data_dir.resolve())}))
    return folder


def test_caches_are_found_under_their_data_key_and_directly_under_the_root(tmp_path):
    root = tmp_path / "features"
    keyed = _cache(root / data_key(tmp_path / "a") / "m_fp32", tmp_path / "a")
    older = _cache(root / "m_t224_fp32", tmp_path / "b")  # made before caches had a data key
    (root / "empty").mkdir()
    assert find_caches(root) == sorted([keyed, older])
    assert caches_of(root, tmp_path / "a") == [keyed] and caches_of(root, tmp_path / "b") == [older]
    assert recorded_data_dir(older) == (tmp_path / "b").resolve()
    assert find_caches(tmp_path / "nowhere") == [] and recorded_data_dir(tmp_path) is None


def test_a_cache_name_under_features_is_accepted(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    made = _cache(tmp_path / "features" / data_key(tmp_path / "data") / "m_fp32", tmp_path / "data")
    assert resolve_cache("m_fp32").resolve() == made


def test_a_name_shared_by_caches_of_two_data_folders_lists_both(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for data in ("a", "b"):
        _cache(tmp_path / "features" / data_key(tmp_path / data) / "m_fp32", tmp_path / data)
    with pytest.raises(CacheError, match="several caches have that name .*a-.*m_fp32.*b-.*m_fp32.*Pass one of those"):
        resolve_cache("m_fp32")


def test_a_cache_name_shared_by_two_data_folders_takes_the_one_of_data(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for data in ("a", "b"):
        _cache(tmp_path / "features" / data_key(tmp_path / data) / "m_fp32", tmp_path / data)
    assert resolve_cache(Path("m_fp32"), tmp_path / "b") == Path("features") / data_key(tmp_path / "b") / "m_fp32"
    assert resolve_cache(Path("m_fp32"), tmp_path / "a") == Path("features") / data_key(tmp_path / "a") / "m_fp32"
    with pytest.raises(CacheError, match="several caches have that name"):
        resolve_cache(Path("m_fp32"), tmp_path / "c")


def test_caches_of_other_data_folders_only_are_named_with_their_data(tmp_path):
    root = tmp_path / "features"
    _cache(root / data_key(tmp_path / "a") / "m_fp32", tmp_path / "a")
    with pytest.raises(CacheError) as caught:
        resolve_cache(root, tmp_path / "b")
    message = str(caught.value)
    assert f"No feature cache of --data {tmp_path / 'b'}" in message
    assert f"its caches were made from {(tmp_path / 'a').resolve()}" in message and "\n" not in message


def test_without_data_the_roots_only_cache_is_used_and_several_are_listed(tmp_path):
    root = tmp_path / "features"
    only = _cache(root / data_key(tmp_path / "a") / "m_fp32", tmp_path / "a")
    assert resolve_cache(root) == only
    _cache(root / data_key(tmp_path / "b") / "m_fp32", tmp_path / "b")
    with pytest.raises(CacheError, match="holds several caches: .*Choose one with --features CACHE_FOLDER"):
        resolve_cache(root)
