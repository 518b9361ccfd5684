import csv
import json

import numpy as np
import pytest

from pipeline import cache
from pipeline.cache import store
from pipeline.classify.classifier import Classifier
from pipeline.classify.settings import ClassificationSettings
from pipeline.errors import CacheError, ConfigError, LabelsError
from pipeline.report.run import classify_and_write
from tests.conftest import write_fake_cache

LABELS = ["Luminal A"] * 8 + ["Luminal B"] * 8 + ["HER2(+)"] * 8 + ["Triple negative"] * 6


def _run(cache_dir, tmp_path, **kwargs):
    values = dict(features=cache_dir, runs_root=tmp_path / "runs", folds=3, head="logreg")
    values.update(kwargs)
    return classify_and_write(ClassificationSettings(**values))


@pytest.mark.parametrize("head", ["logreg", "lgbm", "mlp"])
def test_each_head_separates_clusters_and_writes_every_file(tmp_path, head):
    cache_dir, _ = write_fake_cache(tmp_path, LABELS, n_test=5)
    summary, run_dir = _run(cache_dir, tmp_path, head=head)
    run = summary.heads[0]
    assert run.metrics["weighted_f1"] > 0.9
    assert run_dir == tmp_path / "runs" / f"data_{cache_dir.name}_{head}"  # the data folder's name comes first
    for name in ("metrics.json", "oof_predictions.csv", "submission.csv", "config.json", "model/classifier.json",
                 "model/head.json", "model/head.npz"):
        assert (run_dir / name).is_file(), name
    metrics = json.loads((run_dir / "metrics.json").read_text())
    for key in ("weighted_f1", "macro_f1", "accuracy", "weighted_f1_folds", "per_class", "confusion_matrix",
                "classes", "settings"):
        assert key in metrics
    assert metrics["classes"] == sorted(set(LABELS)) and len(metrics["weighted_f1_folds"]) == 3
    assert sum(map(sum, metrics["confusion_matrix"])) == len(LABELS)


def test_submission_format_order_and_reload(tmp_path):
    cache_dir, _ = write_fake_cache(tmp_path, LABELS, n_test=12)
    summary, run_dir = _run(cache_dir, tmp_path, head="mlp")
    with (run_dir / "submission.csv").open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["sample_index", "label"]
    assert [r[0] for r in rows[1:]] == [f"img_{i:04d}.png" for i in range(12)]
    assert {r[1] for r in rows[1:]} <= set(LABELS)
    classifier = Classifier.load(run_dir / "model")
    again = classifier.predict(cache.load_split(cache_dir, "test"))
    assert again == [r[1] for r in rows[1:]]
    with (run_dir / "oof_predictions.csv").open() as handle:
        oof = list(csv.DictReader(handle))
    assert len(oof) == len(LABELS) and set(oof[0]) >= {"sample_index", "label", "pred", "proba_HER2(+)"}


@pytest.mark.slow  # every head, abmil included
def test_head_all_compares_and_keeps_the_best_on_top(tmp_path):
    cache_dir, _ = write_fake_cache(tmp_path, LABELS)
    summary, run_dir = _run(cache_dir, tmp_path, head="all")
    assert [run.name for run in summary.heads] == ["logreg", "lgbm", "mlp", "abmil"]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    assert metrics["best_head"] == summary.best.name and set(metrics["heads"]) == {"logreg", "lgbm", "mlp", "abmil"}
    assert all((run_dir / "heads" / name / "submission.csv").is_file() for name in metrics["heads"])
    assert all((run_dir / "heads" / name / "test_predictions.csv").is_file() for name in metrics["heads"])
    # abmil sees each image as a bag of its tiles, the others run at the requested level
    assert {name: m["level"] for name, m in metrics["heads"].items()} == {
        "logreg": "tile", "lgbm": "tile", "mlp": "tile", "abmil": "bag"}
    assert all(len(m["weighted_f1_ci95"]) == 2 for m in metrics["heads"].values())
    abmil = summary.heads[-1]
    assert abmil.oof_tile_attention.shape == (len(summary.train.embeddings),)
    np.testing.assert_allclose(np.bincount(summary.train.image_index, weights=abmil.oof_tile_attention), 1.0,
                               atol=1e-6)
    assert summary.heads[0].oof_tile_attention is None


def test_image_level_and_votes(tmp_path):
    cache_dir, _ = write_fake_cache(tmp_path, LABELS)
    for kwargs in ({"level": "image"}, {"vote": "majority"}, {"vote": "coverage"}):
        assert _run(cache_dir, tmp_path, **kwargs)[0].heads[0].metrics["weighted_f1"] > 0.9


