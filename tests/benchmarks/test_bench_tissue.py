"""The tissue benchmark runs on its default made slides (4,096 px at 20x, 8,192 at 40x; ~3 s), prints one line
per scan and variant and writes the sheet."""

import re

from PIL import Image

from benchmarks import bench_tissue


def test_bench_tissue_prints_every_scan_and_variant(glas15, tmp_path, capsys):
    # on glas15's H&E (the glas15 fixture skips without it): its synthetic stand-in has no pen-free guarantee
    sheet = tmp_path / "slides.png"
    assert bench_tissue.main(["--sheet", str(sheet)]) == 0
    lines = [line for line in capsys.readouterr().out.splitlines() if "precision" in line]
    assert len(lines) == 2 * len(bench_tissue.VARIANTS)
    plain = [line for line in lines if " plain " in line]
    for line in plain:
        precision, recall = (float(v) for v in re.search(r"precision ([\d.]+) recall ([\d.]+)", line).groups())
        assert precision >= 0.95 and recall >= 0.85 and "on pen 0" in line
    assert Image.open(sheet).size[0] > 0
