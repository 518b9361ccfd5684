"""Scale-out on the CPU: torchrun with two ranks (also with one rank killed -9 and restarted) and two independent
``--shard`` processes writing one cache at the same time; each ends with the cache of a single process.
"""

import csv
import json
import logging
import os
import re
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from pipeline import cache
from pipeline.cache import store
from pipeline.cache.claims import live_claims
from pipeline.classify.run import run_classification
from pipeline.classify.settings import ClassificationSettings
from pipeline.cli.extract import main as extract_main
from pipeline.data.records import find_records
from pipeline.data.tiling import TilingSettings
from pipeline.errors import CacheError
from pipeline.extract.run import run_extraction
from pipeline.extract.settings import ExtractionSettings
from pipeline.extract.sharding import Shard, shard_records
from pipeline.hygiene.assessment import QUALITY_FILE
from tests.conftest import TINY_SIZE

ROOT = Path(__file__).resolve().parents[2]
ENTRY = Path(__file__).with_name("scale_out_entry.py")  # extract.py with kill and meeting hooks
TORCHRUN = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node", "2"]


@pytest.fixture(autouse=True)
def _restore_logging():
    """main() points logging at the captured stderr of its test; later runs must not log into a closed stream."""
    handlers, level = logging.root.handlers[:], logging.root.level
    yield
    logging.root.handlers[:], logging.root.level = handlers, level


@pytest.fixture
def scene(make_data, tmp_path, tiny_vit_dir):
    """A data folder with one unreadable image, the flags of every run, and the cache of one process."""
    root = make_data(n_train=8, n_test=4, size=(160, 128))
    (root / "train_data" / "img_0099.png").write_bytes(b"")  # skipped, by whichever shard holds it
    (root / "train_data" / "mask_0099.png").write_bytes((root / "train_data" / "mask_0000.png").read_bytes())
    flags = ["--data", str(root), "--model", str(tiny_vit_dir), "--tile-size", "32", "--batch-size", "4",
             "--workers", "0", "--precision", "fp32", "--no-progress"]
    assert extract_main([*flags, "--out", str(tmp_path / "single"), "-q"]) == 0
    (reference,) = cache.find_caches(tmp_path / "single")
    return flags, reference


def _environment(**extra):
    return {**os.environ, "PYTHONPATH": str(ROOT), "HF_HUB_DISABLE_PROGRESS_BARS": "1", **extra}


def _quality_rows(cache_dir):
    with (cache_dir / QUALITY_FILE).open() as handle:
        return list(csv.DictReader(handle))


def _assert_same_cache(got, reference):
    """Same files, coords and attributes, features within 1e-5, same settings, skipped images and quality rows."""
    names = sorted(p.relative_to(reference) for p in reference.rglob("*.h5"))
    assert sorted(p.relative_to(got) for p in got.rglob("*.h5")) == names
    for name in names:
        a, b = store.read_image_features(got / name), store.read_image_features(reference / name)
        np.testing.assert_array_equal(a.coords, b.coords)
        np.testing.assert_allclose(a.features, b.features, atol=1e-5, rtol=0)
        assert a.attrs == b.attrs
    for name in (cache.SETTINGS_FILE, cache.SKIPPED_FILE):
        assert json.loads((got / name).read_text()) == json.loads((reference / name).read_text()), name
    rows, expected = _quality_rows(got), _quality_rows(reference)
    assert [row["image_id"] for row in rows] == [row["image_id"] for row in expected]
    for row, want in zip(rows, expected, strict=True):
        for column, value in want.items():
            try:  # scores are printed with 4 decimals; features may differ in the 7th
                assert abs(float(row[column]) - float(value)) <= 2e-4, (row["image_id"], column)
            except ValueError:
                assert row[column] == value, (row["image_id"], column)
    assert [p for p in got.rglob("*") if store.TEMP_MARKER in p.name] == []
    assert live_claims(got) == []


def _records(cache_dir):
    return {record["key"]: record for record in cache.read_shard_records(cache_dir)}


