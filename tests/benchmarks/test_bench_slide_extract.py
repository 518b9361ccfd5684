"""The slide extraction benchmark: its made slide's tissue share, the process tree it samples, a small speed run."""

import os
import subprocess
import sys

import pytest

from benchmarks import bench_slide_extract, slide_maker


def test_the_covered_layout_holds_the_tissue_share_asked_for():
    layout = bench_slide_extract.covered_layout(4096, 0.85, slide_maker.synthetic_patches())
    assert layout.tissue_mask(16).mean() == pytest.approx(0.85, abs=0.01)


def test_the_process_tree_holds_a_child_and_its_memory_is_read():
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(5)"])
    try:
        tree = bench_slide_extract._tree(os.getpid())
        assert os.getpid() in tree and child.pid in tree
        assert bench_slide_extract._status_kib(child.pid)["VmHWM"] > 0
    finally:
        child.kill()
        child.wait()


def test_a_small_speed_run_prints_both_readers_and_their_ratio(tmp_path, capsys):
    pytest.importorskip("openslide")
    assert bench_slide_extract.main(["speed", "--size", "2048", "--repeats", "1", "--work", str(tmp_path)]) == 0
    out = capsys.readouterr().out
    assert "bare OpenSlide read_region" in out and out.count("x the bare loop") == 3