def test_same_seed_same_outputs_and_run_folders_never_overwritten(tmp_path):
    cache_dir, _ = write_fake_cache(tmp_path, LABELS)
    _, first = _run(cache_dir, tmp_path, head="mlp")
    _, second = _run(cache_dir, tmp_path, head="mlp")
    assert second.name == first.name + "_2"
    assert (first / "oof_predictions.csv").read_text() == (second / "oof_predictions.csv").read_text()
    with pytest.raises(ConfigError, match="already exists. Pass another --out, or --overwrite"):
        _run(cache_dir, tmp_path, out=first)
    _run(cache_dir, tmp_path, out=first, overwrite=True, head="logreg")
    assert json.loads((first / "metrics.json").read_text())["head"] == "logreg"
    assert not [p for p in (tmp_path / "runs").iterdir() if p.name.startswith(".")]


def test_duplicates_stay_in_one_fold(tmp_path):
    cache_dir, _ = write_fake_cache(tmp_path, LABELS)
    for i, j in ((0, 1), (2, 20)):  # an exact copy, and a shared informative mask
        path = cache_dir / "train" / f"img_{j:04d}.h5"
        item = store.read_image_features(path)
        key = "image_sha256" if j == 1 else "mask_sha256"
        source = store.read_attrs(cache_dir / "train" / f"img_{i:04d}.h5")
        store.write_image_features(path, item.features, item.coords, item.coverage, {**item.attrs, key: source[key]})
    run = _run(cache_dir, tmp_path)[0].heads[0]
    assert run.folds[0] == run.folds[1] and run.folds[2] == run.folds[20]


def test_skipped_images_are_reported_and_test_rows_filled(tmp_path):
    cache_dir, labels_path = write_fake_cache(tmp_path, LABELS, n_test=3)
    (cache_dir / "train" / "img_0005.h5").unlink()
    (cache_dir / "test" / "img_0001.h5").unlink()
    cache.write_json(cache_dir / cache.SKIPPED_FILE, {
        "train/img_0005": {"sample_index": "img_0005.png", "reason": "file is empty"},
        "test/img_0001": {"sample_index": "img_0001.png", "reason": "file is empty"},
    })
    summary, run_dir = _run(cache_dir, tmp_path)
    assert summary.train.n_images == len(LABELS) - 1
    rows = (run_dir / "submission.csv").read_text().splitlines()
    assert [r.split(",")[0] for r in rows[1:]] == ["img_0000.png", "img_0001.png", "img_0002.png"]
    assert summary.filled_test == ["img_0001.png"]


def test_labelled_image_missing_from_cache(tmp_path):
    cache_dir, labels_path = write_fake_cache(tmp_path, LABELS)
    (cache_dir / "train" / "img_0003.h5").unlink()
    with pytest.raises(LabelsError, match="lists 1 image\\(s\\) missing from the cache: img_0003.png"):
        _run(cache_dir, tmp_path)


def test_cached_image_missing_from_labels(tmp_path):
    cache_dir, labels_path = write_fake_cache(tmp_path, LABELS)
    labels_path.write_text("\n".join(labels_path.read_text().splitlines()[:-1]) + "\n")
    with pytest.raises(LabelsError, match="1 cached train image\\(s\\) have no row in .*: img_0029.png"):
        _run(cache_dir, tmp_path)


def test_unknown_label_columns(tmp_path):
    cache_dir, labels_path = write_fake_cache(tmp_path, LABELS)
    labels_path.write_text("image,subtype\nimg_0000.png,Luminal A\n")
    with pytest.raises(LabelsError, match="must have the columns sample_index,label. Got 'image,subtype'"):
        _run(cache_dir, tmp_path)


def test_cache_that_mixes_settings(tmp_path):
    cache_dir, _ = write_fake_cache(tmp_path, LABELS)
    path = cache_dir / "train" / "img_0004.h5"
    item = store.read_image_features(path)
    store.write_image_features(path, item.features, item.coords, item.coverage, {**item.attrs, "tile_size": 256})
    with pytest.raises(CacheError, match="mixes settings: 1 train file\\(s\\) differ .*img_0004.h5 \\(tile_size\\)"):
        _run(cache_dir, tmp_path)


def test_non_finite_embeddings(tmp_path):
    cache_dir, _ = write_fake_cache(tmp_path, LABELS)
    path = cache_dir / "train" / "img_0004.h5"
    item = store.read_image_features(path)
    item.features[0, 0] = np.nan
    store.write_image_features(path, item.features, item.coords, item.coverage, item.attrs)
    with pytest.raises(CacheError, match="NaN or infinite embeddings: img_0004.h5"):
        _run(cache_dir, tmp_path)


