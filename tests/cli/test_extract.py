import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from pipeline.cache import store
from pipeline.cli.extract import build_parser, main
from tests.conftest import random_pixels, write_pair

ROOT = Path(__file__).resolve().parents[2]


def test_help_documents_every_flag_with_its_default(capsys):
    with pytest.raises(SystemExit) as info:
        main(["--help"])
    assert info.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--data", "--split", "--model", "--out", "--gpu", "--device", "--precision", "--tile-size", "--stride",
                 "--min-coverage", "--max-tiles", "--seed", "--batch-size", "--workers", "--strict", "--overwrite",
                 "--shard", "--finalize", "--verify"):
        assert flag in text
    assert "(default: data)" in text and "(default: phikon)" in text and "(default: 0.5)" in text


def test_defaults():
    args = build_parser().parse_args([])
    assert (args.data, args.split, args.model, args.out) == (Path("data"), "all", "phikon", Path("features"))
    assert (args.tile_size, args.stride, args.min_coverage, args.max_tiles, args.seed) == (None, None, 0.5, 0, 0)
    assert args.mpp is None and not args.list_models  # no --tile-size and no --mpp: 224 (tests/cli/test_encoders.py)
    assert args.device == "auto" and not args.gpu


def test_runs_and_prints_one_summary_line(make_data, tmp_path, tiny_vit_dir, capsys):
    root = make_data(n_train=2, n_test=1)
    argv = ["--data", str(root), "--model", str(tiny_vit_dir), "--out", str(tmp_path / "f"), "--tile-size", "32",
            "--workers", "0", "--no-progress", "-q"]
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "3 images: 3 embedded (12 tiles" in out and "0 skipped" in out
    assert main(argv) == 0
    assert "0 embedded" in capsys.readouterr().out


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (["--min-coverage", "1.5"], "--min-coverage must be a fraction in [0, 1]. Got 1.5 instead."),
        (["--tile-size", "0"], "--tile-size must be a positive number of pixels. Got 0 instead."),
        (["--model", "no-such-model"], "Unknown --model 'no-such-model'"),
        (["--write-processes", "-1"], "--write-processes must be 0 or more. Got -1 instead."),
        (["--workers", "-1"], "--workers must be 0 or more. Got -1 instead."),
    ],
)
def test_bad_values_exit_2_with_one_line(make_data, tmp_path, extra, message, capsys):
    assert main(["--data", str(make_data()), "--out", str(tmp_path), *extra]) == 2
    err = capsys.readouterr().err
    assert message in err and err.count("\n") == 1 and "Traceback" not in err


@pytest.mark.parametrize(
    ("shard", "message"),
    [
        ("2/2", "--shard I/N must have 0 <= I < N (shards are numbered from 0, like torchrun's RANK: the last of 4 is "
                "3/4). Got '2/2' instead."),
        ("1-4", "--shard must be I/N: this process's shard, numbered from 0, and the number of shards, e.g. --shard "
                "0/4. Got '1-4' instead."),
    ],
)
def test_bad_shards_exit_2_with_one_line(make_data, tmp_path, shard, message, capsys):
    assert main(["--data", str(make_data()), "--out", str(tmp_path), "--shard", shard]) == 2
    err = capsys.readouterr().err
    assert err == f"error: {message}\n"


def test_a_shard_that_disagrees_with_torchrun_exits_2(make_data, tmp_path, capsys, monkeypatch):
    for name, value in {"TORCHELASTIC_RUN_ID": "job", "RANK": "1", "WORLD_SIZE": "2", "LOCAL_RANK": "1"}.items():
        monkeypatch.setenv(name, value)
    assert main(["--data", str(make_data()), "--out", str(tmp_path), "--shard", "0/2", "--model", "unused"]) == 2
    assert "--shard 0/2 disagrees with torchrun's RANK 1 and WORLD_SIZE 2" in capsys.readouterr().err


@pytest.mark.parametrize("flags", [["--shard", "0/2", "--verify"], ["--shard", "0/2", "--finalize"],
                                   ["--verify", "--finalize"]])
def test_flags_that_do_not_go_together(flags, capsys):
    with pytest.raises(SystemExit) as info:
        main(flags)
    assert info.value.code == 2
    err = capsys.readouterr().err
    assert "not allowed with argument" in err or "--shard cannot be combined with --" in err


