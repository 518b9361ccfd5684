"""What a newcomer meets first: one cache per data folder, Ctrl-C, versions recorded, progress in a log file."""

import json
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from pipeline import cache
from pipeline.cli.classify import main as classify_main
from pipeline.cli.extract import main as extract_main
from pipeline.data.tiling import TilingSettings
from pipeline.errors import CacheError
from pipeline.provenance import PACKAGES
from tests.conftest import TINY_SIZE

ROOT = Path(__file__).resolve().parents[2]


def _extract_argv(data, out, model):
    return ["--data", str(data), "--model", str(model), "--out", str(out), "--tile-size", str(TINY_SIZE),
            "--workers", "0", "--no-progress", "-q"]


def _distinct_masks(data):
    """make_data gives every image the same mask (one duplicate group); move one mask pixel per image."""
    for i, mask in enumerate(sorted(data.glob("*_data/mask_*.png"))):
        pixels = np.array(Image.open(mask))
        pixels[-1, -1 - i] = 255
        Image.fromarray(pixels).save(mask)
    return data


def _files(cache_dir):
    return {p.relative_to(cache_dir): p.read_bytes() for p in sorted(cache_dir.rglob("*.h5"))}


def test_a_second_data_folder_gets_its_own_cache_and_never_writes_the_first(make_data, tmp_path, tiny_vit_dir,
                                                                            capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    first = _distinct_masks(make_data(n_train=4, n_test=2, seed=1).rename(tmp_path / "first"))
    # the same file names, other pixels
    second = _distinct_masks(make_data(n_train=4, n_test=2, seed=2).rename(tmp_path / "other"))
    assert extract_main(_extract_argv(first, "features", tiny_vit_dir)) == 0
    (first_cache,) = cache.find_caches(Path("features"))
    before = _files(first_cache)
    assert extract_main(_extract_argv(second, "features", tiny_vit_dir)) == 0
    caches = cache.find_caches(Path("features"))
    assert len(caches) == 2 and first_cache in caches
    assert _files(first_cache) == before  # not one byte of the first cache changed
    assert cache.read_settings(first_cache)["data_dir"] == str(first.resolve())
    second_cache = next(c for c in caches if c != first_cache)
    assert second_cache.parent.name.startswith("other-")
    # classify finds the cache of --data among several, and the run folder says where it came from
    capsys.readouterr()
    assert classify_main(["--data", str(first), "--head", "logreg", "--folds", "2", "-q"]) == 0
    assert f"run folder: runs/first_{first_cache.name}_logreg" in capsys.readouterr().out
    assert classify_main(["--data", str(second), "--head", "logreg", "--folds", "2", "-q"]) == 0
    assert f"run folder: runs/other_{second_cache.name}_logreg" in capsys.readouterr().out
    assert classify_main(["--head", "logreg", "--folds", "2", "-q"]) == 2  # no data/ here, two caches: choose
    assert "holds several caches" in capsys.readouterr().err


def test_a_cache_folder_of_another_data_folder_is_refused(make_data, tmp_path, tiny_model):
    from pipeline.extract.run import run_extraction
    from pipeline.extract.settings import ExtractionSettings

    data = make_data(n_train=2, n_test=0)
    summary = run_extraction(ExtractionSettings(data_dir=data, out_dir=tmp_path / "f", workers=0, progress=False,
                                                tiling=TilingSettings(TINY_SIZE)), tiny_model)
    settings = cache.read_settings(summary.cache_dir)
    cache.write_json(summary.cache_dir / cache.SETTINGS_FILE, {**settings, "data_dir": "/elsewhere/data"})
    before = _files(summary.cache_dir)
    with pytest.raises(CacheError, match="holds the features of /elsewhere/data, not of --data .*; it is left as it"):
        run_extraction(ExtractionSettings(data_dir=data, out_dir=tmp_path / "f", workers=0, progress=False,
                                          tiling=TilingSettings(TINY_SIZE)), tiny_model)
    assert _files(summary.cache_dir) == before


def test_versions_are_recorded_by_both_stages(make_data, tmp_path, tiny_vit_dir, capsys):
    data = _distinct_masks(make_data(n_train=4, n_test=1))
    assert extract_main(_extract_argv(data, tmp_path / "f", tiny_vit_dir)) == 0
    (cache_dir,) = cache.find_caches(tmp_path / "f")
    assert classify_main(["--features", str(cache_dir), "--head", "logreg", "--folds", "2", "--out",
                          str(tmp_path / "run"), "--no-pictures", "-q"]) == 0
    for versions in (cache.read_settings(cache_dir)["versions"],
                     json.loads((tmp_path / "run" / "config.json").read_text())["versions"]):
        assert set(PACKAGES) | {"python", "pathology-pipeline", "git_commit"} <= set(versions)
        assert versions["torch"] and versions["numpy"] and versions["python"].count(".") == 2
    capsys.readouterr()


_INTERRUPT = """
import os, signal, sys
from pipeline.extract import writer

# a shell starts background jobs with SIGINT ignored, and Python keeps that: give this process a terminal's Ctrl-C
signal.signal(signal.SIGINT, signal.default_int_handler)

submit, written = writer.FeatureWriter.submit, []

def submit_then_ctrl_c(self, *args, **kwargs):
    submit(self, *args, **kwargs)
    written.append(1)
    if len(written) == 2:  # what a terminal does on Ctrl-C: SIGINT to the whole process group, workers too
        os.killpg(os.getpgid(0), signal.SIGINT)

writer.FeatureWriter.submit = submit_then_ctrl_c
from pipeline.cli.extract import main
sys.exit(main(sys.argv[1:]))
"""


@pytest.mark.slow  # two extract.py processes
def test_ctrl_c_during_extraction_is_one_line_and_exit_130_then_the_rerun_resumes(make_data, tmp_path, tiny_vit_dir):
    data = make_data(n_train=6, n_test=0)
    script = tmp_path / "interrupt.py"
    script.write_text(textwrap.dedent(_INTERRUPT))
    argv = ["--data", str(data), "--model", str(tiny_vit_dir), "--out", str(tmp_path / "f"), "--tile-size",
            str(TINY_SIZE), "--workers", "1", "--batch-size", "2", "--no-progress", "-q"]
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, str(script), *argv], capture_output=True, text=True, timeout=120,
                          start_new_session=True, env=env)
    assert done.returncode == 130, done.stderr
    assert "Traceback" not in done.stderr and "KeyboardInterrupt" not in done.stderr
    last = done.stderr.strip().splitlines()[-1]
    assert last.startswith("interrupted; ") and last.endswith("run the same command to resume"), done.stderr
    kept = int(last.split()[1])
    assert kept >= 1
    again = subprocess.run([sys.executable, str(ROOT / "extract.py"), *argv], capture_output=True, text=True,
                           timeout=120, env=env)
    assert again.returncode == 0 and f"{6 - kept} embedded" in again.stdout and f"{kept} up to date" in again.stdout


