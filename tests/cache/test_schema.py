from pipeline.cache.schema import IMAGE_ATTRS, RUN_ATTRS, missing_attributes, pixel_checksum

COMPLETE = {key: "x" for key in (*RUN_ATTRS, *IMAGE_ATTRS)}


def test_a_complete_file_lacks_nothing_and_one_without_a_pixel_checksum_lacks_it():
    assert missing_attributes(COMPLETE) == []
    without = {key: value for key, value in COMPLETE.items() if key != "pixels_xxh3"}
    assert missing_attributes(without) == ["pixels_xxh3"]


def test_a_file_written_before_xxh3_carries_its_older_pixel_checksum():
    older = {key: value for key, value in COMPLETE.items() if key != "pixels_xxh3"}
    older["pixels_sha256"] = "a" * 64
    assert missing_attributes(older) == []
    assert pixel_checksum(older) == "a" * 64
    assert pixel_checksum({**older, "pixels_xxh3": "b" * 32}) == "b" * 32  # the newer kind first
    assert pixel_checksum({"image_sha256": "c"}) is None
