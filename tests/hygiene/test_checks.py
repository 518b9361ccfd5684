import io

import numpy as np
from PIL import Image, ImageDraw

from pipeline.hygiene.checks import colour_statistics, dihedral_phashes, hamming, image_quality
from tests.conftest import random_pixels


def _h_and_e(rng, height=200, width=300):
    """Pink eosin background with purple nuclei, with grain."""
    pixels = np.zeros((height, width, 3), np.int16) + np.array([230, 150, 200])
    ys, xs = np.mgrid[:height, :width]
    for cy, cx in rng.integers(0, [height, width], size=(40, 2)):
        pixels[(ys - cy) ** 2 + (xs - cx) ** 2 < 60] = [110, 60, 160]
    return np.clip(pixels + rng.integers(-12, 12, size=pixels.shape), 0, 255).astype(np.uint8)


def _cartoon():
    image = Image.new("RGB", (300, 200), (255, 255, 255))
    draw = ImageDraw.Draw(image)
    draw.ellipse((40, 20, 200, 180), fill=(255, 210, 0), outline=(0, 0, 0), width=4)
    draw.rectangle((180, 60, 290, 150), fill=(40, 120, 230))
    return np.asarray(image)


def test_tissue_and_cartoon_statistics(rng):
    inside = np.ones((200, 300), bool)
    tissue = colour_statistics(_h_and_e(rng), inside)
    cartoon = colour_statistics(_cartoon(), inside)
    assert tissue["he_fraction"] > 0.9 and tissue["off_hue_fraction"] < 0.001 and tissue["flat_fraction"] < 0.05
    assert cartoon["off_hue_fraction"] > 0.2 and cartoon["flat_fraction"] > 0.8
    assert tissue["green_fraction"] == 0.0 and cartoon["green_fraction"] == 0.0


def test_green_blob_inside_the_mask_counts_only_inside(rng):
    pixels = _h_and_e(rng)
    pixels[20:60, 20:60] = [40, 170, 60]  # a green blob, 1,600 px
    inside = np.zeros((200, 300), bool)
    inside[:100, :100] = True
    assert abs(colour_statistics(pixels, inside)["green_fraction"] - 0.16) < 0.02
    outside = ~inside
    assert colour_statistics(pixels, outside)["green_fraction"] == 0.0


def test_empty_mask_uses_the_whole_image(rng):
    stats = colour_statistics(_h_and_e(rng), np.zeros((200, 300), bool))
    assert stats["he_fraction"] > 0.9


def test_hashes_find_flips_rotations_resizes_and_jpeg(rng):
    pixels = _h_and_e(rng, 240, 320)
    original = np.array([int(h, 16) for h in dihedral_phashes(pixels)], dtype=np.uint64)
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, "JPEG", quality=75)
    copies = {
        "flip": pixels[:, ::-1],
        "rot90": np.rot90(pixels),
        "rot270+flip": np.rot90(pixels, 3)[::-1],
        "resized": np.asarray(Image.fromarray(pixels).resize((256, 192))),
        "jpeg": np.asarray(Image.open(buffer)),
    }
    for name, copy in copies.items():
        identity = np.uint64(int(dihedral_phashes(np.ascontiguousarray(copy))[0], 16))
        assert hamming(identity, original).min() <= 6, name
    other = np.uint64(int(dihedral_phashes(_h_and_e(np.random.default_rng(5), 240, 320))[0], 16))
    assert hamming(other, original).min() > 10


def test_hamming_counts_bits():
    assert hamming(np.uint64(0b1011), np.array([0, 0b1000], dtype=np.uint64)).tolist() == [3, 2]


def test_image_quality_attrs_are_storable(rng):
    attrs = image_quality(random_pixels(rng, 64, 64), np.ones((64, 64), bool))
    assert set(attrs) == {"q_he_fraction", "q_off_hue_fraction", "q_green_fraction", "q_flat_fraction",
                          "q_white_fraction", "phashes"}
    assert len(attrs["phashes"]) == 8 and all(len(h) == 16 for h in attrs["phashes"])
