import numpy as np
import pytest

from pipeline.cache import store
from pipeline.data.tiling import TilingSettings
from pipeline.errors import CacheError, ConfigError
from pipeline.extract.run import run_extraction
from pipeline.extract.settings import ExtractionSettings
from pipeline.extract.writer import FeatureWriter
from tests.conftest import TINY_SIZE


def _contents(i: int):
    features = np.full((i + 1, 4), i, dtype=np.float32)
    coords = np.arange(2 * (i + 1), dtype=np.int32).reshape(-1, 2)
    coverage = np.linspace(0.5, 1, i + 1, dtype=np.float32)
    return features, coords, coverage, {"image_id": f"train/img_{i:04d}", "n_tiles": i + 1}


@pytest.mark.parametrize("processes", [0, 2])
def test_files_are_written_and_reported_in_order(tmp_path, processes):
    done = []
    with FeatureWriter(processes, max_pending=3, on_done=done.append) as writer:
        paths = [tmp_path / "train" / f"img_{i:04d}.h5" for i in range(7)]
        for i, path in enumerate(paths):
            writer.submit(path, *_contents(i))
        writer.finish()
    assert done == paths
    for i, path in enumerate(paths):
        item = store.read_image_features(path)
        expected = _contents(i)
        np.testing.assert_array_equal(item.features, expected[0])
        np.testing.assert_array_equal(item.coords, expected[1])
        np.testing.assert_array_equal(item.coverage, expected[2])
        assert item.attrs["image_id"] == f"train/img_{i:04d}"


@pytest.mark.parametrize("processes", [0, 1])
def test_a_failed_write_reaches_the_caller_with_its_file_named(tmp_path, processes):
    (tmp_path / "train").write_text("a file where the split folder should be")
    path = tmp_path / "train" / "img_0000.h5"
    with FeatureWriter(processes) as writer:
        # the failure surfaces at the next submit or at finish, whichever comes after the write has failed
        with pytest.raises(CacheError, match=r"img_0000\.h5: cannot write the file .* run again"):
            writer.submit(path, *_contents(0))
            writer.finish()


def test_negative_process_count_is_refused():
    with pytest.raises(ConfigError, match="--write-processes must be 0 or more. Got -1 instead."):
        FeatureWriter(-1)
    with pytest.raises(ConfigError, match="--write-processes must be 0 or more. Got -2 instead."):
        ExtractionSettings(write_processes=-2).validate()


def test_default_is_one_writer_thread():
    assert ExtractionSettings().write_processes == 0


def test_extraction_with_writer_processes_matches_the_thread(make_data, tmp_path, tiny_model):
    root = make_data(n_train=3, n_test=2)
    runs = {}
    for processes in (0, 2):
        settings = ExtractionSettings(
            data_dir=root, out_dir=tmp_path / f"w{processes}", tiling=TilingSettings(tile_size=TINY_SIZE),
            workers=0, batch_size=3, progress=False, write_processes=processes,
        )  # fmt: skip
        runs[processes] = run_extraction(settings, tiny_model)
    assert runs[0].n_embedded == runs[2].n_embedded == 5
    for image in ("train/img_0000", "train/img_0002", "test/img_0001"):
        a = store.read_image_features(runs[0].cache_dir / f"{image}.h5")
        b = store.read_image_features(runs[2].cache_dir / f"{image}.h5")
        np.testing.assert_array_equal(a.features, b.features)
        np.testing.assert_array_equal(a.coords, b.coords)
        assert a.attrs == b.attrs
