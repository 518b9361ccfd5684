import csv
from pathlib import Path

import pytest

from pipeline.cli.classify import build_parser, main
from pipeline.cli.extract import main as extract_main
from tests.conftest import write_fake_cache

LABELS = ["a"] * 6 + ["b"] * 6
ROOT = Path(__file__).resolve().parents[2]


def test_defaults():
    args = build_parser().parse_args([])
    assert (args.head, args.level, args.vote, args.folds, args.seed) == ("mlp", "tile", "mean", 5, 0)
    assert args.labels is None and args.out is None and not args.no_class_weight


def test_prints_table_confusion_matrix_and_run_folder(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    write_fake_cache(tmp_path / "features", LABELS)
    assert main(["--head", "logreg", "--folds", "3", "-q"]) == 0
    out = capsys.readouterr().out
    assert "weighted F1" in out and "confusion matrix (logreg" in out
    assert "run folder: runs/data_fake_t224_s224_c0.50_n0_fp32_logreg" in out


def test_errors_exit_2_with_one_line(tmp_path, capsys):
    assert main(["--features", str(tmp_path / "nothing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --features {tmp_path / 'nothing'} does not exist.") and err.count("\n") == 1
    (tmp_path / "empty").mkdir()
    assert main(["--features", str(tmp_path / "empty")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: No feature cache under") and err.count("\n") == 1


def test_a_cache_name_under_features_is_accepted(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    cache_dir, _ = write_fake_cache(tmp_path / "features" / "data-0123abcd", LABELS)
    assert main(["--features", cache_dir.name, "--head", "logreg", "--folds", "3", "-q"]) == 0
    assert "run folder: runs/data_fake_t224_s224_c0.50_n0_fp32_logreg" in capsys.readouterr().out


def test_no_class_weight_flag_reaches_the_heads(tmp_path, capsys):
    cache_dir, _ = write_fake_cache(tmp_path, LABELS)
    assert main(["--features", str(cache_dir), "--head", "logreg", "--folds", "3", "--no-class-weight",
                 "--out", str(tmp_path / "run"), "-q"]) == 0
    head_json = (tmp_path / "run" / "model" / "head.json").read_text()
    assert '"class_weight": null' in head_json


@pytest.mark.slow
def test_end_to_end_on_glas15_with_the_tiny_model(glas15, tmp_path, tiny_vit_dir, capsys):
    features = tmp_path / "features"
    assert extract_main(["--data", str(glas15), "--model", str(tiny_vit_dir), "--out", str(features),
                         "--tile-size", "64", "--workers", "1", "--no-progress", "-q"]) == 0
    assert main(["--features", str(features), "--labels", str(glas15 / "train_labels_binary.csv"), "--folds", "3",
                 "--out", str(tmp_path / "run"), "-q"]) == 0
    run = tmp_path / "run"
    for name in ("metrics.json", "oof_predictions.csv", "submission.csv", "config.json", "model/head.npz"):
        assert (run / name).is_file()
    with (run / "submission.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert [r["sample_index"] for r in rows] == ["img_0000.png", "img_0001.png", "img_0002.png"]
    assert {r["label"] for r in rows} <= {"benign", "malignant"}
    # the default label file is the one of the data folder recorded in the cache
    assert main(["--features", str(features), "--folds", "2", "--head", "logreg", "--out", str(tmp_path / "r2"),
                 "-q"]) == 2
    err = capsys.readouterr().err  # 5-grade labels: one grade has a single image
    assert "'moderately-to-poorly differentated' has 1 image(s) (img_0005.png)" in err
    assert "no --folds can work" in err


def test_keep_outliers_and_drop_flagged_contradict(capsys):
    assert not build_parser().parse_args([]).drop_flagged
    assert build_parser().parse_args(["--drop-flagged"]).drop_flagged
    with pytest.raises(SystemExit) as exit_info:
        main(["--keep-outliers", "--drop-flagged"])
    assert exit_info.value.code == 2
    assert "--keep-outliers and --drop-flagged contradict each other" in capsys.readouterr().err


def test_hygiene_thresholds_are_flags():
    args = build_parser().parse_args(["--min-stain-fraction", "0.2", "--max-green-ink-fraction", "0.01",
                                      "--robust-z", "4", "--min-images-for-z", "20"])
    from pipeline.cli.hygiene_flags import quality_from_args

    quality = quality_from_args(args)
    assert (quality.min_stain_fraction, quality.max_green_ink_fraction, quality.robust_z) == (0.2, 0.01, 4.0)
    assert quality.min_images_for_z == 20 and quality.max_flat_fill_fraction == 0.6


def test_pool_and_repeats_flags(tmp_path, capsys):
    args = build_parser().parse_args([])
    assert (args.pool, args.repeats, args.predict) == ("mean", 1, None)
    cache_dir, _ = write_fake_cache(tmp_path / "features", LABELS)
    assert main(["--features", str(cache_dir), "--pool", "mean,median", "--level", "image", "-q"]) == 2
    assert capsys.readouterr().err.startswith("error: --pool must be a comma-separated list of distinct statistics")
    assert main(["--features", str(cache_dir), "--pool", "mean,max", "-q"]) == 2
    assert "needs --level image" in capsys.readouterr().err
    assert main(["--features", str(cache_dir), "--head", "logreg", "--level", "image", "--pool", "max,mean",
                 "--folds", "3", "--repeats", "2", "--no-pictures", "--out", str(tmp_path / "run"), "-q"]) == 0
    out = capsys.readouterr().out
    assert "repeated cross-validation (2 seeds: 0, 1" in out
    with (tmp_path / "run" / "model" / "classifier.json").open() as handle:
        assert '"pool": [\n    "max",\n    "mean"\n  ]' in handle.read()


def test_several_features_are_fused(tmp_path, capsys):
    first, _ = write_fake_cache(tmp_path, LABELS, name="encA_t224_fp32")
    second, _ = write_fake_cache(tmp_path, LABELS, seed=1, model_checksum="def", name="encB_t224_fp32")
    from pipeline.cli.classify import settings_from_args

    args = build_parser().parse_args(["--features", str(first), str(second), "--fusion", "concat"])
    settings = settings_from_args(args)
    assert settings.features == (first, second) and settings.fusion == "concat"
    assert settings_from_args(build_parser().parse_args(["--features", str(first)])).features == first
    assert settings_from_args(build_parser().parse_args([])).fusion == "late"
    assert main(["--features", str(first), str(second), "--head", "logreg", "--folds", "3", "--no-pictures",
                 "--out", str(tmp_path / "run"), "-q"]) == 0
    assert "late fusion of 2 caches" in capsys.readouterr().out
    assert main(["--features", str(first), str(second), "--fusion", "concat", "--head", "logreg", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --fusion concat joins image-level features") and err.count("\n") == 1


@pytest.mark.parametrize("out", ["junkout", ".", "features"])
def test_overwrite_refuses_a_folder_that_is_no_run_folder_before_any_work(tmp_path, capsys, monkeypatch, out):
    monkeypatch.chdir(tmp_path)
    write_fake_cache(tmp_path / "features", LABELS)
    (tmp_path / "junkout").mkdir()
    (tmp_path / "junkout" / "notes.txt").write_text("hello")

    def never(settings):
        raise AssertionError("trained before checking --out")

    monkeypatch.setattr("pipeline.report.run.run_classification", never)
    assert main(["--head", "logreg", "--out", out, "--overwrite", "-q"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: --out '{out}' ") and err.count("\n") == 1 and "never replaced" in err
    assert (tmp_path / "junkout" / "notes.txt").read_text() == "hello"
    assert (tmp_path / "features").is_dir() and not Path("runs").exists()


def test_allow_labels_reaches_the_settings():
    from pipeline.cli.classify import settings_from_args

    args = build_parser().parse_args(["--allow-labels", "lung_acc", "Luminal B"])
    assert settings_from_args(args).allow_labels == ("lung_acc", "Luminal B")
    assert settings_from_args(build_parser().parse_args([])).allow_labels == ()


def test_help_imports_no_heavy_module():
    import subprocess
    import sys

    code = ("import sys\nfrom pipeline.cli.classify import main\ntry:\n    main(['--help'])\n"
            "except SystemExit:\n    pass\n"
            "heavy = ('torch', 'sklearn', 'lightgbm', 'matplotlib', 'h5py', 'scipy')\n"
            "print(sorted(name for name in sys.modules if name.split('.')[0] in heavy), file=sys.stderr)")
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert "--allow-labels" in done.stdout and done.stderr.strip() == "[]", done.stderr[-500:]