def _run(argv, **env):
    done = subprocess.run(argv, env=_environment(**env), cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    return done


@pytest.mark.slow  # a torchrun job of two ranks
def test_torchrun_two_ranks_equal_one_process(scene, tmp_path):
    flags, reference = scene
    done = _run([*TORCHRUN, str(ENTRY), *flags, "--out", str(tmp_path / "ranks")])
    (cache_dir,) = cache.find_caches(tmp_path / "ranks")
    _assert_same_cache(cache_dir, reference)
    records = _records(cache_dir)
    assert sorted(records) == ["all-0of2", "all-1of2"]
    assert all(record["n_embedded"] >= 5 for record in records.values())  # both ranks did part of the work
    images = [set(record["images"]) for record in records.values()]
    assert not images[0] & images[1] and len(images[0] | images[1]) == 13
    log = [line for line in done.stderr.splitlines() if " pipeline." in line]
    assert log and all(re.match(r"\[rank [01]/2\] ", line) for line in log)  # every log line names its rank
    assert "[rank 0/2] INFO pipeline.extract.run: shard 0/2 done; waiting for the other ranks" in done.stderr
    assert done.stdout.count("quality: ") == 1  # rank 0 alone wrote the report of the whole cache


@pytest.mark.slow  # two attempts of a torchrun job
def test_torchrun_rank_killed_and_restarted_equals_one_process(scene, tmp_path):
    flags, reference = scene
    argv = [*TORCHRUN, "--max-restarts", "1", str(ENTRY), *flags, "--out", str(tmp_path / "ranks")]
    done = _run(argv, KILL_AFTER_FILES="1", KILL_RANK="1")  # rank 1 dies by SIGKILL after its first file
    assert "exitcode: -9" in done.stderr and "local_rank: 1" in done.stderr
    (cache_dir,) = cache.find_caches(tmp_path / "ranks")
    _assert_same_cache(cache_dir, reference)
    restarted = _records(cache_dir)["all-1of2"]
    assert restarted["torchrun"]["restart_count"] == 1 and restarted["n_reused"] >= 1  # it kept its first file
    assert "it belongs to an earlier attempt of this torchrun job" in done.stderr  # its claim was taken over


@pytest.mark.slow  # two extract.py processes
def test_two_shard_processes_write_at_the_same_time_then_finalize(scene, tmp_path, capsys):
    flags, reference = scene
    meet = tmp_path / "meet"
    meet.mkdir()
    out = tmp_path / "shards"
    argvs = [[sys.executable, str(ENTRY), *flags, "--out", str(out), "--shard", f"{i}/2"] for i in range(2)]
    # each process waits after its first file until the other has written one: serialised runs would never meet
    env = _environment(MEET_DIR=str(meet), MEET_COUNT="2")
    processes = [subprocess.Popen(argv, env=env, cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  text=True) for argv in argvs]
    outputs = [process.communicate(timeout=300) for process in processes]
    assert [process.returncode for process in processes] == [0, 0], [err[-3000:] for _, err in outputs]
    assert all("next: when every shard has finished, run extract.py --finalize" in out_ for out_, _ in outputs)
    assert all(re.search(rf"^\[shard {i}/2\] INFO ", err, re.M) for i, (_, err) in enumerate(outputs))
    (cache_dir,) = cache.find_caches(out)
    assert not (cache_dir / QUALITY_FILE).exists()
    windows = []
    for record in _records(cache_dir).values():
        times = [cache.feature_path(cache_dir, i).stat().st_mtime_ns for i in record["images"]
                 if cache.feature_path(cache_dir, i).is_file()]
        windows.append((min(times), max(times)))
    assert max(start for start, _ in windows) < min(end for _, end in windows)  # the write windows overlap
    capsys.readouterr()
    assert extract_main([*flags, "--out", str(out), "--finalize"]) == 0
    text = capsys.readouterr().out
    assert "13 images: 12 embedded, 1 skipped as bad input, 0 not embedded yet" in text
    assert "result: every image is embedded or skipped" in text
    _assert_same_cache(cache_dir, reference)


def test_classify_names_the_images_a_shard_has_not_embedded(make_data, tmp_path, tiny_model):
    root = make_data(n_train=6, n_test=2)
    settings = ExtractionSettings(data_dir=root, out_dir=tmp_path / "f", tiling=TilingSettings(TINY_SIZE), workers=0,
                                  batch_size=4, precision="fp32", progress=False, shard=Shard(0, 2))
    cache_dir = run_extraction(settings, tiny_model).cache_dir
    missing = [record.image_id for record in shard_records(find_records(root), Shard(1, 2))]
    assert len(missing) == 4
    with pytest.raises(CacheError, match=rf"lacks 4 image\(s\) of {root.resolve()} that no extraction has embedded "
                                         rf"yet: {', '.join(missing)}\. If extract.py ran in shards"):
        run_classification(ClassificationSettings(features=cache_dir, folds=2, head="logreg", pictures=False))