def test_finalize_exits_1_while_a_shard_is_missing_and_0_after(make_data, tmp_path, tiny_vit_dir, capsys):
    root = make_data(n_train=3, n_test=0)
    argv = ["--data", str(root), "--model", str(tiny_vit_dir), "--out", str(tmp_path), "--tile-size", "32",
            "--workers", "0", "--no-progress"]
    assert main([*argv, "--shard", "0/2"]) == 0
    err = capsys.readouterr().err
    assert err and all(line.startswith("[shard 0/2] ") for line in err.splitlines())  # logs name the shard
    assert main([*argv, "--finalize"]) == 1
    assert "result: 1 image(s) are not embedded yet" in capsys.readouterr().out
    assert main([*argv, "--shard", "1/2", "-q"]) == 0
    assert main([*argv, "--finalize"]) == 0
    assert "3 images: 3 embedded, 0 skipped as bad input, 0 not embedded yet" in capsys.readouterr().out


def test_finalize_without_a_cache_exits_2(make_data, tmp_path, capsys):
    assert main(["--data", str(make_data()), "--out", str(tmp_path), "--model", "phikon", "--finalize"]) == 2
    assert capsys.readouterr().err.startswith("error: No cache for --model phikon")


def test_data_folder_without_splits_exits_2(tmp_path, capsys):
    assert main(["--data", str(tmp_path)]) == 2
    assert "has neither train_data/ nor test_data/" in capsys.readouterr().err


@pytest.mark.parametrize("offline_flag", [False, True])
def test_default_model_without_internet_fails_with_one_line_and_no_retries(
    make_data, tmp_path, capfd, monkeypatch, unreachable_hub, offline_flag
):
    # issue 11: 30 s and 23 lines before; now one line, with or without HF_HUB_OFFLINE
    if offline_flag:
        monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    assert main(["--data", str(make_data()), "--out", str(tmp_path / "f")]) == 2
    err = capfd.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: --model phikon (owkin/phikon) is not in the local Hugging ")
    assert "`hf download owkin/phikon`" in err and "--model efficientnet-lite0" in err
    assert ("HF_HUB_OFFLINE is set" if offline_flag else "the hub cannot be reached") in err
    assert len(unreachable_hub.hub_requests()) == (0 if offline_flag else 1)


def test_model_folder_that_does_not_exist_says_folder_not_found(make_data, tmp_path, capsys):
    assert main(["--data", str(make_data()), "--out", str(tmp_path), "--model", "/a/folder/that/does/not/exist"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: --model /a/folder/that/does/not/exist: folder not found") and err.count("\n") == 1


def test_gpu_without_cuda_fails_clearly(make_data, tmp_path, capsys, monkeypatch):
    import torch

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    assert main(["--data", str(make_data()), "--gpu", "--model", "efficientnet-lite0"]) == 2
    assert "--gpu / --device cuda was asked for but CUDA is not available" in capsys.readouterr().err


def test_gpu_and_device_conflict():
    with pytest.raises(SystemExit) as info:
        main(["--gpu", "--device", "cpu"])
    assert info.value.code == 2


def test_strict_exits_1(make_data, tmp_path, tiny_vit_dir, capsys):
    root = make_data(n_train=2, n_test=0)
    (root / "train_data" / "img_0001.png").write_bytes(b"")
    argv = ["--data", str(root), "--model", str(tiny_vit_dir), "--out", str(tmp_path), "--tile-size", "32",
            "--workers", "0", "--no-progress", "-q"]
    assert main(argv) == 0
    assert "skipped train/img_0001" in capsys.readouterr().out
    assert main([*argv, "--strict"]) == 1
    assert "img_0001.png: file is empty" in capsys.readouterr().err


def _run(argv, **kwargs):
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, str(ROOT / "extract.py"), *argv], env=env, cwd=ROOT,
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, **kwargs)


@pytest.mark.slow  # extract.py processes killed and restarted
def test_kill_and_resume_equals_an_uninterrupted_run(tmp_path, tiny_vit_dir):
    rng = np.random.default_rng(1)
    inside = np.ones((160, 160), dtype=bool)
    for i in range(16):
        write_pair(tmp_path / "data" / "train_data", f"{i:04d}", random_pixels(rng, 160, 160), inside)
    common = ["--data", str(tmp_path / "data"), "--model", str(tiny_vit_dir), "--tile-size", "32", "--batch-size", "1",
              "--workers", "1", "--no-progress", "-q"]
    killed_dir = tmp_path / "killed"
    process = _run([*common, "--out", str(killed_dir)])
    deadline = time.monotonic() + 120
    while len(list(killed_dir.rglob("img_*.h5"))) < 3 and process.poll() is None and time.monotonic() < deadline:
        time.sleep(0.01)
    process.send_signal(signal.SIGKILL)
    process.wait()
    n_at_kill = len(list(killed_dir.rglob("img_*.h5")))
    assert 3 <= n_at_kill < 16, "the kill must land mid-run"
    resumed = _run([*common, "--out", str(killed_dir)])
    assert resumed.wait() == 0, resumed.stderr.read().decode()
    assert main([*common, "--out", str(tmp_path / "clean")]) == 0  # the uninterrupted reference, in-process
    killed_files = sorted(p.relative_to(killed_dir) for p in killed_dir.rglob("*.h5"))
    clean_files = sorted(p.relative_to(tmp_path / "clean") for p in (tmp_path / "clean").rglob("*.h5"))
    assert killed_files == clean_files and len(clean_files) == 16
    assert not [p for p in killed_dir.rglob("*") if ".tmp-" in p.name]
    for rel in clean_files:
        a, b = store.read_image_features(killed_dir / rel), store.read_image_features(tmp_path / "clean" / rel)
        np.testing.assert_array_equal(a.coords, b.coords)
        np.testing.assert_array_equal(a.coverage, b.coverage)
        np.testing.assert_allclose(a.features, b.features, atol=1e-5, rtol=0)