def test_ctrl_c_during_classification_is_one_line_and_exit_130(tmp_path, monkeypatch, capsys):
    from tests.conftest import write_fake_cache

    cache_dir, _ = write_fake_cache(tmp_path, ["a", "b"] * 4, n_test=1, dim=8)

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("pipeline.classify.run.cross_validate", interrupted)
    assert classify_main(["--features", str(cache_dir), "--head", "logreg", "--folds", "2", "-q"]) == 130
    err = capsys.readouterr().err.strip()
    assert err.splitlines()[-1] == "interrupted; run the same command to resume" and "Traceback" not in err


@pytest.mark.slow  # an extract.py process
def test_progress_in_a_log_file_is_a_line_now_and_then_not_bar_redraws(make_data, tmp_path, tiny_vit_dir):
    data = make_data(n_train=6, n_test=0)
    argv = ["--data", str(data), "--model", str(tiny_vit_dir), "--out", str(tmp_path / "f"), "--tile-size",
            str(TINY_SIZE), "--workers", "0", "--batch-size", "1"]
    with open(tmp_path / "log.txt", "w") as log:  # stderr is a file, as in `extract.py 2> log.txt`
        subprocess.run([sys.executable, str(ROOT / "extract.py"), *argv], stderr=log, stdout=subprocess.DEVNULL,
                       timeout=120, check=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    text = (tmp_path / "log.txt").read_text()
    assert "\r" not in text and "it/s" not in text
    assert "extract: 6/6 img" in text
