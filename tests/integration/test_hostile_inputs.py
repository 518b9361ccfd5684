"""Hostile inputs: every bad image, mask, label file and cache file gives its own specific message (file, problem,
fix), never a traceback or a hang; a long run skips bad images, lists them, and still gives every test image a file.
"""

import io
import logging
import struct
import zlib

import h5py
import numpy as np
import pytest
from PIL import Image

from pipeline import cache
from pipeline.cache import store
from pipeline.classify.labels import join_labels
from pipeline.classify.settings import ClassificationSettings
from pipeline.cli.extract import build_parser
from pipeline.cli.extract import main as extract_main
from pipeline.data.images import DEFAULT_MAX_PIXELS, read_image, read_mask
from pipeline.data.labels import read_labels
from pipeline.data.records import ImageRecord
from pipeline.data.tiling import TilingSettings
from pipeline.errors import CacheError, ImageReadError, LabelsError
from pipeline.extract.decoding import ImageFailure, ImageTiles, TileDataset
from pipeline.extract.run import run_extraction
from pipeline.extract.settings import ExtractionSettings
from pipeline.report.run import classify_and_write
from tests.conftest import TINY_SIZE, random_pixels, write_fake_cache, write_pair

TILING = TilingSettings(tile_size=TINY_SIZE)


def png_bytes(width: int, height: int, rows: bytes, bit_depth: int = 8, colour_type: int = 2) -> bytes:
    """A PNG written by hand, so its header can claim anything (Pillow cannot write 48-bit RGB either)."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF)

    header = struct.pack(">IIBBBBB", width, height, bit_depth, colour_type, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", header) + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b"")


def load_one(image_path, mask_path, max_pixels=DEFAULT_MAX_PIXELS, split="train"):
    """What extraction's data workers make of one image/mask pair: ImageTiles, or ImageFailure with the reason."""
    record = ImageRecord(f"{split}/img_0000", split, image_path.name, image_path, mask_path)
    return TileDataset([record], TILING, max_pixels)[0]


def good_pair(folder, rng, size=(64, 64)):
    width, height = size
    return write_pair(folder, "0000", random_pixels(rng, height, width), np.ones((height, width), bool))


def assert_names_file_and_fix(exc: ImageReadError, path) -> None:
    message = str(exc)
    assert message.startswith(f"{path}: "), message
    assert any(fix in message for fix in ("Re-export", "Replace the file", "--max-pixels")), message


def assert_skipped(item, *fragments):
    assert isinstance(item, ImageFailure), f"expected a failure, got {type(item).__name__}"
    for fragment in fragments:
        assert fragment in item.reason, item.reason


# ---------------------------------------------------------------- images


def test_zero_byte_image(tmp_path, rng):
    image = good_pair(tmp_path, rng)
    image.write_bytes(b"")
    assert_skipped(load_one(image, tmp_path / "mask_0000.png"), "img_0000.png: file is empty (0 bytes)", "Re-export")


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "GIF", "BMP", "WEBP"])
def test_image_truncated_at_random_offsets(tmp_path, fmt):
    generator = np.random.default_rng(7)
    buffer = io.BytesIO()
    Image.fromarray(random_pixels(generator, 48, 48)).save(buffer, format=fmt)
    data = buffer.getvalue()
    path = tmp_path / "img_0000.img"
    outcomes = set()
    for offset in sorted(generator.integers(1, len(data) - 16, size=25)):
        path.write_bytes(data[:offset])
        try:
            read_image(path)
            outcomes.add("decoded")
        except ImageReadError as exc:  # anything else (TypeError, struct.error, ...) fails the test
            assert_names_file_and_fix(exc, path)
            outcomes.add("refused")
    assert "refused" in outcomes


