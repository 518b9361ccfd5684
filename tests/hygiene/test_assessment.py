import csv

import numpy as np
from PIL import Image

from pipeline.classify.run import training_plan
from pipeline.classify.settings import ClassificationSettings
from pipeline.data.records import find_records
from pipeline.hygiene.assessment import FLAGS, assess
from pipeline.hygiene.checks import QUALITY_VERSION
from pipeline.hygiene.contact_sheet import _caption, write_contact_sheet
from pipeline.hygiene.quality_file import write_quality_csv
from pipeline.hygiene.settings import QualitySettings

CLEAN = {"q_version": QUALITY_VERSION, "q_stain_fraction": 0.9, "q_stain_chroma": 0.3, "q_off_hue_fraction": 0.0,
         "q_green_ink_fraction": 0.0, "q_flat_fill_fraction": 0.01, "q_white_fraction": 0.1, "mask_fraction": 0.5}


def _hashes(seed):
    rng = np.random.default_rng(seed)
    return [f"{int(v):016x}" for v in rng.integers(0, 2**63, size=8, dtype=np.int64)]


def _attrs(n):
    return [{**CLEAN, "image_sha256": f"f{i}", "pixels_xxh3": f"p{i}", "mask_sha256": f"m{i}",
             "phashes": _hashes(i)} for i in range(n)]


def _assess(attrs, embeddings=None, **settings):
    n = len(attrs)
    ids = [f"train/img_{i:04d}" for i in range(n)]
    embeddings = np.random.default_rng(0).normal(size=(n, 8)) if embeddings is None else embeddings
    return assess(ids, [f"img_{i:04d}.png" for i in range(n)], attrs, embeddings, QualitySettings(**settings))


def test_clean_images_raise_no_flag():
    report = _assess(_attrs(12))
    assert report.counts() == dict.fromkeys(FLAGS, 0)
    assert len(set(report.duplicate_group.tolist())) == 12 and report.summary() == "no image flagged"


def test_pixel_checksums_of_each_kind_link_exact_copies():
    attrs = _attrs(6)
    attrs[1]["pixels_xxh3"] = "p0"  # the current kind
    for i in (2, 3, 4):  # files written before pixels_xxh3 carry pixels_sha256 instead
        del attrs[i]["pixels_xxh3"]
        attrs[i]["pixels_sha256"] = "s2" if i < 4 else "s4"
    report = _assess(attrs)
    exact = report.flags["exact_duplicate"]
    assert np.nonzero(exact)[0].tolist() == [0, 1, 2, 3]
    assert report.duplicate_group[0] == report.duplicate_group[1] != report.duplicate_group[2]
    assert report.duplicate_group[2] == report.duplicate_group[3] and len(set(report.duplicate_group.tolist())) == 4


def test_each_flag_and_the_groups_it_makes():
    attrs = _attrs(12)
    attrs[1]["pixels_xxh3"] = "p0"  # exact copy of 0 (other file bytes, same pixels)
    flipped = _hashes(2)
    attrs[3]["phashes"] = flipped[4:] + flipped[:4]  # a flipped copy of 2: its identity hash is 2's flipped hash
    attrs[4]["mask_sha256"] = attrs[5]["mask_sha256"] = "cartoon-mask"
    attrs[6]["q_off_hue_fraction"] = 0.3
    attrs[7]["q_stain_fraction"] = 0.02
    attrs[8]["q_flat_fill_fraction"] = 0.95
    attrs[9]["q_green_ink_fraction"] = 0.03
    attrs[10]["mask_sha256"] = attrs[11]["mask_sha256"] = "whole"  # whole-image masks say nothing
    attrs[10]["mask_fraction"] = attrs[11]["mask_fraction"] = 1.0
    report = _assess(attrs)
    flagged = {flag: np.nonzero(report.flags[flag])[0].tolist() for flag in FLAGS}
    assert flagged == {"exact_duplicate": [0, 1], "near_duplicate": [2, 3], "shared_mask": [4, 5],
                       "non_tissue": [6, 7, 8], "ink": [9]}
    groups = report.duplicate_group
    assert groups[0] == groups[1] and groups[2] == groups[3] and groups[4] == groups[5]
    assert groups[10] != groups[11] and len(set(groups.tolist())) == 9
    assert report.excluded().tolist() == [i in (6, 7, 8, 9) for i in range(12)]
    assert report.nearest[3] == "train/img_0002"
    assert report.reasons(9) == ["ink"]
    assert [report.rules_of(i) for i in range(6, 10)] == [["off_hue"], ["little_stain"], ["flat_fills"], ["green_ink"]]
    assert report.unscored_warning() is None


