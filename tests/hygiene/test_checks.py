import io

import numpy as np
from PIL import Image

from benchmarks import stain_variants as variants
from pipeline.hygiene.checks import QUALITY_VERSION, SCORES, dihedral_phashes, hamming, image_quality, is_scored
from pipeline.hygiene.stain import stain_scores
from tests.conftest import random_pixels
from tests.hygiene.test_stain import h_and_e


def _hash(pixels, masked=True):
    found = stain_scores(pixels, np.ones(pixels.shape[:2], bool))
    ink = found.ink if masked else None
    return np.array([int(h, 16) for h in dihedral_phashes(pixels, ink, found.step)], dtype=np.uint64)


def test_hashes_find_flips_rotations_resizes_and_jpeg(rng):
    pixels = h_and_e(rng, 240, 320)
    original = _hash(pixels)
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
        assert hamming(_hash(np.ascontiguousarray(copy))[0], original).min() <= 6, name
    other = _hash(h_and_e(np.random.default_rng(5), 240, 320))[0]
    assert hamming(other, original).min() > 10


def test_without_ink_the_hash_is_the_plain_one(rng):
    pixels = h_and_e(rng, 240, 320)
    assert np.array_equal(_hash(pixels), _hash(pixels, masked=False))


def test_ink_is_left_out_of_the_hash():
    # a dark green blob on pale tissue moves the plain hash far; the masked hash keeps the copy linked
    rng = np.random.default_rng(0)
    pixels = h_and_e(rng, 400, 600).astype(np.int16)
    yy, xx = np.mgrid[:400, :600]
    for cy, cx, radius in zip(rng.integers(0, 400, 8), rng.integers(0, 600, 8), rng.integers(30, 90, 8), strict=True):
        pixels[(yy - cy) ** 2 + (xx - cx) ** 2 < radius**2] -= 50  # glands: structure the hash can hold on to
    pixels = variants.fade(np.clip(pixels, 0, 255).astype(np.uint8), 0.5)
    inked = pixels.copy()
    inked[(yy - 150) ** 2 + (xx - 220) ** 2 < 40**2] = [50, 160, 70]
    plain = hamming(_hash(inked, masked=False)[0], _hash(pixels, masked=False)).min()
    masked = hamming(_hash(inked)[0], _hash(pixels)).min()
    assert plain > 10 and masked <= 6, (plain, masked)


def test_hamming_counts_bits():
    assert hamming(np.uint64(0b1011), np.array([0, 0b1000], dtype=np.uint64)).tolist() == [3, 2]


def test_image_quality_attrs_are_storable_and_versioned(rng):
    attrs = image_quality(random_pixels(rng, 64, 64), np.ones((64, 64), bool))
    assert set(attrs) == {"q_version", *SCORES, "phashes"} and attrs["q_version"] == QUALITY_VERSION
    assert all(isinstance(attrs[key], float) for key in SCORES)
    assert len(attrs["phashes"]) == 8 and all(len(h) == 16 for h in attrs["phashes"])
    assert is_scored(attrs) and not is_scored({**attrs, "q_version": QUALITY_VERSION - 1})
    assert not is_scored({"phashes": attrs["phashes"], "q_off_hue_fraction": 0.0})  # a cache of version 1


def test_hashes_on_the_thumbnail_grid_keep_copies_close_and_real_images_apart(glas15, lung):
    # The margins the duplicate threshold (10 bits) relies on, on real H&E: the stain thumbnail's grid alone put a
    # flipped rotation 10 bits from its original; twice as dense keeps copies within 4, distinct images >= 16 apart.
    paths = sorted(glas15.glob("train_data/img_*.png")) + sorted(lung.glob("train_data/img_*"))[::40]

    def hashes(pixels):
        return np.array([int(h, 16) for h in image_quality(pixels, np.ones(pixels.shape[:2], bool))["phashes"]],
                        dtype=np.uint64)

    originals = []
    for path in paths:
        pixels = np.asarray(Image.open(path).convert("RGB"))
        originals.append(hashes(pixels))
        for copy in (np.rot90(pixels, 3)[::-1], pixels[:, ::-1], np.asarray(Image.fromarray(pixels).resize(
                (pixels.shape[1] * 4 // 5, pixels.shape[0] * 4 // 5)))):
            assert hamming(hashes(np.ascontiguousarray(copy))[0], originals[-1]).min() <= 5, path.name
    nearest = [min(int(hamming(first[0], second).min()) for j, second in enumerate(originals) if j != i)
               for i, first in enumerate(originals)]
    assert min(nearest) >= 14


def test_hamming_without_bitwise_count_counts_the_same(monkeypatch):
    rng = np.random.default_rng(3)
    first = rng.integers(0, 2**63, size=(5, 1), dtype=np.uint64)
    second = rng.integers(0, 2**63, size=(1, 8), dtype=np.uint64)
    expected = np.array([[bin(int(a) ^ int(b)).count("1") for b in second[0]] for a in first[:, 0]])
    if hasattr(np, "bitwise_count"):
        assert hamming(first, second).tolist() == expected.tolist()
        monkeypatch.delattr(np, "bitwise_count")  # numpy 1.x: a byte table
    assert hamming(first, second).tolist() == expected.tolist()
