"""Where the hygiene thresholds come from: the cheap checks on the 615 real H&E images of ../shared/data.

Prints, per data set, the range of each colour statistic, and the distribution of each image's distance (bits of
64) to its nearest perceptual hash over all flips/rotations of the others. Clean tissue must stay on the safe side
of every default in pipeline.hygiene.assessment.QualitySettings.

    python benchmarks/calibrate_quality.py
"""

from __future__ import annotations

import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from pipeline.data.images import read_image, read_mask  # noqa: E402
from pipeline.data.records import find_records  # noqa: E402
from pipeline.hygiene.checks import hamming, image_quality  # noqa: E402
from pipeline.hygiene.settings import QualitySettings  # noqa: E402

SHARED = Path(__file__).resolve().parents[2] / "shared" / "data"


def main() -> None:
    print(f"defaults: {QualitySettings()}")
    for name in ("glas15", "lc25000-lung"):
        if not (SHARED / name).is_dir():
            print(f"{name}: absent")
            continue
        attrs = []
        for record in find_records(SHARED / name):
            pixels = read_image(record.image_path).pixels
            inside = read_mask(record.mask_path, pixels.shape[1::-1]).inside
            attrs.append(image_quality(pixels, inside))
        print(f"\n{name}: {len(attrs)} images")
        for key in ("q_he_fraction", "q_off_hue_fraction", "q_green_fraction", "q_flat_fraction", "q_white_fraction"):
            values = np.array([a[key] for a in attrs])
            print(f"  {key:<20} min {values.min():.4f}  p5 {np.percentile(values, 5):.4f}  median "
                  f"{np.median(values):.4f}  p95 {np.percentile(values, 95):.4f}  max {values.max():.4f}")
        hashes = np.array([[int(h, 16) for h in a["phashes"]] for a in attrs], dtype=np.uint64)
        nearest = []
        for i in range(len(hashes)):
            distance = hamming(hashes[i, 0], hashes).min(axis=1)
            distance[i] = 64
            nearest.append(int(distance.min()))
        counts = np.bincount(nearest, minlength=25)
        print("  nearest perceptual-hash distance (bits: images): "
              + ", ".join(f"{bits}: {n}" for bits, n in enumerate(counts) if n))


if __name__ == "__main__":
    main()