def test_scores_of_an_older_version_are_never_used():
    attrs = _attrs(10)
    attrs[2] = {key: value for key, value in attrs[2].items() if key != "q_version"}  # a cache of version 1
    attrs[2]["q_stain_fraction"] = 0.0
    attrs[3]["q_version"] = QUALITY_VERSION - 1
    attrs[3]["q_green_ink_fraction"] = 0.5
    attrs[4]["phashes"] = attrs[2]["phashes"]  # hashes of older files still link duplicates
    report = _assess(attrs)
    assert not report.flags["non_tissue"].any() and not report.flags["ink"].any()
    assert report.unscored.tolist() == [i in (2, 3) for i in range(10)]
    assert np.isnan(report.scores["q_stain_fraction"][2])
    assert report.flags["near_duplicate"].tolist() == [i in (2, 4) for i in range(10)]
    assert report.unscored_warning().startswith("2 of 10 images lack the current hygiene scores")
    assert "python extract.py with the same flags to re-score them without re-embedding" in report.unscored_warning()


def test_phash_threshold_is_a_setting():
    attrs = _attrs(3)
    base = int(attrs[0]["phashes"][0], 16)
    attrs[1]["phashes"] = [f"{base ^ 0b111111:016x}"] + attrs[1]["phashes"][1:]  # 6 bits away
    assert _assess(attrs).flags["near_duplicate"].tolist() == [True, True, False]
    assert not _assess(attrs, phash_distance=5).flags["near_duplicate"].any()


def test_embedding_outlier(rng):
    embeddings = np.concatenate([rng.normal(size=(20, 16)) + 5, rng.normal(size=(20, 16)) - 5])  # two classes
    embeddings[7] = rng.normal(size=16) * 0.1 + np.r_[[40.0] * 8, [-40.0] * 8]
    report = _assess(_attrs(40), embeddings)
    assert np.nonzero(report.flags["non_tissue"])[0].tolist() == [7]


def test_copies_are_not_each_others_neighbours(rng):
    # 12 distinct images and an exact copy of each: the copies' zero distances must not make everyone an outlier
    attrs = _attrs(24)
    for i in range(12, 24):
        attrs[i]["pixels_xxh3"] = attrs[i - 12]["pixels_xxh3"]
    embeddings = np.tile(rng.normal(size=(12, 16)), (2, 1))
    report = _assess(attrs, embeddings)
    ratio = report.scores["outlier_ratio"]
    assert not report.flags["non_tissue"].any() and 0.5 < ratio.min() and ratio.max() < 2.0
    np.testing.assert_allclose(ratio[:12], ratio[12:])


def test_images_without_hashes_match_nothing():
    attrs = _attrs(4)
    for item in attrs:
        del item["phashes"]
    assert not _assess(attrs).flags["near_duplicate"].any()


