"""The embedding outlier rule on stain-varied data, end to end with a real model (efficientnet-lite0, CPU).

Builds the acceptance test's dirty dataset (25 real images and 12 planted problems; benchmarks/dirty_dataset.py)
as it is and with stain variants (pale throughout with the four kinds mixed, desaturated throughout, every other
image varied), extracts it, and prints per setting: the largest outlier ratio of a clean image and the ratios of the
three cartoons, with copies kept out of each other's neighbours (the rule) and without (the rule before issue 12),
and the images flagged against what was planted.

    python -m benchmarks.hygiene_outliers [--sizes 460 700] [--keep DIR]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path

import numpy as np

from benchmarks import SHARED_DATA
from benchmarks import stain_variants as variants
from benchmarks.dirty_dataset import build_dirty_dataset, stain_transform
from pipeline import cache
from pipeline.extract.run import run_extraction
from pipeline.extract.settings import ExtractionSettings
from pipeline.hygiene import assessment

DATA = SHARED_DATA
CARTOONS = ("train/img_0022", "train/img_0023", "train/img_0024")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[460, 700], help="longest sides of the variants")
    parser.add_argument("--keep", type=Path, default=None, help="keep the datasets and caches here")
    args = parser.parse_args(argv)
    root = args.keep or Path(tempfile.mkdtemp(prefix="hygiene-outliers-"))
    sizes = tuple(args.sizes)
    settings = {
        "original": None,
        "pale throughout, four kinds": stain_transform(variants.VARIANT_KINDS, sizes, seed=4),
        "desaturated throughout": stain_transform(("desaturated",), sizes, seed=5),
        "every other image varied": stain_transform(variants.VARIANT_KINDS, sizes, every=2, seed=6),
    }
    print(f"{'setting':<28} {'clean max':>9} {'(before)':>9}  {'cartoons':<18} {'(before)':<18} flags")
    for k, (name, transform) in enumerate(settings.items()):
        started = time.perf_counter()
        data = root / f"data{k}"
        expected = build_dirty_dataset(data, DATA / "glas15", DATA / "lc25000-lung", transform)
        summary = run_extraction(ExtractionSettings(data_dir=data, model="efficientnet-lite0", out_dir=root / "f",
                                                    workers=1, progress=False))
        sets = [cache.load_split(summary.cache_dir, split) for split in ("train", "test")]
        report = assessment.assess_feature_sets(sets)
        embeddings = np.concatenate([fs.image_embeddings() for fs in sets]).astype(np.float64)
        before = assessment._outlier_ratio(embeddings, np.arange(len(embeddings)))  # every image its own group
        ratio = report.scores["outlier_ratio"]
        clean = np.array([not expected[i] - {"near_duplicate", "exact_duplicate"} for i in report.image_ids])
        cartoons = np.array([i in CARTOONS for i in report.image_ids])
        excluded = report.excluded()
        wrong = [i for n, i in enumerate(report.image_ids) if clean[n] and excluded[n]]
        missed = [i for n, i in enumerate(report.image_ids) if expected[i] - set(report.reasons(n))]
        print(f"{name:<28} {np.nanmax(ratio[clean]):>9.2f} {before[clean].max():>9.2f}  "
              f"{str(np.round(ratio[cartoons], 2)):<18} {str(np.round(before[cartoons], 2)):<18} "
              f"clean flagged {len(wrong)} {wrong}, problems missed {len(missed)} {missed} "
              f"({time.perf_counter() - started:.0f} s)", flush=True)
    if args.keep is None:
        shutil.rmtree(root)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
