"""classify.py --predict: a saved run's model predicts a cache's test images without training."""

import json

import pytest

from pipeline import cache
from pipeline.cache import store
from pipeline.cli.classify import main
from pipeline.report.predict import default_out
from tests.conftest import write_fake_cache

LABELS = ["a"] * 8 + ["b"] * 8 + ["c"] * 6


@pytest.mark.slow  # four runs and their predictions
@pytest.mark.parametrize(
    "flags",
    [
        ["--head", "logreg"],
        ["--head", "lgbm", "--vote", "majority"],
        ["--head", "mlp", "--level", "image", "--pool", "mean,max,std"],
        ["--head", "abmil"],
    ],
)
def test_predicting_the_training_cache_reproduces_the_run_byte_for_byte(tmp_path, capsys, flags):
    cache_dir, _ = write_fake_cache(tmp_path / "features", LABELS, n_test=6, separation=0.7)
    # an unreadable test image: both the run and --predict give it the training majority class
    cache.write_json(cache_dir / cache.SKIPPED_FILE, {"test/img_0099": {"sample_index": "img_0099.png",
                                                                          "reason": "unreadable"}})
    run = tmp_path / "run"
    assert main(["--features", str(cache_dir), "--folds", "3", "--out", str(run), "--no-pictures", "-q",
                 *flags]) == 0
    capsys.readouterr()
    assert main(["--predict", str(run), "--features", str(cache_dir), "--out", str(tmp_path / "new"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "7 test images" in out and str(tmp_path / "new" / "submission.csv") in out
    for name in ("submission.csv", "test_predictions.csv"):
        assert (tmp_path / "new" / name).read_bytes() == (run / name).read_bytes(), name
    assert "img_0099.png,a" in (tmp_path / "new" / "submission.csv").read_text()
    record = json.loads((tmp_path / "new" / "prediction.json").read_text())
    assert record["model"] == str(run / "model") and record["filled_with_majority_class"] == ["img_0099.png"]


def test_the_default_folder_sits_beside_the_run_and_is_never_overwritten(tmp_path, capsys):
    cache_dir, _ = write_fake_cache(tmp_path / "features", LABELS)
    run = tmp_path / "runs" / "first"
    assert main(["--features", str(cache_dir), "--head", "logreg", "--folds", "3", "--out", str(run),
                 "--no-pictures", "-q"]) == 0
    for expected in ("first_predict_data", "first_predict_data_2"):
        assert main(["--predict", str(run), "--features", str(cache_dir), "-q"]) == 0
        assert (tmp_path / "runs" / expected / "submission.csv").is_file()
    assert default_out(run, {"data_dir": "/x/new_slides"}) == tmp_path / "runs" / "first_predict_new_slides"
    # an existing --out is refused, as for runs
    assert main(["--predict", str(run), "--features", str(cache_dir), "--out", str(run.parent / "first_predict_data"),
                 "-q"]) == 2
    assert "already exists" in capsys.readouterr().err


def _one_line_error(capsys, argv, expected):
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and expected in err, err


def test_a_cache_that_does_not_fit_the_model_is_refused_in_one_line(tmp_path, capsys):
    cache_dir, _ = write_fake_cache(tmp_path / "features", LABELS)
    run = tmp_path / "run"
    assert main(["--features", str(cache_dir), "--head", "logreg", "--folds", "3", "--out", str(run),
                 "--no-pictures", "-q"]) == 0
    capsys.readouterr()
    other_model = tmp_path / "other"
    other_dir, _ = write_fake_cache(other_model, LABELS)
    settings = cache.read_settings(other_dir)
    cache.write_json(other_dir / cache.SETTINGS_FILE, {**settings, "model_checksum": "different"})
    for path in (other_dir / "test").glob("*.h5"):  # the files say so too, as extraction would have written them
        item = store.read_image_features(path)
        store.write_image_features(path, item.features, item.coords, item.coverage,
                                         {**item.attrs, "model_checksum": "different"})
    _one_line_error(capsys, ["--predict", str(run), "--features", str(other_dir)], "other settings than the model in")
    _one_line_error(capsys, ["--predict", str(run / "model"), "--features", str(other_dir)], "(model_checksum)")
    wider_dir, _ = write_fake_cache(tmp_path / "wider", LABELS, dim=24)  # same settings, other embedding size
    _one_line_error(capsys, ["--predict", str(run), "--features", str(wider_dir)], "expects 16 features per tile")
    _one_line_error(capsys, ["--predict", str(tmp_path / "features"), "--features", str(cache_dir)],
                    "holds no saved model (model/classifier.json)")
    no_test, _ = write_fake_cache(tmp_path / "no_test", LABELS, n_test=0)
    _one_line_error(capsys, ["--predict", str(run), "--features", str(no_test)], "holds no test image")
    assert not (tmp_path / "run_predict_data").exists()


def _two_caches(root):
    first, _ = write_fake_cache(root, LABELS, n_test=6, separation=0.7, name="encA_t224_fp32")
    second, _ = write_fake_cache(root, LABELS, n_test=6, separation=0.7, seed=1, dim=24, model_checksum="def",
                                 name="encB_t224_fp32")
    return first, second


@pytest.mark.slow  # three fused runs and their predictions
@pytest.mark.parametrize("flags", [["--head", "mlp"], ["--head", "abmil"],
                                   ["--head", "lgbm", "--fusion", "concat", "--level", "image", "--pool", "mean,max"]])
def test_a_fused_run_is_reproduced_byte_for_byte_from_the_same_caches(tmp_path, capsys, flags):
    first, second = _two_caches(tmp_path / "features")
    cache.write_json(first / cache.SKIPPED_FILE, {"test/img_0099": {"sample_index": "img_0099.png",
                                                                      "reason": "unreadable"}})
    run = tmp_path / "run"
    assert main(["--features", str(first), str(second), "--folds", "3", "--out", str(run), "--no-pictures", "-q",
                 *flags]) == 0
    capsys.readouterr()
    assert (run / "model" / "fusion.json").is_file() and (run / "model" / "members" / "0" / "classifier.json").is_file()
    assert main(["--predict", str(run), "--features", str(first), str(second), "--out", str(tmp_path / "new"),
                 "-q"]) == 0
    assert f"7 test images of {first} + {second} predicted" in capsys.readouterr().out
    for name in ("submission.csv", "test_predictions.csv"):
        assert (tmp_path / "new" / name).read_bytes() == (run / name).read_bytes(), name
    record = json.loads((tmp_path / "new" / "prediction.json").read_text())
    assert record["caches"] == [str(first), str(second)] and record["fusion"] in ("late", "concat")


def test_a_fused_model_refuses_caches_in_another_order_number_or_settings(tmp_path, capsys):
    first, second = _two_caches(tmp_path / "features")
    run = tmp_path / "run"
    assert main(["--features", str(first), str(second), "--head", "logreg", "--folds", "3", "--out", str(run),
                 "--no-pictures", "-q"]) == 0
    capsys.readouterr()
    _one_line_error(capsys, ["--predict", str(run), "--features", str(second), str(first)],
                    f"'{second}' (--features 1 of 2) was made with other settings than the model's cache 1")
    _one_line_error(capsys, ["--predict", str(run), "--features", str(first)],
                    "was trained on 2 cache(s); got 1 --features")
    other, _ = write_fake_cache(tmp_path / "other", LABELS, n_test=6, dim=24, model_checksum="ghi", name="encC")
    _one_line_error(capsys, ["--predict", str(run), "--features", str(first), str(other)], "(model_checksum)")
    # the same test images in both caches, or a one-line error naming the first that is missing
    (second / "test" / "img_0004.h5").unlink()
    _one_line_error(capsys, ["--predict", str(run), "--features", str(first), str(second)],
                    f"test/img_0004 is in '{first}' but missing from '{second}'")
    # a single-cache model is given one cache only
    single = tmp_path / "single"
    assert main(["--features", str(first), "--head", "logreg", "--folds", "3", "--out", str(single),
                 "--no-pictures", "-q"]) == 0
    capsys.readouterr()
    _one_line_error(capsys, ["--predict", str(single), "--features", str(first), str(second)],
                    "was trained on 1 cache(s); got 2 --features")