def test_a_run_that_embeds_nothing_exits_1_with_the_cause(make_data, tmp_path, tiny_vit_dir, capsys, caplog):
    root = make_data(n_train=3, n_test=0)
    for mask in (root / "train_data").glob("mask_*"):
        mask.unlink()
    # --tissue mask: images without masks are skipped (the default, auto, finds their tissue)
    argv = ["--data", str(root), "--model", str(tiny_vit_dir), "--out", str(tmp_path / "f"), "--tile-size", "32",
            "--workers", "0", "--no-progress", "--tissue", "mask"]
    caplog.set_level("INFO")
    assert main(argv) == 1
    captured = capsys.readouterr()
    last = captured.err.strip().splitlines()[-1]
    assert last.startswith("error: 0 images embedded: all 3 skipped: 3 no mask found; e.g. ")
    assert last.endswith("remove the image from the folder. Fix those files, then run the same command again.")
    assert "more --workers" not in captured.out + captured.err + caplog.text
    from pipeline.cli.classify import main as classify_main  # what classify.py then says about that cache

    assert classify_main(["--features", str(tmp_path / "f"), "--data", str(root), "-q"]) == 2
    err = capsys.readouterr().err
    assert "extraction skipped all 3 of them (3 no mask found; e.g. " in err and "--split train" not in err


def _out_argv(root, out, tiny_vit_dir, *extra):
    return ["--data", str(root), "--model", str(tiny_vit_dir), "--out", str(out), "--tile-size", "32", "--workers",
            "0", "--no-progress", "-q", *extra]


@pytest.fixture
def one_cache(make_data, tmp_path, tiny_vit_dir):
    """A data folder and the cache extract.py made of it under tmp_path/features."""
    from pipeline.cache import find_caches

    root = make_data(n_train=2, n_test=1)
    assert main(_out_argv(root, tmp_path / "features", tiny_vit_dir)) == 0
    (cache_dir,) = find_caches(tmp_path / "features")
    return root, cache_dir


def test_extraction_takes_its_own_cache_folder_as_out_and_refuses_any_other(one_cache, tmp_path, tiny_vit_dir,
                                                                            capsys):
    import shutil

    from pipeline.cache import find_caches

    root, cache_dir = one_cache
    capsys.readouterr()
    for out in (cache_dir, cache_dir.parent):  # the cache folder itself, and the data folder's folder
        assert main(_out_argv(root, out, tiny_vit_dir)) == 0
        assert "3 images: 0 embedded" in capsys.readouterr().out
    assert find_caches(cache_dir) == [] and find_caches(cache_dir.parent) == [cache_dir]  # nothing nested
    shutil.copytree(root, tmp_path / "other")
    for out, data, extra, message in (
        (cache_dir, root, ["--tile-size", "16"], "is a cache folder made with other flags"),
        (cache_dir, tmp_path / "other", [], "is a cache folder of another data folder"),
        (cache_dir.parent, tmp_path / "other", [], "holds the caches of another data folder"),
        (cache_dir / "train", root, [], f"lies inside the cache folder {cache_dir}"),
    ):
        assert main(_out_argv(data, out, tiny_vit_dir, *extra)) == 2
        err = capsys.readouterr().err
        assert message in err and err.count("\n") == 1, err
    assert find_caches(tmp_path / "features") == [cache_dir]
    assert not [path for path in (cache_dir / "train").iterdir() if path.is_dir()]


@pytest.mark.parametrize("mode", ["--verify", "--finalize"])
def test_verify_and_finalize_take_the_same_out_folders(one_cache, tiny_vit_dir, capsys, mode):
    root, cache_dir = one_cache
    capsys.readouterr()
    for out in (cache_dir.parent.parent, cache_dir.parent, cache_dir):
        assert main(_out_argv(root, out, tiny_vit_dir, mode)) == 0
        assert f"cache: {cache_dir}" in capsys.readouterr().out
    assert main(_out_argv(root, cache_dir / "train", tiny_vit_dir, mode)) == 2
    assert f"lies inside the cache folder {cache_dir}" in capsys.readouterr().err