def test_empty_and_ambiguous_caches(tmp_path):
    with pytest.raises(CacheError, match="--features .*features does not exist"):
        _run(tmp_path / "features", tmp_path)
    (tmp_path / "features").mkdir()
    with pytest.raises(CacheError, match="No feature cache under"):
        _run(tmp_path / "features", tmp_path)
    write_fake_cache(tmp_path / "features", LABELS, name="a_fp32")
    write_fake_cache(tmp_path / "features", LABELS, name="b_fp32")
    with pytest.raises(CacheError, match="holds several caches: .*a_fp32, .*b_fp32. Choose one with --features."):
        _run(tmp_path / "features", tmp_path)
    empty = tmp_path / "features" / "a_fp32"
    for path in (empty / "train").glob("*.h5"):
        path.unlink()
    with pytest.raises(CacheError, match="holds no train image"):
        _run(empty, tmp_path)


def test_reloaded_model_refuses_other_cache_settings(tmp_path):
    cache_dir, _ = write_fake_cache(tmp_path, LABELS)
    summary, run_dir = _run(cache_dir, tmp_path)
    other, _ = write_fake_cache(tmp_path / "other", LABELS)
    features = cache.load_split(other, "test")
    for attrs in features.image_attrs:
        attrs["model_checksum"] = "different"
    with pytest.raises(CacheError, match="other settings \\(model_checksum\\)"):
        Classifier.load(run_dir / "model").predict(features)


def _score(cache_dir, green=()):
    """Give every file current hygiene scores; the images in ``green`` carry ink."""
    from pipeline.hygiene.checks import QUALITY_VERSION

    for path in sorted(cache_dir.rglob("*.h5")):
        ink = 0.2 if path.stem in {f"img_{i:04d}" for i in green} and path.parent.name == "train" else 0.0
        store.update_attributes(path, {"q_version": QUALITY_VERSION, "q_stain_fraction": 0.9, "q_stain_chroma": 0.3,
                                       "q_off_hue_fraction": 0.0, "q_green_ink_fraction": ink,
                                       "q_flat_fill_fraction": 0.01, "q_white_fraction": 0.1})


def test_a_cache_without_current_hygiene_scores_is_said_so(tmp_path):
    from pipeline.report.summary import format_summary

    cache_dir, _ = write_fake_cache(tmp_path, LABELS, n_test=2)
    result, run_dir = _run(cache_dir, tmp_path)
    line = ("32 of 32 images lack the current hygiene scores (their feature files were made by an older version), "
            "so they cannot be flagged non_tissue or ink; run python extract.py with the same flags to re-score them "
            "without re-embedding")
    assert result.hygiene_warnings == [line]
    assert json.loads((run_dir / "config.json").read_text())["hygiene_warnings"] == [line]
    assert f"warning: {line}" in format_summary(result, run_dir)
    _score(cache_dir)
    assert _run(cache_dir, tmp_path)[0].hygiene_warnings == []


def test_too_many_flagged_images_are_kept_unless_drop_flagged(tmp_path):
    cache_dir, _ = write_fake_cache(tmp_path, LABELS, n_test=2)
    _score(cache_dir, green=(0, 1))  # 2 of 30 training images (6.7%), 2 of 8 Luminal A (25%)
    result, run_dir = _run(cache_dir, tmp_path)
    config = json.loads((run_dir / "config.json").read_text())
    assert result.trainable.all() and config["left_out_of_training"] == {}
    assert config["hygiene_warnings"] == [
        "hygiene flags 2 of 30 training images (6.7%; Luminal A: 2 of 8, 25.0%): ink 2 (green_ink 2); over 5% of the "
        "training images or 10% of a class, so all are kept in training (pass --drop-flagged to leave them out)"]
    result, run_dir = _run(cache_dir, tmp_path, drop_flagged=True)
    config = json.loads((run_dir / "config.json").read_text())
    assert config["left_out_of_training"] == {"img_0000.png": ["ink"], "img_0001.png": ["ink"]}
    assert config["hygiene_warnings"][0].endswith("--drop-flagged leaves them out of training")
    result, _ = _run(cache_dir, tmp_path, keep_outliers=True)
    assert result.trainable.all() and result.hygiene_warnings == []


