"""The acceptance test's dataset: 25 real H&E images (optionally stain-varied) with the challenge's dirt planted.

Written in the challenge layout (``train_data/img_XXXX.png`` + ``mask_XXXX.png``, ``test_data/``,
``train_labels.csv``) by :func:`build_dirty_dataset`, which returns the flags each image must raise. Used by
tests/integration/test_hygiene_acceptance.py and benchmarks/hygiene_outliers.py.
"""

from __future__ import annotations

import io

import numpy as np
from PIL import Image

from benchmarks import stain_variants as variants

LUNG_CLEAN = (0, 1, 2, 3, 4, 6, 7, 8, 9, 10)  # mutually distinct lc25000 images (no near-duplicate among them)


class Planter:
    def __init__(self, root):
        self.root, self.labels, self.expected = root, [], {}
        self.counts = {"train": 0, "test": 0}

    def add(self, split, pixels, mask, label="benign", flags=(), image_ext=".png", save_kwargs=None):
        index = self.counts[split]
        self.counts[split] += 1
        folder = self.root / f"{split}_data"
        folder.mkdir(parents=True, exist_ok=True)
        name = f"img_{index:04d}{image_ext}"
        Image.fromarray(np.ascontiguousarray(pixels)).save(folder / name, **(save_kwargs or {}))
        Image.fromarray(np.ascontiguousarray(mask)).save(folder / f"mask_{index:04d}.png")
        if split == "train":
            self.labels.append(f"{name},{label}")
        self.expected[f"{split}/img_{index:04d}"] = set(flags)
        return f"{split}/img_{index:04d}"


def _read(path):
    return np.asarray(Image.open(path).convert("RGB")), np.asarray(Image.open(str(path).replace("img_", "mask_")
                                                                               .rsplit(".", 1)[0] + ".png"))


def build_dirty_dataset(root, glas15, lung, transform=None):
    """The challenge's kinds of dirt planted among 25 real images; ``transform(i, pixels, mask)`` changes each real
    image first (a stain variant), so that the copies are made from the changed images."""

    def source(i, pixels, mask):
        return (pixels, mask) if transform is None else transform(i, pixels, mask)

    planter = Planter(root)
    glas_labels = dict(line.split(",") for line in (glas15 / "train_labels_binary.csv").read_text().split()[1:])
    glas = {name: source(k, *_read(glas15 / "train_data" / name)) for k, name in enumerate(sorted(glas_labels))}
    for name, (pixels, mask) in glas.items():
        planter.add("train", pixels, mask, glas_labels[name])
    lung_images = {i: source(len(glas) + k, *_read(lung / "train_data" / f"img_{i:04d}.jpg"))
                   for k, i in enumerate(LUNG_CLEAN)}
    for pixels, mask in lung_images.values():
        planter.add("train", pixels, mask, label="benign")
    for i in range(3):
        planter.add("test", *source(len(glas) + len(LUNG_CLEAN) + i, *_read(glas15 / "test_data" / f"img_{i:04d}.png")))
    names = list(glas)
    # non-histology pictures sharing one mask
    for drawing in variants.cartoons():
        planter.add("train", drawing, variants.cartoon_mask(), "malignant", {"non_tissue", "shared_mask"})
    # green blobs pasted inside the mask of copies of two images (so each copy is also a near duplicate)
    for name in (names[1], names[4]):
        planter.expected[f"train/img_{names.index(name):04d}"].add("near_duplicate")
        pixels, mask = glas[name]
        planter.add("train", variants.green_blob(pixels, mask), mask, glas_labels[name], {"ink", "near_duplicate"})
    # exact copies: the same file, and the same pixels in other bytes
    pixels, mask = glas[names[6]]
    planter.expected["train/img_0006"].add("exact_duplicate")
    planter.add("train", pixels, mask, glas_labels[names[6]], {"exact_duplicate"})
    planter.add("train", pixels, mask, glas_labels[names[6]], {"exact_duplicate"}, save_kwargs={"compress_level": 1})
    # near copies: flipped, rotated, re-encoded as JPEG, resized; one lands in the test split
    pixels, mask = glas[names[8]]
    planter.expected["train/img_0008"].add("near_duplicate")
    planter.add("train", *variants.flipped(pixels, mask), glas_labels[names[8]], {"near_duplicate"})
    planter.add("train", *variants.rotated(pixels, mask), glas_labels[names[8]], {"near_duplicate"})
    buffer = io.BytesIO()
    Image.fromarray(glas[names[10]][0]).save(buffer, "JPEG", quality=80)
    planter.expected["train/img_0010"].add("near_duplicate")
    planter.add("train", np.asarray(Image.open(buffer)), glas[names[10]][1], glas_labels[names[10]],
                {"near_duplicate"}, image_ext=".jpg")
    planter.expected["train/img_0011"].add("near_duplicate")
    planter.add("train", *variants.resized_copy(*glas[names[11]]), glas_labels[names[11]], {"near_duplicate"})
    planter.expected["train/img_0014"].add("near_duplicate")  # lung img_0002 is train/img_0014
    planter.add("test", *variants.rotated(*lung_images[2], turns=3), flags={"near_duplicate"})
    (root / "train_labels.csv").write_text("sample_index,label\n" + "\n".join(planter.labels) + "\n")
    return planter.expected


def stain_transform(kinds, sizes, every=1, seed=0):
    """Image ``i`` becomes a variant of ``kinds[i % len(kinds)]`` at ``sizes[i % len(sizes)]`` when ``i % every == 0``
    (every=2: mixed among normal images; 1: every image pale)."""
    rng = np.random.default_rng(seed)

    def transform(i, pixels, mask):
        if i % every:
            return pixels, mask
        mask = ((mask.max(axis=-1) if mask.ndim == 3 else mask) > 0).astype(np.uint8) * 255
        return variants.stain_variant(kinds[i % len(kinds)], pixels, mask, rng, sizes[i % len(sizes)])[:2]

    return transform
