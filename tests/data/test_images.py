import numpy as np
import pytest
from PIL import Image

from pipeline.data.images import pixels_xxh3, read_image, read_mask
from pipeline.errors import ImageReadError


@pytest.mark.parametrize("mode", ["RGB", "RGBA", "L", "P", "CMYK"])
def test_any_mode_becomes_rgb(tmp_path, rng, mode):
    rgb = rng.integers(0, 256, size=(20, 30, 3), dtype=np.uint8)
    image = Image.fromarray(rgb)
    image = image.convert(mode) if mode != "RGBA" else image.convert("RGBA")
    path = tmp_path / ("x.jpg" if mode == "CMYK" else "x.png")
    image.save(path)
    decoded = read_image(path)
    assert decoded.pixels.shape == (20, 30, 3) and decoded.pixels.dtype == np.uint8
    if mode in ("RGB", "RGBA"):
        np.testing.assert_array_equal(decoded.pixels, rgb)


def test_transparent_pixels_become_white(tmp_path):
    rgba = np.zeros((4, 4, 4), dtype=np.uint8)
    rgba[..., 3] = 0
    Image.fromarray(rgba, "RGBA").save(tmp_path / "a.png")
    assert (read_image(tmp_path / "a.png").pixels == 255).all()


def test_16_bit_grayscale_is_scaled(tmp_path):
    values = np.full((5, 5), 65535, dtype=np.uint16)
    values[0, 0] = 0
    Image.fromarray(values).save(tmp_path / "g.png")
    pixels = read_image(tmp_path / "g.png").pixels
    assert pixels[1, 1].tolist() == [255, 255, 255] and pixels[0, 0].tolist() == [0, 0, 0]


def test_pixel_checksum_ignores_encoding(tmp_path, rng):
    rgb = rng.integers(0, 256, size=(16, 16, 3), dtype=np.uint8)
    Image.fromarray(rgb).save(tmp_path / "a.png")
    Image.fromarray(rgb).save(tmp_path / "b.png", compress_level=9)
    a, b = read_image(tmp_path / "a.png"), read_image(tmp_path / "b.png")
    assert a.pixels_xxh3 == b.pixels_xxh3


def test_mask_values_above_zero_are_inside(tmp_path):
    values = np.array([[0, 1, 128, 255]], dtype=np.uint8)
    Image.fromarray(values).save(tmp_path / "m.png")
    Image.fromarray(values > 0).save(tmp_path / "m1.png")  # 1-bit
    np.testing.assert_array_equal(read_mask(tmp_path / "m.png", (4, 1)).inside, [[False, True, True, True]])
    np.testing.assert_array_equal(read_mask(tmp_path / "m1.png", (4, 1)).inside, [[False, True, True, True]])


def test_empty_file(tmp_path):
    (tmp_path / "e.png").write_bytes(b"")
    with pytest.raises(ImageReadError, match=r"e.png: file is empty \(0 bytes\)"):
        read_image(tmp_path / "e.png")


def test_text_named_png(tmp_path):
    (tmp_path / "t.png").write_text("hello")
    with pytest.raises(ImageReadError, match="t.png: not a readable image"):
        read_image(tmp_path / "t.png")


def test_truncated_png(tmp_path, rng):
    Image.fromarray(rng.integers(0, 256, size=(64, 64, 3), dtype=np.uint8)).save(tmp_path / "full.png")
    data = (tmp_path / "full.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(data[: len(data) // 2])
    with pytest.raises(ImageReadError, match="cut.png: image data is corrupt or truncated"):
        read_image(tmp_path / "cut.png")


def test_missing_file(tmp_path):
    with pytest.raises(ImageReadError, match="gone.png: file not found"):
        read_image(tmp_path / "gone.png")


def test_oversized_header_is_refused_before_decoding(tmp_path):
    Image.new("L", (300, 200)).save(tmp_path / "big.png")
    with pytest.raises(ImageReadError, match=r"300x200 = 60,000 pixels, above the limit of 1,000.*--max-pixels"):
        read_image(tmp_path / "big.png", max_pixels=1000)


def test_mask_of_wrong_size_names_both_sizes(tmp_path):
    Image.new("L", (10, 20)).save(tmp_path / "mask_0000.png")
    with pytest.raises(ImageReadError, match="mask_0000.png: mask is 10x20 but its image is 30x20"):
        read_mask(tmp_path / "mask_0000.png", (30, 20))


def test_pixel_checksum_tells_pixels_and_shapes_apart(rng):
    rgb = rng.integers(0, 256, size=(8, 12, 3), dtype=np.uint8)
    changed = rgb.copy()
    changed[3, 4, 1] ^= 1
    assert len(pixels_xxh3(rgb)) == 32 and pixels_xxh3(rgb) == pixels_xxh3(rgb.copy())
    assert pixels_xxh3(changed) != pixels_xxh3(rgb)
    assert pixels_xxh3(rgb.reshape(12, 8, 3)) != pixels_xxh3(rgb)  # the same bytes in another shape
    assert pixels_xxh3(rgb[:, ::-1]) == pixels_xxh3(np.ascontiguousarray(rgb[:, ::-1]))  # a view: its values
