"""Extraction settings: --tissue and --target-mpp, checked, and the slide tiles' scale from the encoder table."""

import pytest

from pipeline.errors import ConfigError
from pipeline.extract.settings import ExtractionSettings, slide_target_mpp


def test_tissue_and_target_mpp_are_checked_and_mpp_is_kept_for_slides():
    assert ExtractionSettings().tissue == "auto" and ExtractionSettings().target_mpp is None
    with pytest.raises(ConfigError, match="--tissue must be one of auto, mask, all. Got 'some' instead."):
        ExtractionSettings(tissue="some").validate()
    with pytest.raises(ConfigError, match="--target-mpp must be .* Got 0.0 instead."):
        ExtractionSettings(target_mpp=0.0).validate()
    resolved = ExtractionSettings(model="phikon", mpp=0.25).resolved()
    assert resolved.mpp is None and resolved.input_mpp == 0.25 and resolved.tiling.tile_size == 448
    assert resolved.resolved() == resolved  # idempotent


def test_slide_tiles_take_the_encoders_scale_unless_given():
    assert slide_target_mpp("phikon", None) == 0.5  # trained at 20x
    assert slide_target_mpp("virchow2", None) == 0.5  # trained at 40x-5x: 20x
    assert slide_target_mpp("phikon", 1.0) == 1.0
    assert slide_target_mpp("/my/own/model", None) is None  # outside the table: tiles of --tile-size level-0 px