@pytest.mark.parametrize("fmt", ["PNG", "JPEG", "TIFF", "GIF", "BMP", "WEBP"])
def test_image_with_random_bytes_flipped(tmp_path, fmt):
    generator = np.random.default_rng(11)
    buffer = io.BytesIO()
    Image.fromarray(random_pixels(generator, 48, 48)).save(buffer, format=fmt)
    data = buffer.getvalue()
    path = tmp_path / "img_0000.img"
    refused = 0
    for _ in range(60):
        damaged = bytearray(data)
        for index in generator.integers(0, len(data), size=3):
            damaged[index] ^= 1 << int(generator.integers(0, 8))
        path.write_bytes(bytes(damaged))
        try:
            assert read_image(path).pixels.shape[2] == 3  # formats without checksums may decode damaged pixels
        except ImageReadError as exc:
            assert_names_file_and_fix(exc, path)
            refused += 1
    if fmt == "PNG":  # PNG's CRCs and zlib's Adler-32 catch nearly every flipped byte
        assert refused >= 55


def test_text_file_named_png(tmp_path, rng):
    image = good_pair(tmp_path, rng)
    image.write_text("sample_index,label\n")
    assert_skipped(
        load_one(image, tmp_path / "mask_0000.png"),
        "img_0000.png: not a readable image (unknown format or corrupt header)",
        "Replace the file with a PNG, JPEG or TIFF",
    )


def test_decompression_bomb_header_is_refused_before_decoding(tmp_path):
    path = tmp_path / "img_0000.png"
    path.write_bytes(png_bytes(100_000, 100_000, b"\x00" * 301))  # claims 10 Gpx (30 GB of RGB) in 100 bytes
    with pytest.raises(ImageReadError) as info:
        read_image(path)
    assert str(info.value) == (
        f"{path}: the header says 100000x100000 = 10,000,000,000 pixels, above the limit of 250,000,000. If the "
        "image is genuine, raise the limit with --max-pixels."
    )
    assert Image.MAX_IMAGE_PIXELS is not None  # Pillow's own guard is back for other users


def test_max_pixels_flag_raises_the_limit(tmp_path, rng):
    image = good_pair(tmp_path, rng, size=(300, 200))
    assert_skipped(load_one(image, tmp_path / "mask_0000.png", max_pixels=50_000), "--max-pixels")
    assert isinstance(load_one(image, tmp_path / "mask_0000.png", max_pixels=60_000), ImageTiles)
    assert build_parser().parse_args(["--max-pixels", "60000"]).max_pixels == 60_000


