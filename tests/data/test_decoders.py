import io
import threading
import warnings

import imagecodecs
import numpy as np
import pytest
from PIL import Image

from pipeline.data import decoders
from pipeline.data.decoders import fast_pixels, header_size, open_unchecked
from pipeline.data.images import read_image, read_mask

EXIF_ROTATED = 6  # "rotate 90 degrees clockwise to display"


def _he_like(rng, height=37, width=53):
    """(H, W, 3) uint8: smooth pink/purple gradients plus noise, so JPEG blocks and PNG filters both get work."""
    yy, xx = np.mgrid[0:height, 0:width]
    base = np.stack([200 + 40 * np.sin(xx / 7), 120 + 60 * np.cos(yy / 5), 190 + 30 * np.sin((xx + yy) / 9)], -1)
    return np.clip(base + rng.normal(0, 12, base.shape), 0, 255).astype(np.uint8)


def _exif(orientation):
    exif = Image.Exif()
    exif[0x0112] = orientation
    return exif


def _save(image, **options):
    def write(path):
        image.save(path, **options)

    return write


def _cases(rng):
    """name -> (file name, writer): every format and mode the data layer reads, and whether the fast path takes it."""
    rgb = Image.fromarray(_he_like(rng))
    grey = rgb.convert("L")
    rgba = rgb.convert("RGBA")
    rgba.putalpha(Image.fromarray(rng.integers(0, 256, rgb.size[::-1], dtype=np.uint8)))
    rgb16 = (_he_like(rng).astype(np.uint16) * 257 + rng.integers(0, 257, (37, 53, 3))).astype(np.uint16)
    grey16 = Image.fromarray((np.asarray(grey).astype(np.uint16) * 250).astype(np.uint16))
    frames = [rgb, rgb.transpose(Image.Transpose.FLIP_LEFT_RIGHT)]

    def raw(data):
        return lambda path: path.write_bytes(data)

    return {
        "png-rgb": ("x.png", _save(rgb), True),
        "png-rgb-level9": ("x.png", _save(rgb, compress_level=9), True),
        "png-grey": ("x.png", _save(grey), True),
        "png-grey-exif-rotated": ("x.png", _save(grey, exif=_exif(EXIF_ROTATED)), True),
        "png-rgb-exif-rotated": ("x.png", _save(rgb, exif=_exif(EXIF_ROTATED)), True),
        "png-rgb-transparent-colour": ("x.png", _save(rgb, transparency=tuple(np.asarray(rgb)[0, 0].tolist())), False),
        "png-grey-transparent-value": ("x.png", _save(grey, transparency=int(np.asarray(grey)[0, 0])), False),
        "png-rgba": ("x.png", _save(rgba), False),
        "png-grey-alpha": ("x.png", _save(rgba.convert("LA")), False),
        "png-palette": ("x.png", _save(rgb.convert("P", palette=Image.Palette.ADAPTIVE)), False),
        "png-palette-transparent": ("x.png", _save(rgb.convert("P"), transparency=0), False),
        "png-1-bit": ("x.png", _save(grey.point(lambda v: 255 if v > 128 else 0).convert("1")), False),
        "png-16-bit-grey": ("x.png", _save(grey16), False),
        "png-16-bit-rgb": ("x.png", raw(imagecodecs.png_encode(rgb16)), False),
        "png-animated": ("x.png", _save(frames[0], save_all=True, append_images=frames[1:]), False),
        "jpeg-rgb": ("x.jpg", _save(rgb, quality=90), True),
        "jpeg-rgb-444": ("x.jpg", _save(rgb, quality=95, subsampling=0), True),
        "jpeg-progressive": ("x.jpg", _save(rgb, progressive=True, optimize=True), True),
        "jpeg-grey": ("x.jpg", _save(grey), True),
        "jpeg-exif-rotated": ("x.jpg", _save(rgb, exif=_exif(EXIF_ROTATED)), True),
        "jpeg-libjpeg-turbo": ("x.jpg", raw(imagecodecs.jpeg8_encode(np.asarray(rgb), level=85)), True),
        "jpeg-cmyk": ("x.jpg", _save(rgb.convert("CMYK")), False),
        "tiff-rgb": ("x.tif", _save(rgb), False),
        "tiff-deflate": ("x.tif", _save(rgb, compression="tiff_adobe_deflate"), False),
        "tiff-16-bit-grey": ("x.tif", _save(grey16), False),
        "tiff-multi-page": ("x.tif", _save(frames[0], save_all=True, append_images=frames[1:]), False),
        "gif": ("x.gif", _save(rgb.convert("P")), False),
        "bmp": ("x.bmp", _save(rgb), False),
        "webp-lossless": ("x.webp", _save(rgb, lossless=True), False),
    }


