import numpy as np

from pipeline import cache
from pipeline.cache import store

EXPECTED = {"schema_version": store.SCHEMA_VERSION, "model_checksum": "abc", "preprocessing": {"input_size": 32},
            "precision": "fp32", "tile_size": 32, "stride": 32, "min_coverage": 0.5, "max_tiles": 0, "seed": 0}
IMAGE = {"model": "m", "model_source": "m", "model_revision": "", "image_id": "train/img_0000", "split": "train",
         "sample_index": "img_0000.png", "image_width": 64, "image_height": 64, "image_sha256": "i",
         "mask_sha256": "m", "pixels_sha256": "p", "mask_fraction": 0.5, "fallback": ""}


def _write(path, **attrs):
    store.write_image_features(path, np.ones((2, 4)), np.zeros((2, 2)), np.ones(2), {**EXPECTED, **IMAGE, **attrs})


def test_file_status_tells_re_scoring_from_re_embedding(tmp_path, caplog):
    path = tmp_path / "img_0000.h5"
    assert cache.file_status(path, EXPECTED, "i", "m", 2) == ("embed", "no feature file")
    _write(path, q_version=2)
    assert cache.file_status(path, EXPECTED, "i", "m", 2) == ("current", None)
    assert cache.file_status(path, EXPECTED, "i", "m", 3) == ("rescore", "hygiene scores of version 2, not 3")
    assert cache.file_status(path, EXPECTED, "x", "m", 2) == ("embed", "the image file changed since it was embedded")
    _write(path)  # made before hygiene versions existed: the embeddings are still good
    assert cache.file_status(path, EXPECTED, "i", "m", 2) == ("rescore", "hygiene scores of version none, not 2")
    assert cache.is_up_to_date(path, EXPECTED, "i", "m") and cache.stale_reason(path, EXPECTED, "i", "m") is None
    path.write_bytes(path.read_bytes()[:100])
    assert cache.file_status(path, EXPECTED, "i", "m", 2, warn=False)[0] == "embed" and not caplog.text
    assert cache.file_status(path, EXPECTED, "i", "m", 2)[0] == "embed" and "it will be re-embedded" in caplog.text
