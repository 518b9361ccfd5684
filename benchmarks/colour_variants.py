"""Scanner colour casts, stain jitter and planted pen strokes of real H&E images: what the ink and colour rules see.

Variants of every glas15 image and every 15th lc25000-lung image, each saved as PNG and as JPEG (quality 80):

- ``cast``: green, cyan, yellow, pink and grey casts of a scanner's white balance, each channel of every pixel
  (glass and tissue alike) scaled by a gain (:data:`CASTS`, the gains' distance from 1 times 0.5, 1 or 1.5).
- ``hed_jitter``: haematoxylin, eosin and DAB concentrations scaled x0.6 to x1.4 (:func:`stain_variants.hed_jitter`),
  clipped as scikit-image does, and unclipped (the background's tint scaled too: a yellowish or bluish glass).
- ``stroke``: a green, blue or black pen stroke 3, 8 or 20 px wide, a wavy curve across the image (over glass and
  tissue), added in optical density as ink on a slide is (the tissue shows through: ``OD + coverage x OD_ink``).
  Hygiene judges ink inside the mask only (ink elsewhere harms nothing), and the ink rules are shares of the masked
  pixels: a stroke that only grazes the mask is, by the rules' design, too little ink to flag. So each stroke's curve
  is drawn (seeded) until its centre line runs over the masked tissue for at least :data:`MIN_MASKED_INK` of the
  mask in ink (width x length on masked tissue / masked pixels: 1.5 x the highest ink threshold), up to
  :data:`MAX_DRAWS` draws, else the draw with the most; the stroke still crosses glass and tissue outside the mask.

Each variant is judged as a dataset with the originals (half the images changed) by
``pipeline.hygiene.assessment.assess`` with equal embeddings, as ``benchmarks/calibrate_quality.py`` does. Printed per
variant: images, false flags (``non_tissue`` or ``ink`` on an image with no pen), planted strokes found (``ink``
raised by the rule of the stroke's own colour), and the score that decides (the worst clean image, the mildest
stroke). docs/hygiene.md quotes the table.

``--all-clean`` judges every real image (glas15 and all 600 lc25000-lung tiles) under every clean variant (casts,
jitter, and the originals through JPEG) and no strokes, and names each image falsely flagged: a rare tile that
only some casts turn to a false flag is missed by the default sample (about 2.5 min on 2 cores).

    python -m benchmarks.colour_variants [--lung-every 15] [--all-clean] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw

from benchmarks import stain_variants as variants
from benchmarks.calibrate_quality import DATA, attributes, load_sources
from pipeline.data.colour import channel_sum, optical_density
from pipeline.hygiene.assessment import EXCLUDED_FROM_TRAINING, assess
from pipeline.hygiene.rules import INK_COLOURS
from pipeline.hygiene.settings import QualitySettings
from pipeline.hygiene.stain import BACKGROUND_OD

CASTS = {  # channel gains of a full-strength cast (R, G, B)
    "green": (0.80, 1.00, 0.85),
    "cyan": (0.80, 0.95, 1.00),
    "yellow": (1.00, 0.97, 0.78),
    "pink": (1.00, 0.82, 0.93),
    "grey": (0.85, 0.85, 0.85),
}
STRENGTHS = (0.5, 1.0, 1.5)
PENS = {"green": (40, 150, 80), "blue": (40, 70, 170), "black": (35, 35, 40)}  # each ink's colour on bare glass
WIDTHS = (3, 8, 20)
JPEG_QUALITY = 80
SUPERSAMPLE = 4  # strokes are drawn at 4x and averaged down: anti-aliased edges, as a scan has
MIN_MASKED_INK = 0.006  # a stroke's ink over the masked tissue, share of the masked pixels (1.5 x 0.004, black's rule)
MAX_DRAWS = 64  # curves drawn to find one that crosses the masked tissue that much
CURVE_POINTS = 200


def cast(pixels: np.ndarray, colour: str, strength: float) -> np.ndarray:
    """(H, W, 3) uint8 with each channel scaled by ``1 - strength x (1 - gain)`` of the cast ``colour``."""
    if colour not in CASTS:
        raise ValueError(f"The 'colour' parameter of cast must be one of {tuple(CASTS)}. Got {colour!r} instead.")
    gains = 1.0 - strength * (1.0 - np.asarray(CASTS[colour], dtype=np.float64))
    return np.clip(np.rint(pixels * gains), 0, 255).astype(np.uint8)


def _curve(shape: tuple[int, int], rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """(CURVE_POINTS,) x and y (px) of a wavy centre line from just left of the image to just right of it."""
    height, image_width = shape
    xs = np.linspace(-0.05, 1.05, CURVE_POINTS) * image_width
    centre, amplitude = rng.uniform(0.3, 0.7) * height, rng.uniform(0.05, 0.25) * height
    waves, phase = rng.uniform(0.5, 1.5), rng.uniform(0, 2 * np.pi)
    return xs, centre + amplitude * np.sin(2 * np.pi * waves * xs / image_width + phase)


def _masked_length(xs: np.ndarray, ys: np.ndarray, where: np.ndarray) -> float:
    """Length (px) of the polyline (xs, ys) whose segment midpoints lie on ``where`` ((H, W) bool)."""
    mid_x, mid_y = (xs[1:] + xs[:-1]) / 2, (ys[1:] + ys[:-1]) / 2
    inside = (mid_x >= 0) & (mid_x < where.shape[1]) & (mid_y >= 0) & (mid_y < where.shape[0])
    on = np.zeros(len(mid_x), dtype=bool)
    on[inside] = where[mid_y[inside].astype(int), mid_x[inside].astype(int)]
    return float(np.hypot(np.diff(xs), np.diff(ys))[on].sum())


def stroke_coverage(shape: tuple[int, int], width: int, rng: np.random.Generator,
                    mask: np.ndarray | None = None, tissue: np.ndarray | None = None) -> np.ndarray:
    """(H, W) float coverage in [0, 1] of a wavy line ``width`` px wide from the left edge to the right edge.

    With ``mask`` ((H, W) bool, the region hygiene judges) the curve is drawn until its centre line crosses the
    masked ``tissue`` (default: the whole mask) for :data:`MIN_MASKED_INK` of the masked pixels in ink, at most
    :data:`MAX_DRAWS` times (then the draw that crossed the most).
    """
    height, image_width = shape
    xs, ys = _curve(shape, rng)
    if mask is not None and mask.any():
        where = mask if tissue is None else mask & tissue
        best, best_share = (xs, ys), width * _masked_length(xs, ys, where) / mask.sum()
        for _ in range(MAX_DRAWS - 1):
            if best_share >= MIN_MASKED_INK:
                break
            xs, ys = _curve(shape, rng)
            share = width * _masked_length(xs, ys, where) / mask.sum()
            if share > best_share:
                best, best_share = (xs, ys), share
        xs, ys = best
    big = Image.new("L", (image_width * SUPERSAMPLE, height * SUPERSAMPLE), 0)
    points = [(float(x) * SUPERSAMPLE, float(y) * SUPERSAMPLE) for x, y in zip(xs, ys, strict=True)]
    ImageDraw.Draw(big).line(points, fill=255, width=width * SUPERSAMPLE, joint="curve")
    small = big.resize((image_width, height), Image.Resampling.BOX)
    return np.asarray(small, dtype=np.float64) / 255.0


def pen_stroke(pixels: np.ndarray, colour: str, width: int, rng: np.random.Generator,
               mask: np.ndarray | None = None) -> np.ndarray:
    """(H, W, 3) uint8: ``pixels`` with a pen stroke of ``colour`` (:data:`PENS`) added in optical density.

    With ``mask`` ((H, W) bool), the stroke crosses the masked tissue (:func:`stroke_coverage`).
    """
    if colour not in PENS:
        raise ValueError(f"The 'colour' parameter of pen_stroke must be one of {tuple(PENS)}. Got {colour!r} instead.")
    ink = optical_density(np.array(PENS[colour], dtype=np.uint8)).astype(np.float64)
    od = optical_density(pixels).astype(np.float64)
    tissue = channel_sum(od) >= BACKGROUND_OD if mask is not None else None
    od = od + stroke_coverage(pixels.shape[:2], width, rng, mask, tissue)[..., None] * ink
    return np.clip(np.rint(256.0 * 10.0 ** (-od) - 1.0), 0, 255).astype(np.uint8)


def make_variants(seed: int = 0, originals: bool = False) -> list[tuple[str, str, str | None, object]]:
    """(name, kind, pen colour or None, transform(pixels, rng, mask) -> pixels) of every variant, in table order.

    With ``originals``, first the images unchanged (as a variant: through JPEG, what the others are compared with).
    """
    out: list = [("original", "clean", None, lambda p, rng, m: p)] if originals else []
    for colour in CASTS:
        for strength in STRENGTHS:
            out.append((f"cast {colour} x{strength:g}", "cast", None,
                        lambda p, rng, m, c=colour, s=strength: cast(p, c, s)))
    out.append(("hed_jitter", "jitter", None,
                lambda p, rng, m: variants.hed_jitter(p, tuple(rng.uniform(0.6, 1.4, 3)))))
    out.append(("hed_jitter unclipped", "jitter", None,
                lambda p, rng, m: variants.hed_jitter(p, tuple(rng.uniform(0.6, 1.4, 3)), clip=False)))
    for colour in PENS:
        for width in WIDTHS:
            out.append((f"stroke {colour} {width} px", "stroke", colour,
                        lambda p, rng, m, c=colour, w=width: pen_stroke(p, c, w, rng, m > 0)))
    return out


def evaluate(name: str, pen: str | None, originals: list[dict], changed: list[dict],
             settings: QualitySettings) -> dict:
    """Assess originals + changed images together; count false flags and strokes found (by their own colour)."""
    attrs = originals + changed
    ids = [f"train/img_{i:04d}" for i in range(len(attrs))]
    report = assess(ids, ids, attrs, np.ones((len(attrs), 4)), settings)
    excluded = set(EXCLUDED_FROM_TRAINING)
    clean = range(len(attrs)) if pen is None else range(len(originals))
    false = [i for i in clean if set(report.reasons(i)) & excluded]
    row = {"variant": name, "images": len(changed), "false_flags": len(false),
           "false_rules": sorted({r for i in false for r in report.rules_of(i)}), "false_images": [
               (i, {rule: round(float(attrs[i].get(f"q_{rule}_fraction", np.nan)), 4) for rule in report.rules_of(i)})
               for i in false]}
    if pen is not None:
        planted = range(len(originals), len(attrs))
        row["found"] = sum(bool(report.rules[f"{pen}_ink"][i]) for i in planted)
        row["other_colour"] = sum(any(report.rules[f"{c}_ink"][i] for c in INK_COLOURS if c != pen) for i in planted)
        row["mildest"] = min(float(a[f"q_{pen}_ink_fraction"]) for a in changed)
        row["fractions"] = [float(a[f"q_{pen}_ink_fraction"]) for a in changed]
    worst = {f"q_{c}_ink_fraction": max(float(a[f"q_{c}_ink_fraction"]) for a in attrs[: len(attrs) if pen is None
                                                                                       else len(originals)])
             for c in INK_COLOURS}
    row["worst_clean"] = worst if pen is None else {k: v for k, v in worst.items() if not k.startswith(f"q_{pen}")}
    row["worst_off_hue"] = max(float(a["q_off_hue_fraction"]) for a in changed) if pen is None else None
    return row


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lung-every", type=int, default=15, help="every k-th lc25000-lung image (default 15)")
    parser.add_argument("--all-clean", action="store_true",
                        help="every real image under every clean variant (no strokes), naming each false flag")
    parser.add_argument("--json", type=Path, default=None, help="also write the rows here")
    args = parser.parse_args(argv)
    if not (DATA / "glas15").is_dir() or not (DATA / "lc25000-lung").is_dir():
        print(f"no data under {DATA}: set PIPELINE_SHARED_DATA")
        return 1
    started = time.perf_counter()
    sources = load_sources()
    images = sources["glas15"] + sources["lc25000-lung"][:: 1 if args.all_clean else args.lung_every]
    settings = QualitySettings()
    originals = [attributes(s.pixels, s.mask) for s in images]
    rows = []
    every = "every" if args.all_clean else f"every {args.lung_every}th"
    print(f"{len(images)} real images (glas15 {len(sources['glas15'])}, {every} lc25000-lung); "
          "each variant judged with the originals\n")
    print(f"{'variant':<28} {'images':>6} {'false flags':>11} {'found':>7}   worst clean ink (g/b/k), off-hue | "
          "mildest stroke")
    for k, (name, _, pen, transform) in enumerate(make_variants(originals=args.all_clean), -int(args.all_clean)):
        if args.all_clean and pen is not None:
            continue
        for encoding in ("png", "jpeg") if k >= 0 else ("jpeg",):  # k < 0: the originals, as PNG they are above
            rng = np.random.default_rng(max(k, 0))  # the seeds of the default run
            changed = []
            for source in images:
                pixels = transform(source.pixels, rng, source.mask)
                if encoding == "jpeg":
                    pixels = variants.jpeg(pixels, JPEG_QUALITY)
                changed.append(attributes(pixels, source.mask, encoding))
            row = evaluate(f"{name} {encoding}", pen, originals, changed, settings)
            rows.append(row)
            found = f"{row['found']}/{row['images']}" if pen else "-"
            worst = "/".join(f"{v:.4f}" for v in row["worst_clean"].values())
            tail = f"off-hue {row['worst_off_hue']:.4f}" if pen is None else f"{row['mildest']:.4f}"
            print(f"{row['variant']:<28} {row['images']:>6} {row['false_flags']:>11} {found:>7}   {worst}  {tail}"
                  + (f"  by {row['false_rules']}" if row["false_flags"] else "")
                  + (f"  other colour named {row['other_colour']}" if pen and row["other_colour"] else ""), flush=True)
            for i, rules in row["false_images"] if args.all_clean else ():  # rule: its score (q_<rule>_fraction)
                source = images[i - len(originals)] if i >= len(originals) else images[i]
                print(f"    {source.name}{'' if i >= len(originals) else ' (original)'}: {rules}")
    print("\nthresholds: the worst clean image (originals, casts, jitter) against each stroke's own-colour fraction")
    for colour in INK_COLOURS:
        key = f"q_{colour}_ink_fraction"
        worst = max(r["worst_clean"].get(key, 0.0) for r in rows if not r["variant"].startswith("stroke"))
        strokes = [r for r in rows if r["variant"].startswith(f"stroke {colour} ")]
        if not strokes:
            print(f"  {colour:<6} worst clean {worst:.4f}")
            continue
        shares = "  ".join(f"{r['variant'][len('stroke ' + colour) + 1:]}: p5 {np.percentile(r['fractions'], 5):.4f}"
                           for r in strokes)
        print(f"  {colour:<6} worst clean {worst:.4f}   strokes {shares}")
    print(f"\n(finished in {time.perf_counter() - started:.0f} s)")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