CASES = sorted(_cases(np.random.default_rng(0)))


@pytest.fixture
def case_file(tmp_path, request):
    name, write, fast = _cases(np.random.default_rng(0))[request.param]
    path = tmp_path / name
    write(path)
    return path, fast


@pytest.mark.parametrize("case_file", CASES, indirect=True)
def test_fast_path_gives_pillows_pixels(case_file, monkeypatch):
    path, fast = case_file
    data = path.read_bytes()
    assert (fast_pixels(open_unchecked(io.BytesIO(data)), data) is not None) == fast  # the fast path is taken
    decoded = read_image(path)
    height, width = decoded.pixels.shape[:2]
    mask = read_mask(path, (width, height))
    monkeypatch.setattr(decoders, "FAST_DECODERS", False)
    pillow = read_image(path)
    np.testing.assert_array_equal(decoded.pixels, pillow.pixels)
    assert (decoded.file_sha256, decoded.pixels_xxh3) == (pillow.file_sha256, pillow.pixels_xxh3)
    np.testing.assert_array_equal(mask.inside, read_mask(path, (width, height)).inside)


def test_fast_path_pixels_of_an_rgb_png_are_the_written_ones(tmp_path, rng):
    pixels = _he_like(rng)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    np.testing.assert_array_equal(read_image(tmp_path / "x.png").pixels, pixels)


@pytest.mark.parametrize("name", ["png-rgb-exif-rotated", "jpeg-exif-rotated"])
def test_exif_orientation_is_reported_not_applied_on_the_fast_path(tmp_path, caplog, name):
    file_name, write, _ = _cases(np.random.default_rng(0))[name]
    write(tmp_path / file_name)
    with caplog.at_level("WARNING"):
        pixels = read_image(tmp_path / file_name).pixels
    assert pixels.shape == (37, 53, 3)  # as stored, not turned
    assert "EXIF orientation 6; it is not applied" in caplog.text


def test_truncated_files_fall_back_to_pillows_message(tmp_path, rng):
    for suffix in ("png", "jpg"):
        Image.fromarray(_he_like(rng, 64, 64)).save(tmp_path / f"full.{suffix}")
        data = (tmp_path / f"full.{suffix}").read_bytes()
        (tmp_path / f"cut.{suffix}").write_bytes(data[: len(data) // 2])
        with pytest.raises(Exception, match=f"cut.{suffix}: image data is corrupt or truncated"):
            read_image(tmp_path / f"cut.{suffix}")


def test_pillows_pixel_limit_is_neither_used_nor_changed(tmp_path, rng, monkeypatch):
    Image.fromarray(_he_like(rng, 300, 200)).save(tmp_path / "x.png")  # 60,000 pixels
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # Pillow alone would refuse it
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # no DecompressionBombWarning either
        assert read_image(tmp_path / "x.png").pixels.shape == (300, 200, 3)
        assert header_size(str(tmp_path / "x.png")) == (200, 300)
    assert Image.MAX_IMAGE_PIXELS == 1000


def test_other_threads_keep_pillows_limit_while_images_are_read(tmp_path, rng, monkeypatch):
    Image.fromarray(_he_like(rng, 300, 200)).save(tmp_path / "x.png")
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)  # 2 x 1000 < 60,000: Image.open must refuse it
    refused, errors = [], []

    def ours():
        for _ in range(30):
            read_image(tmp_path / "x.png")

    def theirs():
        for _ in range(200):
            try:
                Image.open(tmp_path / "x.png").close()
                refused.append(False)
            except Image.DecompressionBombError:
                refused.append(True)
            except Exception as exc:  # noqa: BLE001 - reported below
                errors.append(exc)

    threads = [threading.Thread(target=ours) for _ in range(3)] + [threading.Thread(target=theirs)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert not errors and len(refused) == 200 and all(refused)


def test_without_imagecodecs_pillow_decodes_everything(tmp_path, rng, monkeypatch):
    pixels = _he_like(rng)
    Image.fromarray(pixels).save(tmp_path / "x.png")
    monkeypatch.setattr(decoders, "FAST_DECODERS", False)
    data = (tmp_path / "x.png").read_bytes()
    assert fast_pixels(open_unchecked(io.BytesIO(data)), data) is None
    np.testing.assert_array_equal(read_image(tmp_path / "x.png").pixels, pixels)
