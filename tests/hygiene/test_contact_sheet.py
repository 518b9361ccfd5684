import numpy as np
import pytest
from PIL import Image

from pipeline.hygiene.contact_sheet import THUMB, _thumbnail


def _pillow_thumbnail(path):
    """The thumbnail as drawn from Pillow's own decoding (the reference for the fast path)."""
    tile = Image.new("RGB", (THUMB, THUMB), (235, 235, 235))
    with Image.open(path) as opened:
        image = opened.convert("RGB")
    image.thumbnail((THUMB, THUMB))
    tile.paste(image, ((THUMB - image.width) // 2, (THUMB - image.height) // 2))
    return np.asarray(tile)


@pytest.mark.parametrize("mode", ["RGB", "L", "RGBA", "P"])
def test_png_thumbnails_equal_pillows(tmp_path, rng, mode):
    Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).convert(mode).save(tmp_path / "x.png")
    np.testing.assert_array_equal(np.asarray(_thumbnail(tmp_path / "x.png")), _pillow_thumbnail(tmp_path / "x.png"))


def test_unreadable_image_gets_the_grey_square(tmp_path, rng):
    Image.fromarray(rng.integers(0, 256, (300, 400, 3), dtype=np.uint8)).save(tmp_path / "x.png")
    (tmp_path / "cut.png").write_bytes((tmp_path / "x.png").read_bytes()[:2000])
    assert (np.asarray(_thumbnail(tmp_path / "cut.png")) == 235).all()
    assert (np.asarray(_thumbnail(None)) == 235).all()


def test_a_slide_shows_its_thumbnail_not_level0(tmp_path, monkeypatch):
    from benchmarks import slide_maker
    from pipeline.data.slides import Slide

    layout = slide_maker.default_layout(2048, 1024, slide_maker.synthetic_patches())
    path = slide_maker.write_slide(tmp_path / "s.svs", layout, "aperio", mpp=0.5, app_mag=20)
    read, original = [], Slide.read_region
    monkeypatch.setattr(Slide, "read_region", lambda self, *a: read.append(a) or original(self, *a))
    tile = np.asarray(_thumbnail(path))
    with Slide(path) as slide:
        expected = slide.thumbnail(THUMB)
    assert read and all(level > 0 for _, _, level, *_ in read)  # never level 0
    top = (THUMB - expected.shape[0]) // 2
    np.testing.assert_array_equal(tile[top : top + expected.shape[0]], expected)