def test_48_bit_rgb_png_is_scaled_not_clipped(tmp_path):
    values = np.array([[[0, 255, 256], [65535, 32768, 1000], [65280, 65279, 512]]], dtype=">u2")
    path = tmp_path / "img.png"
    path.write_bytes(png_bytes(3, 1, b"\x00" + values.tobytes(), bit_depth=16, colour_type=2))
    pixels = read_image(path).pixels
    # Pillow keeps the high byte: v // 256, a scaling of the 16-bit range (65535 -> 255), never a clip at 255
    np.testing.assert_array_equal(pixels, values.astype(np.uint32) // 256)


def test_16_bit_grayscale_and_rgba_pngs(tmp_path):
    gray = np.array([[0, 257, 32768, 65535]], dtype=np.uint16)
    Image.fromarray(gray).save(tmp_path / "g.png")
    assert read_image(tmp_path / "g.png").pixels[0, :, 0].tolist() == [0, 1, 128, 255]
    rgba = np.array([[[65535, 0, 0, 65535], [0, 0, 0, 0]]], dtype=">u2")  # opaque red, transparent black
    (tmp_path / "a.png").write_bytes(png_bytes(2, 1, b"\x00" + rgba.tobytes(), bit_depth=16, colour_type=6))
    assert read_image(tmp_path / "a.png").pixels.tolist() == [[[255, 0, 0], [255, 255, 255]]]


def test_palette_grayscale_and_1_bit_pngs(tmp_path):
    palette = Image.new("P", (2, 1))
    palette.putpalette([10, 20, 30, 200, 100, 50])
    palette.putdata([0, 1])
    palette.save(tmp_path / "p.png")
    assert read_image(tmp_path / "p.png").pixels.tolist() == [[[10, 20, 30], [200, 100, 50]]]
    palette.save(tmp_path / "pt.png", transparency=0)  # palette entry 0 transparent: white, as the slide
    assert read_image(tmp_path / "pt.png").pixels.tolist() == [[[255, 255, 255], [200, 100, 50]]]
    Image.fromarray(np.array([[0, 90, 255]], np.uint8)).save(tmp_path / "l.png")
    assert read_image(tmp_path / "l.png").pixels.tolist() == [[[0, 0, 0], [90, 90, 90], [255, 255, 255]]]
    Image.fromarray(np.array([[False, True]])).save(tmp_path / "1.png")
    assert read_image(tmp_path / "1.png").pixels.tolist() == [[[0, 0, 0], [255, 255, 255]]]


def test_rgba_is_composited_onto_white(tmp_path):
    rgba = np.array([[[200, 0, 0, 255], [0, 0, 200, 0], [0, 0, 0, 128]]], dtype=np.uint8)
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert read_image(tmp_path / "a.png").pixels.tolist() == [[[200, 0, 0], [255, 255, 255], [127, 127, 127]]]


def test_cmyk_jpeg_becomes_rgb(tmp_path):
    rgb = np.zeros((16, 16, 3), np.uint8)
    rgb[:8], rgb[8:] = (200, 60, 120), (30, 160, 70)
    Image.fromarray(rgb).convert("CMYK").save(tmp_path / "c.jpg", quality=95)
    assert Image.open(tmp_path / "c.jpg").mode == "CMYK"
    pixels = read_image(tmp_path / "c.jpg").pixels
    assert np.abs(pixels.astype(int) - rgb).max() <= 6


def test_exif_rotation_is_not_applied_to_image_or_mask(tmp_path, rng, caplog):
    exif = Image.Exif()
    exif[0x0112] = 6  # display rotated by 90 degrees
    pixels = random_pixels(rng, 64, 32)  # stored 32 wide, 64 tall
    Image.fromarray(pixels).save(tmp_path / "img_0000.jpg", exif=exif.tobytes(), quality=95)
    Image.fromarray(np.full((64, 32), 255, np.uint8)).save(tmp_path / "mask_0000.png")
    with caplog.at_level(logging.WARNING):
        item = load_one(tmp_path / "img_0000.jpg", tmp_path / "mask_0000.png")
    assert isinstance(item, ImageTiles) and item.image_attrs["image_width"] == 32
    assert item.coords.tolist() == [[0, 0], [0, 32]]  # tiles of the stored layout, not of the rotated one
    assert "img_0000.jpg has EXIF orientation 6; it is not applied" in caplog.text
    # a mask drawn on the displayed (rotated) image has the turned size: refused, with the reason
    Image.fromarray(np.full((32, 64), 255, np.uint8)).save(tmp_path / "mask_0000.png")
    assert_skipped(
        load_one(tmp_path / "img_0000.jpg", tmp_path / "mask_0000.png"),
        "mask_0000.png: mask is 64x32 but its image is 32x64",
        "It is the image turned by 90 degrees: EXIF orientation is not applied",
    )


@pytest.mark.parametrize("suffix", [".tif", ".gif"])
def test_multi_frame_file_uses_its_first_frame(tmp_path, suffix, caplog):
    frames = [Image.fromarray(np.full((8, 8, 3), value, np.uint8)) for value in (40, 220, 130)]
    frames[0].save(tmp_path / f"m{suffix}", save_all=True, append_images=frames[1:])
    with caplog.at_level(logging.WARNING):
        pixels = read_image(tmp_path / f"m{suffix}").pixels
    assert (pixels == 40).all()
    assert f"m{suffix} has several frames (multi-page TIFF or animated GIF); using the first" in caplog.text


def test_header_without_pixels(tmp_path):
    (tmp_path / "z.png").write_bytes(png_bytes(0, 5, b""))
    with pytest.raises(ImageReadError, match="z.png: not a readable image"):
        read_image(tmp_path / "z.png")


# ---------------------------------------------------------------- masks


def test_missing_mask(tmp_path, rng):
    image = good_pair(tmp_path, rng)
    (tmp_path / "mask_0000.png").unlink()
    assert_skipped(
        load_one(image, None),
        "img_0000.png: no mask found (expected mask_0000.png or another image extension next to it)",
        "Add the mask, or remove the image",
    )


def test_missing_mask_of_a_test_image_never_advises_removing_it(tmp_path, rng):
    image = good_pair(tmp_path, rng)
    (tmp_path / "mask_0000.png").unlink()
    failure = load_one(image, None, split="test")
    assert "Add the mask; until then the image gets no features and the submission gives it the majority" in (
        failure.reason
    )
    assert "remove" not in failure.reason


def test_mask_of_another_size(tmp_path, rng):
    image = good_pair(tmp_path, rng, size=(64, 48))
    Image.new("L", (60, 48), 255).save(tmp_path / "mask_0000.png")
    assert_skipped(
        load_one(image, tmp_path / "mask_0000.png"),
        "mask_0000.png: mask is 60x48 but its image is 64x48",
        "re-export the mask at the image's resolution (it is never resized silently)",
    )


def test_all_zero_mask_gets_the_centre_tile_with_a_warning(tmp_path, rng, caplog):
    image = good_pair(tmp_path, rng, size=(96, 64))
    Image.new("L", (96, 64), 0).save(tmp_path / "mask_0000.png")
    with caplog.at_level(logging.WARNING):
        item = load_one(image, tmp_path / "mask_0000.png")
    assert item.image_attrs["fallback"] == "empty_mask" and item.coords.tolist() == [[32, 16]]
    assert "mask_0000.png: mask is empty (no pixel > 0); extraction falls back to the centre tile" in caplog.text


def test_all_one_mask_keeps_every_tile_without_a_warning(tmp_path, rng, caplog):
    image = good_pair(tmp_path, rng, size=(96, 64))
    Image.new("L", (96, 64), 1).save(tmp_path / "mask_0000.png")
    with caplog.at_level(logging.WARNING):
        item = load_one(image, tmp_path / "mask_0000.png")
    assert len(item.coords) == 6 and (item.coverage == 1).all() and item.image_attrs["fallback"] == ""
    assert "mask" not in caplog.text


def test_mask_values_other_than_0_and_255(tmp_path, caplog):
    values = np.array([[0, 1, 7, 128, 255]], np.uint8)
    Image.fromarray(values).save(tmp_path / "m.png")
    with caplog.at_level(logging.WARNING):
        inside = read_mask(tmp_path / "m.png", (5, 1)).inside
    assert inside.tolist() == [[False, True, True, True, True]]
    assert "m.png: mask holds several values above 0 (1 and 255); every pixel > 0 counts as inside" in caplog.text
    assert "threshold it and save it as a 0/255 PNG" in caplog.text
    caplog.clear()
    Image.fromarray(np.array([[0, 1, 1]], np.uint8)).save(tmp_path / "b.png")  # 0/1 masks are binary: no warning
    with caplog.at_level(logging.WARNING):
        assert read_mask(tmp_path / "b.png", (3, 1)).inside.tolist() == [[False, True, True]]
    assert caplog.text == ""


def test_colour_mask(tmp_path, caplog):
    red = np.zeros((1, 3, 3), np.uint8)
    red[0, 1] = (255, 0, 0)
    red[0, 2] = (0, 0, 3)
    Image.fromarray(red).save(tmp_path / "c.png")
    with caplog.at_level(logging.WARNING):
        inside = read_mask(tmp_path / "c.png", (3, 1)).inside
    assert inside.tolist() == [[False, True, True]]  # any channel > 0 is inside
    assert "c.png: mask holds several values above 0 (#000003 and #ff0000)" in caplog.text
    caplog.clear()
    one_colour = np.zeros((2, 2, 3), np.uint8)
    one_colour[0] = (0, 200, 0)
    Image.fromarray(one_colour).save(tmp_path / "g.png")
    with caplog.at_level(logging.WARNING):
        assert read_mask(tmp_path / "g.png", (2, 2)).inside.tolist() == [[True, True], [False, False]]
    assert caplog.text == ""  # one colour on black is a binary mask


def test_long_run_skips_every_bad_input_lists_it_and_keeps_test_images(make_data, tmp_path, tiny_vit_dir, capsys):
    root = make_data(n_train=6, n_test=2)
    train, test = root / "train_data", root / "test_data"
    (train / "img_0000.png").write_bytes(b"")
    (train / "img_0001.png").write_text("not an image")
    data = (train / "img_0002.png").read_bytes()
    (train / "img_0002.png").write_bytes(data[: len(data) // 2])
    (train / "mask_0003.png").unlink()
    Image.new("L", (10, 10)).save(train / "mask_0004.png")
    Image.new("L", (96, 64), 0).save(test / "mask_0001.png")  # empty mask on a test image: still embedded
    # --tissue mask: an image without its mask is skipped (the default, auto, finds its tissue)
    argv = ["--data", str(root), "--model", str(tiny_vit_dir), "--out", str(tmp_path / "f"), "--tile-size", "32",
            "--workers", "1", "--no-progress", "-q", "--tissue", "mask"]
    assert extract_main(argv) == 0
    captured = capsys.readouterr()
    assert "8 images: 3 embedded" in captured.out and "5 skipped" in captured.out
    for image_id, reason in [("train/img_0000", "file is empty"), ("train/img_0001", "not a readable image"),
                             ("train/img_0002", "corrupt or truncated"), ("train/img_0003", "no mask found"),
                             ("train/img_0004", "mask is 10x10 but its image is 96x64")]:
        assert f"skipped {image_id}: " in captured.out and reason in captured.out
    assert "Traceback" not in captured.err
    (cache_dir,) = cache.find_caches(tmp_path / "f")
    attrs = store.read_attrs(cache_dir / "test" / "img_0001.h5")
    assert attrs["fallback"] == "empty_mask" and attrs["n_tiles"] == 1
    assert set(cache.read_skipped(cache_dir)) == {f"train/img_000{i}" for i in range(5)}


# ---------------------------------------------------------------- train_labels.csv


@pytest.fixture
def fake_train(tmp_path):
    cache_dir, labels_path = write_fake_cache(tmp_path, ["a", "b", "a", "b"], n_test=0)
    return cache.load_split(cache_dir, "train"), labels_path


def _join(fake_train, content: bytes):
    train, labels_path = fake_train
    labels_path.write_bytes(content)
    return join_labels(train, read_labels(labels_path), labels_path, {})


def test_labels_with_byte_order_mark(fake_train):
    assert _join(fake_train, b"\xef\xbb\xbfsample_index,label\nimg_0000.png,a\nimg_0001.png,b\nimg_0002.png,a\n"
                 b"img_0003.png,b\n") == ["a", "b", "a", "b"]


def test_labels_with_crlf_line_ends(fake_train):
    assert _join(fake_train, b"sample_index,label\r\nimg_0000.png,a\r\nimg_0001.png,b\r\nimg_0002.png,a\r\n"
                 b"img_0003.png,b\r\n") == ["a", "b", "a", "b"]


def test_labels_with_spaces_around_values(fake_train):
    assert _join(fake_train, b" sample_index , label \n img_0000.png , a \nimg_0001.png,  b\nimg_0002.png ,a\n"
                 b"img_0003.png,b   \n") == ["a", "b", "a", "b"]


def test_labels_saved_by_excel_as_utf16(fake_train):
    text = "sample_index,label\nimg_0000.png,a\nimg_0001.png,b\nimg_0002.png,a\nimg_0003.png,b\n"
    assert _join(fake_train, text.encode("utf-16")) == ["a", "b", "a", "b"]


def test_labels_with_a_duplicated_row(fake_train, caplog):
    content = b"sample_index,label\nimg_0000.png,a\nimg_0001.png,b\nimg_0001.png,b\nimg_0002.png,a\nimg_0003.png,b\n"
    assert _join(fake_train, content) == ["a", "b", "a", "b"]
    assert "img_0001.png is listed twice with the same label; keeping one" in caplog.text


def test_labels_with_one_image_given_two_labels(fake_train):
    with pytest.raises(LabelsError, match=r"img_0001.png has two labels, 'b' and 'a' \(line 4\). Keep one row"):
        _join(fake_train, b"sample_index,label\nimg_0000.png,a\nimg_0001.png,b\nimg_0001.png,a\n")


def test_label_for_an_image_that_does_not_exist(fake_train):
    content = b"sample_index,label\nimg_0000.png,a\nimg_0001.png,b\nimg_0002.png,a\nimg_0003.png,b\nimg_0099.png,a\n"
    with pytest.raises(LabelsError, match=r"lists 1 image\(s\) missing from the cache: img_0099.png\. .*remove"):
        _join(fake_train, content)


def test_image_with_no_label(fake_train):
    with pytest.raises(LabelsError, match=r"1 cached train image\(s\) have no row in .*: img_0003.png. Add their"):
        _join(fake_train, b"sample_index,label\nimg_0000.png,a\nimg_0001.png,b\nimg_0002.png,a\n")


def test_empty_label_file(fake_train):
    with pytest.raises(LabelsError, match="is empty. It needs a header 'sample_index,label' and one row per image"):
        _join(fake_train, b"")


def test_label_file_with_other_column_names(fake_train):
    with pytest.raises(LabelsError, match="must have the columns sample_index,label. Got 'image,subtype' instead. "
                                          "Rename the header row"):
        _join(fake_train, b"image,subtype\nimg_0000.png,a\n")


def test_label_file_without_a_header(fake_train):
    with pytest.raises(LabelsError, match="The first row is data: add the header row sample_index,label above it"):
        _join(fake_train, b"img_0000.png,a\nimg_0001.png,b\n")


def test_label_file_with_semicolons(fake_train):
    with pytest.raises(LabelsError, match="It separates columns with ';'; save it with commas"):
        _join(fake_train, b"sample_index;label\nimg_0000.png;a\n")


def test_label_file_in_another_encoding(fake_train):
    with pytest.raises(LabelsError, match=r"is not UTF-8 text \(byte 0xe9 at offset 32\). Save it as 'CSV UTF-8'"):
        _join(fake_train, "sample_index,label\nimg_0000.png,é\n".encode("latin-1"))


def test_label_quirks_through_classify(tmp_path):
    cache_dir, labels_path = write_fake_cache(tmp_path, ["a"] * 4 + ["b"] * 4, n_test=2, dim=8)
    rows = "".join(f" img_{i:04d}.png , {'a' if i < 4 else 'b'} \r\n" for i in range(8))
    labels_path.write_bytes(("\ufeffsample_index,label\r\n" + rows + "img_0001.png,a\r\n").encode())
    summary, run_dir = classify_and_write(ClassificationSettings(features=cache_dir, folds=2, head="logreg",
                                                                 runs_root=tmp_path / "runs", pictures=False))
    assert summary.classes == ["a", "b"] and (run_dir / "submission.csv").is_file()


# ---------------------------------------------------------------- cache files


def _extract(root, tmp_path, tiny_model):
    settings = ExtractionSettings(data_dir=root, out_dir=tmp_path / "features", tiling=TILING, workers=0,
                                  progress=False)
    return run_extraction(settings, tiny_model)


def _rewrite(path, **changes):
    item = store.read_image_features(path)
    features = changes.pop("features", item.features)
    store.write_image_features(path, features, item.coords, item.coverage, {**item.attrs, **changes})


def _nan(path):
    features = store.read_image_features(path).features.copy()
    features[1, 3] = np.nan
    _rewrite(path, features=features)


def _inf(path):
    features = store.read_image_features(path).features.copy()
    features[0, 0] = -np.inf
    _rewrite(path, features=features)


def _truncate(path):
    data = path.read_bytes()
    path.write_bytes(data[: len(data) - 200])  # the attributes may still read; the data do not


def _flip_a_feature_bit(path):
    features = store.read_image_features(path).features
    data = bytearray(path.read_bytes())
    offset = bytes(data).find(features[1].tobytes())
    assert offset > 0
    data[offset + 5] ^= 0x10  # a silent change of one embedding value, caught by the Fletcher-32 checksum
    path.write_bytes(bytes(data))


def _schema(path):
    with h5py.File(path, "a") as handle:
        handle.attrs["schema_version"] = 99


CORRUPTIONS = {
    "other schema version": (_schema, "cache schema version 99; this version reads 1"),
    "other model": (lambda p: _rewrite(p, model_checksum="0" * 64), "made with other settings (model_checksum)"),
    "other tiling": (lambda p: _rewrite(p, stride=16), "made with other settings (stride)"),
    "damaged attribute": (lambda p: _rewrite(p, preprocessing='{"input_size": 3'), "made with other settings "
                          "(preprocessing)"),
    "NaN embeddings": (_nan, "1 of 128 embedding values are NaN or infinite"),
    "infinite embeddings": (_inf, "1 of 128 embedding values are NaN or infinite"),
    "truncated HDF5": (_truncate, "not a readable feature file"),
    "flipped bit in the embeddings": (_flip_a_feature_bit, "not a readable feature file"),
}


@pytest.mark.parametrize("name", CORRUPTIONS)
def test_bad_cache_file_is_re_embedded_by_extraction(name, make_data, tmp_path, tiny_model, caplog):
    root = make_data(n_train=2, n_test=0)
    cache_dir = _extract(root, tmp_path, tiny_model).cache_dir
    path = cache_dir / "train" / "img_0000.h5"
    reference = store.read_image_features(path)
    corrupt, reason = CORRUPTIONS[name]
    corrupt(path)
    assert cache.stale_reason(path, cache.read_settings(cache_dir), reference.attrs["image_sha256"],
                              reference.attrs["mask_sha256"]).startswith(reason)
    again = _extract(root, tmp_path, tiny_model)
    assert (again.n_embedded, again.n_reused) == (1, 1)
    repaired = store.read_image_features(path)
    np.testing.assert_allclose(repaired.features, reference.features, atol=1e-6)
    assert repaired.attrs == reference.attrs


@pytest.mark.parametrize(
    ("name", "message"),
    [
        ("other schema version", r"img_0002.h5: cache schema version 99; this version reads 1. Re-run extract.py"),
        ("other model", r"mixes settings: 1 train file\(s\) differ .*img_0002.h5 \(model_checksum\). Run extract.py"),
        ("other tiling", r"mixes settings: 1 train file\(s\) differ .*img_0002.h5 \(stride\)"),
        ("damaged attribute", r"mixes settings: 1 train file\(s\) differ .*img_0002.h5 \(preprocessing\)"),
        ("NaN embeddings", r"1 train file\(s\) hold NaN or infinite embeddings: img_0002.h5. Delete them"),
        ("infinite embeddings", r"1 train file\(s\) hold NaN or infinite embeddings: img_0002.h5. Delete them"),
        ("truncated HDF5", r"img_0002.h5: not a readable feature file .*Delete it and run extract.py again"),
        ("flipped bit in the embeddings", r"img_0002.h5: not a readable feature file .*Delete it and run extract"),
    ],
)
def test_classify_refuses_a_bad_cache_file(name, message, tmp_path):
    cache_dir, _ = write_fake_cache(tmp_path, ["a", "b"] * 3, n_test=0, dim=32)
    CORRUPTIONS[name][0](cache_dir / "train" / "img_0002.h5")
    with pytest.raises(CacheError, match=message):
        classify_and_write(ClassificationSettings(features=cache_dir, folds=2, head="logreg",
                                                  runs_root=tmp_path / "runs", pictures=False))
    assert not (tmp_path / "runs").exists()


def test_file_whose_counts_disagree_with_its_attributes(tmp_path):
    cache_dir, _ = write_fake_cache(tmp_path, ["a", "b"] * 3, n_test=0)
    _rewrite(cache_dir / "train" / "img_0001.h5", n_tiles=9)
    with pytest.raises(CacheError, match=r"disagree with themselves: img_0001.h5 \(4 tiles but the attribute n_tiles"):
        cache.load_split(cache_dir, "train")


def test_unreadable_settings_and_skipped_files(tmp_path, caplog):
    cache_dir, _ = write_fake_cache(tmp_path, ["a", "b"] * 3, n_test=0)
    (cache_dir / cache.SKIPPED_FILE).write_text('{"train/img_0009": ')
    assert cache.read_skipped(cache_dir) == {}
    assert "skipped.json is unreadable" in caplog.text and "Run extract.py again to rewrite it" in caplog.text
    (cache_dir / cache.SETTINGS_FILE).write_text("{")
    with pytest.raises(CacheError, match="settings.json: unreadable .*Delete it and run extract.py again"):
        cache.read_settings(cache_dir)