def test_quality_csv_columns(tmp_path):
    attrs = _attrs(4)
    attrs[2]["q_green_ink_fraction"] = 0.5
    attrs[3]["q_version"] = 1
    path = tmp_path / "quality.csv"
    write_quality_csv(path, _assess(attrs))
    rows = list(csv.DictReader(path.open()))
    assert [r["sample_index"] for r in rows] == [f"img_{i:04d}.png" for i in range(4)]
    assert rows[2]["ink"] == "1" and rows[0]["ink"] == "0" and rows[2]["split"] == "train"
    columns = {"q_stain_fraction", "outlier_ratio", "nearest_phash_distance", "rules", "duplicate_group", "group_size"}
    assert columns <= set(rows[0])
    assert rows[2]["rules"] == "green_ink" and rows[0]["rules"] == ""
    assert rows[3]["q_stain_fraction"] == "" and rows[0]["q_stain_fraction"] == "0.9000"  # missing: empty


def test_training_plan_leaves_out_outliers_and_dedupes():
    attrs = _attrs(30)  # one flagged image of 30: under the 5% limit, left out
    attrs[1]["pixels_xxh3"] = "p0"
    attrs[4]["q_green_ink_fraction"] = 0.2
    report = _assess(attrs)
    groups, trainable, warnings = training_plan(report, 30, ClassificationSettings())
    assert np.nonzero(~trainable)[0].tolist() == [4] and groups[0] == groups[1] and warnings == []
    _, keep, _ = training_plan(report, 30, ClassificationSettings(keep_outliers=True, dedupe=True))
    assert np.nonzero(~keep)[0].tolist() == [1]


def test_training_plan_keeps_too_many_flagged_images_unless_told(caplog):
    attrs = _attrs(30)
    for i in (3, 4):
        attrs[i]["q_green_ink_fraction"] = 0.2  # 2 of 30: 6.7%
    report = _assess(attrs)
    labels = ["a"] * 15 + ["b"] * 15
    _, trainable, warnings = training_plan(report, 30, ClassificationSettings(), labels)
    assert trainable.all() and len(warnings) == 1 and warnings[0] in caplog.text
    assert warnings[0].startswith("hygiene flags 2 of 30 training images (6.7%; a: 2 of 15, 13.3%): ink 2")
    _, trainable, warnings = training_plan(report, 30, ClassificationSettings(drop_flagged=True), labels)
    assert np.nonzero(~trainable)[0].tolist() == [3, 4]
    assert warnings[0].endswith("--drop-flagged leaves them out of training")


def test_contact_sheet(tmp_path, make_data):
    root = make_data(n_train=4, n_test=0)
    attrs = _attrs(4)
    attrs[1]["pixels_xxh3"] = "p0"
    attrs[3]["q_green_ink_fraction"] = 0.2
    report = _assess(attrs)
    path = tmp_path / "sheet.png"
    paths = {record.image_id: record.image_path for record in find_records(root)}
    assert write_contact_sheet(path, report, paths)
    with Image.open(path) as image:
        assert image.size[0] == 8 * 156 and image.size[1] > 2 * 150  # two bands
    assert not write_contact_sheet(tmp_path / "none.png", _assess(_attrs(3)), paths)
    assert not (tmp_path / "none.png").exists()


def test_ink_is_one_flag_whose_rules_and_columns_name_the_colour(tmp_path):
    attrs = _attrs(4)
    for i, colour in ((1, "blue"), (2, "black"), (3, "green")):
        attrs[i][f"q_{colour}_ink_fraction"] = 0.05
    attrs[0]["q_blue_ink_fraction"] = 0.002  # under the blue threshold
    report = _assess(attrs)
    assert report.flags["ink"].tolist() == [False, True, True, True]
    assert [report.rules_of(i) for i in range(4)] == [[], ["blue_ink"], ["black_ink"], ["green_ink"]]
    assert _caption(report, 1, "ink").endswith("blue ink 5.0%")
    path = tmp_path / "quality.csv"
    write_quality_csv(path, report)
    rows = list(csv.DictReader(path.open()))
    assert [rows[i]["q_black_ink_fraction"] for i in (0, 2)] == ["", "0.0500"]  # absent from CLEAN: missing
    assert rows[0]["q_blue_ink_fraction"] == "0.0020" and rows[2]["rules"] == "black_ink"
