import numpy as np
from PIL import Image

from pipeline import cache
from pipeline.cache import store

EXPECTED = {"schema_version": store.SCHEMA_VERSION, "model_checksum": "abc", "preprocessing": {"input_size": 32},
            "precision": "fp32", "tile_size": 32, "stride": 32, "min_coverage": 0.5, "max_tiles": 0, "seed": 0}
IMAGE = {"model": "m", "model_source": "m", "model_revision": "", "image_id": "train/img_0000", "split": "train",
         "sample_index": "img_0000.png", "image_width": 64, "image_height": 64, "image_sha256": "i",
         "mask_sha256": "m", "pixels_xxh3": "p", "mask_fraction": 0.5, "fallback": ""}


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


def test_a_change_of_the_tissue_detector_re_embeds_detected_tissue_but_not_mask_files(tmp_path, monkeypatch):
    from pipeline.data import slide_input
    from pipeline.data.tissue import TissueSettings

    assert slide_input.tissue_detector(TissueSettings(max_od=0.2)) != slide_input.tissue_detector()  # a threshold
    slide, masked = tmp_path / "slide.h5", tmp_path / "img_0000.h5"
    _write(slide, mask_sha256="", tissue_detector=slide_input.tissue_detector(), q_version=2)
    _write(masked, q_version=2)  # a mask file: no detector
    assert cache.file_status(slide, EXPECTED, "i", "", 2) == ("current", None)
    assert cache.file_status(masked, EXPECTED, "i", "m", 2) == ("current", None)
    monkeypatch.setattr(slide_input, "TISSUE_DETECTOR_VERSION", 2)  # a new detector
    status, reason = cache.file_status(slide, EXPECTED, "i", "", 2)
    assert status == "embed" and "another tissue detector" in reason
    assert cache.file_status(masked, EXPECTED, "i", "m", 2) == ("current", None)
    whole = tmp_path / "whole.h5"  # --tissue all: tiles not placed by the detector, whose change does not matter
    _write(whole, mask_sha256="", tissue="all", tissue_detector="1-old", q_version=2)
    assert cache.file_status(whole, {**EXPECTED, "tissue": "all"}, "i", "", 2) == ("current", None)
    _write(slide, mask_sha256="", q_version=2)  # made before the attribute existed
    assert cache.file_status(slide, EXPECTED, "i", "", 2)[0] == "embed"


def test_the_tile_layout_is_in_the_cache_name_and_identity():
    from pipeline.cache.schema import IDENTITY_KEYS, RUN_ATTRS
    from pipeline.data.tiling import GRID_LAYOUT, TilingSettings

    assert GRID_LAYOUT == "cover-v1" and "grid" in IDENTITY_KEYS and "grid" in RUN_ATTRS
    assert cache.cache_name("phikon", TilingSettings(), "fp32") == "phikon_t224_s224_c0.50_n0_gcover1_fp32"
    assert cache.cache_name("m", TilingSettings(max_tiles=8, seed=3), "bf16") == "m_t224_s224_c0.50_n8_r3_gcover1_bf16"


def test_tissue_mode_and_target_mpp_join_name_and_identity_only_when_not_default(tmp_path):
    from types import SimpleNamespace

    from pipeline.cache.schema import IDENTITY_KEYS, mismatched_keys, run_attributes
    from pipeline.data.tiling import TilingSettings

    assert {"tissue", "target_mpp"} <= set(IDENTITY_KEYS)
    base = cache.cache_name("phikon", TilingSettings(), "fp32", "auto", None)
    assert base == "phikon_t224_s224_c0.50_n0_gcover1_fp32"  # the common case keeps its name
    assert cache.cache_name("phikon", TilingSettings(), "fp32", "all", 0.5) == \
        "phikon_t224_s224_c0.50_n0_tissueall_m0.5_gcover1_fp32"
    model = SimpleNamespace(name="m", source="s", revision="r", checksum="c", dim=8,
                            preprocessing=SimpleNamespace(to_dict=dict, resized_side=224))
    default = run_attributes(model, TilingSettings(), "fp32")
    assert "tissue" not in default and "target_mpp" not in default  # files made before slides keep their identity
    other = run_attributes(model, TilingSettings(), "fp32", "mask", 0.25)
    assert sorted(mismatched_keys(other, default)) == ["target_mpp", "tissue"]
    cache.write_tissue_mask(tmp_path / "tissue", "train/a", np.eye(3, dtype=bool))
    assert np.array_equal(np.asarray(Image.open(tmp_path / "tissue" / "train" / "a.png")).astype(bool), np.eye(3))
    cache.write_tissue_mask(None, "train/b", np.eye(3, dtype=bool))  # nowhere to save: nothing written


def test_a_file_made_before_the_tile_layout_existed_reads_and_is_re_embedded(tmp_path):
    path = tmp_path / "img_0000.h5"
    _write(path, q_version=2)  # no "grid" attribute, as every file made before it
    assert "grid" not in store.read_image_features(path).attrs
    current = {**EXPECTED, "grid": "cover-v1"}
    assert cache.mismatched_keys(store.read_image_features(path).attrs, current) == ["grid"]
    assert cache.file_status(path, current, "i", "m", 2) == ("embed", "made with other settings (grid)")
    assert cache.file_status(path, EXPECTED, "i", "m", 2) == ("current", None)  # an old cache stays readable as such


def test_resized_tiles_are_part_of_the_preprocessing_identity():
    # tiles resized by Pillow in the workers differ from caches whose device resized them: never the same cache
    from pipeline.cache.schema import preprocessing_attribute
    from pipeline.embed.preprocessing import Preprocessing

    preprocessing = Preprocessing(224, interpolation="bilinear")
    assert preprocessing_attribute(preprocessing, 224) == preprocessing.to_dict()
    assert preprocessing_attribute(preprocessing, 448) == {**preprocessing.to_dict(), "resized_by": "pillow"}
    gigapath = Preprocessing(224, interpolation="bicubic", resize_size=256)
    assert "resized_by" in preprocessing_attribute(gigapath, 224)  # resized to 256, then cropped
    assert "resized_by" not in preprocessing_attribute(gigapath, 256)