@pytest.mark.slow  # every head on two caches
def test_a_fused_run_folder_scores_the_fusion_and_shows_each_cache_alone(tmp_path):
    from pipeline.report.summary import format_summary

    first, _ = write_fake_cache(tmp_path, LABELS, n_test=5, separation=0.7, name="encA_t224_fp32")
    second, _ = write_fake_cache(tmp_path, LABELS, n_test=5, separation=0.7, seed=1, dim=24, model_checksum="def",
                                 name="encB_t224_fp32")
    summary, run_dir = _run((first, second), tmp_path, head="all", pictures=False)
    assert run_dir == tmp_path / "runs" / "data_fused-late_all_encA+encB"
    metrics = json.loads((run_dir / "metrics.json").read_text())
    best = summary.best
    assert metrics["head"] == best.name and metrics["weighted_f1"] == best.metrics["weighted_f1"]
    fusion = metrics["fusion"]
    assert fusion["mode"] == "late" and fusion["caches"] == [str(first), str(second)]
    assert list(fusion["members"]) == ["encA_t224_fp32", "encB_t224_fp32"]
    for member, run in zip(fusion["members"].values(), best.members, strict=True):
        assert member["weighted_f1"] == run.metrics["weighted_f1"] and len(member["weighted_f1_ci95"]) == 2
    for name in ("logreg", "lgbm", "mlp", "abmil"):  # every head's folder has its own members
        head = json.loads((run_dir / "heads" / name / "metrics.json").read_text())
        assert head["head"] == name and list(head["fusion"]["members"]) == list(fusion["members"])
        assert (run_dir / "heads" / name / "model" / "fusion.json").is_file()
    config = json.loads((run_dir / "config.json").read_text())
    assert config["settings"]["features"] == [str(first), str(second)] and config["settings"]["fusion"] == "late"
    caches = config["fusion"]["caches"]
    assert [c["cache_dir"] for c in caches] == [str(first), str(second)]
    assert [c["cache_settings"]["model_checksum"] for c in caches] == ["abc", "def"]
    assert config["cache_dir"] == str(first)
    with (run_dir / "oof_predictions.csv").open() as handle:
        oof = list(csv.DictReader(handle))
    assert float(oof[0]["proba_HER2(+)"]) == pytest.approx(best.oof_proba[0, 0], abs=1e-6)  # the fused one
    text = format_summary(summary, run_dir)
    assert "late fusion of 2 caches (the scores above): each cache alone and fused, same folds" in text
    lines = [line for line in text.splitlines() if line.startswith("abmil ")]
    assert [line.split()[1] for line in lines[1:]] == ["encA_t224_fp32", "encB_t224_fp32", "fused"]


def test_the_run_folder_has_the_contact_sheet_of_its_flagged_images(tmp_path):
    cache_dir, _ = write_fake_cache(tmp_path, LABELS)
    _, clean = _run(cache_dir, tmp_path)
    assert (clean / "quality.csv").is_file() and not (clean / "quality_flagged.png").exists()  # nothing flagged
    copy, source = cache_dir / "train" / "img_0001.h5", store.read_attrs(cache_dir / "train" / "img_0000.h5")
    item = store.read_image_features(copy)
    store.write_image_features(copy, item.features, item.coords, item.coverage,
                               {**item.attrs, "image_sha256": source["image_sha256"]})  # an exact duplicate
    _, run_dir = _run(cache_dir, tmp_path, pictures=False)
    assert (run_dir / "quality_flagged.png").stat().st_size > 0


def test_a_fused_run_says_the_submission_is_the_fusion_and_compares_it_with_each_member(tmp_path):
    from tests.classify.test_fusion import two_caches

    first, second = two_caches(tmp_path)
    result, run_dir = _run((first, second), tmp_path)
    fused = result.heads[0]
    metrics = json.loads((run_dir / "metrics.json").read_text())
    block = metrics["submission"]
    alone = {label: metrics["fusion"]["members"][label]["weighted_f1"] for label in ("encA_t224_s224_fp32",
                                                                                     "encB_t224_s224_fp32")}
    assert block["uses"] == "fused" and block["weighted_f1"] == fused.metrics["weighted_f1"] == metrics["weighted_f1"]
    assert block["members_weighted_f1"] == alone
    assert block["fused_minus_best_member"] == pytest.approx(fused.metrics["weighted_f1"] - max(alone.values()))
    a, b = (f"{alone[label]:.3f} ({label})" for label in alone)
    assert block["text"].startswith(f"Submission: late fusion of 2 caches (head logreg), weighted F1 "
                                    f"{fused.metrics['weighted_f1']:.3f}; members alone {a} and {b}: the fusion ")
    page = (run_dir / "report.html").read_text()
    assert block["text"].split(";")[0] in page and "Best head" not in page
