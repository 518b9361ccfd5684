"""The abmil bag benchmark runs on small bags and prints fit, predict and step for both training modes."""

import re

import pytest

from benchmarks import bench_abmil_bags


@pytest.mark.slow  # two fresh processes, each importing torch: 10-20 s
def test_bench_abmil_bags_prints_every_mode_and_phase(capsys):
    assert bench_abmil_bags.main(["--tiles", "300", "--dim", "8", "--bags", "4", "--epochs", "1",
                                  "--max-train-tiles", "32"]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "peak" in line]
    assert [line.split()[0] for line in lines] == ["all"] * 3 + ["sampled"] * 3
    assert [re.search(r"(fit|predict|step) ", line).group(1) for line in lines] == ["fit", "predict", "step"] * 2
    assert all(float(re.search(r"peak \+\s*([\d.]+) MiB", line).group(1)) >= 0 for line in lines)
