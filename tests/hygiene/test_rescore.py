import numpy as np
import pytest

from pipeline.cache import store
from pipeline.data.records import find_records
from pipeline.hygiene import rescore
from pipeline.hygiene.checks import QUALITY_VERSION


def _old_cache(root, tmp_path):
    """One file per image with the image's checksum and hygiene attributes of version 1."""
    records = find_records(root)
    paths = []
    for k, record in enumerate(records):
        sha = rescore.score_image(record, 10**8)[0]
        path = tmp_path / "cache" / f"{record.image_id}.h5"
        store.write_image_features(path, np.full((2, 4), k, np.float32), np.zeros((2, 2)), np.ones(2),
                                   {"image_sha256": sha, "q_he_fraction": 0.5, "phashes": ["0" * 16] * 8})
        paths.append(path)
    return records, paths


def test_files_get_current_scores_and_keep_their_arrays(make_data, tmp_path):
    records, paths = _old_cache(make_data(n_train=3, n_test=1), tmp_path)
    done = rescore.rescore_files(records, paths, 10**8, progress=False)
    assert sorted(done.fresh) == sorted(r.image_id for r in records) and not done.failed
    for k, path in enumerate(paths):
        item = store.read_image_features(path)
        np.testing.assert_array_equal(item.features, np.full((2, 4), k, np.float32))
        assert item.attrs["q_version"] == QUALITY_VERSION and "q_he_fraction" not in item.attrs
        assert item.attrs == done.fresh[records[k].image_id][0] and item.attrs["image_sha256"]
        np.testing.assert_allclose(done.fresh[records[k].image_id][1], np.full(4, k))


def test_changed_or_unreadable_images_are_left_alone(make_data, tmp_path, caplog):
    root = make_data(n_train=3, n_test=0)
    records, paths = _old_cache(root, tmp_path)
    (root / "train_data" / "img_0000.png").write_bytes(b"broken")
    store.update_attributes(paths[1], {"image_sha256": "another image"})
    before = [path.read_bytes() for path in paths[:2]]
    done = rescore.rescore_files(records, paths, 10**8, progress=False)
    assert list(done.fresh) == ["train/img_0002"]
    assert "not a readable image" in done.failed["train/img_0000"]
    assert done.failed["train/img_0001"] == "the image file changed since it was embedded"
    assert [path.read_bytes() for path in paths[:2]] == before
    assert "could not re-score train/img_0000" in caplog.text


@pytest.mark.slow
def test_many_files_are_scored_in_processes(make_data, tmp_path, monkeypatch):
    records, paths = _old_cache(make_data(n_train=4, n_test=0), tmp_path)
    monkeypatch.setattr(rescore, "MIN_FILES_FOR_PROCESSES", 2)
    serial = {path: rescore.score_image(record, 10**8) for record, path in zip(records, paths, strict=True)}
    done = rescore.rescore_files(records, paths, 10**8, workers=2, progress=False)
    assert len(done.fresh) == 4
    for path, (_, expected) in serial.items():
        attrs = store.read_attrs(path)
        assert {key: attrs[key] for key in expected} == {**expected, "phashes": attrs["phashes"]}
        assert attrs["phashes"] == store.attrs_as_stored(expected)["phashes"]
