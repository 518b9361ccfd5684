"""Where the hygiene thresholds come from: every real H&E image available, its stain variants, planted problems.

Prints (docs/hygiene.md quotes the numbers):

1. the rules, one line each, and the cost per image of the checks (median of repeated calls; a benchmark line, not
   a test);
2. false flags (``non_tissue`` or ``ink`` on a clean image) on the real images alone (glas15, lc25000-lung, both),
   and for each kind of stain variant (``benchmarks/stain_variants.py``) in three settings: *mixed* (every other
   image replaced by its variant), *pale throughout* (every image replaced) and *glas15 only* (its 15 images, all
   replaced: the tiny case), in acceptance-sized sets (the 25 clean images of the acceptance test, several seeds)
   and full sets (all 615 images); with and without the robust-z part of the rules;
3. detection of every planted problem in those sets (cartoons sharing a mask, green blobs, exact copies, flipped,
   rotated, re-encoded and resized copies) and of harder extras (cartoons at 200 px JPEG 45 or through the variant,
   green ink that fades with the stain, greyscale pictures, blank slides);
4. the score distributions and each threshold's margin: the worst clean image against the mildest planted problem.

Flags come from ``pipeline.hygiene.assessment.assess`` itself, with equal embeddings (the embedding outlier rule is
measured end to end by tests/integration/test_hygiene_acceptance.py and benchmarks/hygiene_lung.py instead).

    python -m benchmarks.calibrate_quality [--seeds 3] [--quick] [--json out.json]

Data: ``$PIPELINE_SHARED_DATA`` or ``../shared/data`` next to the checkout (glas15, lc25000-lung).
"""

from __future__ import annotations

import argparse
import hashlib
import json
import tempfile
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks import SHARED_DATA
from benchmarks import stain_variants as variants
from pipeline.cache import store
from pipeline.data.images import pixels_xxh3
from pipeline.data.records import find_records
from pipeline.hygiene import rescore
from pipeline.hygiene.assessment import EXCLUDED_FROM_TRAINING, assess
from pipeline.hygiene.checks import SCORES, dihedral_phashes, hamming, image_quality
from pipeline.hygiene.rules import rule_lines
from pipeline.hygiene.settings import QualitySettings
from pipeline.hygiene.stain import stain_scores

DATA = SHARED_DATA
LUNG_CLEAN = (0, 1, 2, 3, 4, 6, 7, 8, 9, 10)  # as the acceptance test: mutually distinct lung tiles
EXCLUDING = set(EXCLUDED_FROM_TRAINING)


@dataclass
class Source:
    """A real image: name, (H, W, 3) uint8 pixels, (H, W) uint8 0/255 mask."""

    name: str
    pixels: np.ndarray
    mask: np.ndarray


def load_sources() -> dict[str, list[Source]]:
    """Every real image of the shared data, by dataset, in file order."""
    out: dict[str, list[Source]] = {}
    for dataset in ("glas15", "lc25000-lung"):
        items = []
        for split in ("train_data", "test_data"):
            for path in sorted((DATA / dataset / split).glob("img_*")):
                mask = np.asarray(Image.open(path.with_name(path.stem.replace("img_", "mask_") + ".png")))
                mask = ((mask.max(axis=-1) if mask.ndim == 3 else mask) > 0).astype(np.uint8) * 255
                pixels = np.asarray(Image.open(path).convert("RGB"))
                items.append(Source(f"{dataset}/{split}/{path.name}", pixels, mask))
        out[dataset] = items
    return out


def _sha(array: np.ndarray) -> str:
    digest = hashlib.sha256(str(array.shape).encode())
    digest.update(np.ascontiguousarray(array).tobytes())
    return digest.hexdigest()


def attributes(pixels: np.ndarray, mask: np.ndarray, encoding: str = "png") -> dict:
    """What extraction stores for an image: the hygiene attributes, checksums and mask fraction."""
    pixels_sum = pixels_xxh3(pixels)
    return {**image_quality(pixels, mask > 0), "pixels_xxh3": pixels_sum, "image_sha256": f"{pixels_sum}:{encoding}",
            "mask_sha256": _sha(mask), "mask_fraction": float((mask > 0).mean())}


@dataclass
class Dataset:
    """Images with their role (``clean``, a planted problem, or ``extra:...``) and the flags each must raise."""

    name: str
    ids: list[str] = field(default_factory=list)
    roles: list[str] = field(default_factory=list)
    expected: list[set] = field(default_factory=list)
    attrs: list[dict] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)  # what the score distributions pool: a kind, or the role

    def add(self, split: str, role: str, expected, attrs: dict, group: str | None = None) -> int:
        self.ids.append(f"{split}/img_{sum(i.startswith(split) for i in self.ids):04d}")
        self.roles.append(role)
        self.groups.append(group or role)
        self.expected.append(set(expected))
        self.attrs.append(attrs)
        return len(self.ids) - 1


def plant(dataset: Dataset, images: dict, transform: Callable | None, rng: np.random.Generator) -> None:
    """The acceptance test's planted problems (built from the dataset's own, possibly pale, images) and extras."""
    cartoon_mask = variants.cartoon_mask()
    for k, drawing in enumerate(variants.cartoons()):
        dataset.add("train", f"cartoon {k}", {"non_tissue", "shared_mask"}, attributes(drawing, cartoon_mask))
    for role in ("blob_a", "blob_b"):
        pixels, mask, source = images[role]
        dataset.expected[source].add("near_duplicate")
        blob = attributes(variants.green_blob(pixels, mask), mask)
        dataset.add("train", "green_blob", {"ink", "near_duplicate"}, blob)
    pixels, mask, source = images["exact"]
    dataset.expected[source].add("exact_duplicate")
    dataset.add("train", "exact_copy_same_file", {"exact_duplicate"}, dict(dataset.attrs[source]))
    dataset.add("train", "exact_copy_other_bytes", {"exact_duplicate"},
                {**dataset.attrs[source], "image_sha256": dataset.attrs[source]["pixels_xxh3"] + ":png-1"})
    copies = [("flip_rotate", "flipped_copy", lambda p, m: variants.flipped(p, m), "train"),
              ("flip_rotate", "rotated_copy", lambda p, m: variants.rotated(p, m), "train"),
              ("reencode", "jpeg80_copy", lambda p, m: (variants.reencoded(p), m), "train"),
              ("resize", "resized_copy", variants.resized_copy, "train"),
              ("test_rotate", "rotated_copy_in_test", lambda p, m: variants.rotated(p, m, 3), "test")]
    for role, name, make, split in copies:
        pixels, mask, source = images[role]
        dataset.expected[source].add("near_duplicate")
        dataset.add(split, name, {"near_duplicate"}, attributes(*make(pixels, mask)))
    # harder than the acceptance test: reported apart
    for k, drawing in enumerate(variants.cartoons()):
        small, small_mask = variants.resize(drawing, cartoon_mask, 200)
        dataset.add("train", f"extra:cartoon_200px_jpeg45 {k}", {"non_tissue"},
                    attributes(variants.jpeg(small, 45), small_mask, "jpeg"))
        if transform is not None:
            dataset.add("train", f"extra:cartoon_through_variant {k}", {"non_tissue"},
                        attributes(*transform(drawing, cartoon_mask, rng)[:2]))
    pixels, mask, _ = images["ink_before_variant"]
    inked, inked_mask, params = variants.green_blob(pixels, mask), mask, {}
    if transform is not None:
        inked, inked_mask, params = transform(inked, mask, rng)
    # clipped HED jitter (skimage's) turns green ink dark purple: no longer ink, so no test of the ink rule
    if not ("scales" in params and "unclipped" not in dataset.name):
        dataset.add("train", "extra:green_ink_through_variant", {"ink"}, attributes(inked, inked_mask))
    grey = np.repeat(np.asarray(Image.fromarray(pixels).convert("L"))[..., None], 3, axis=-1)
    dataset.add("train", "extra:greyscale_picture", {"non_tissue"}, attributes(variants.jpeg(grey, 75), mask, "jpeg"))
    blank = np.clip(np.random.default_rng(7).normal(243.0, 2.5, size=(400, 600, 3)), 0, 255).astype(np.uint8)
    dataset.add("train", "extra:blank_slide", {"non_tissue"}, attributes(blank, np.full((400, 600), 255, np.uint8)))


def build(name: str, sources: list[Source], planted_from: dict[str, int], changed: Callable[[int], bool],
          transform: Callable | None, rng: np.random.Generator | None, test_from: int | None = None,
          kind: str = "") -> Dataset:
    """``sources`` (image i through ``transform`` when ``changed(i)``) and the problems planted from them."""
    dataset, kept = Dataset(name), {}
    for i, source in enumerate(sources):
        pixels, mask, group = source.pixels, source.mask, "original"
        if transform is not None and changed(i):
            (pixels, mask, _), group = transform(pixels, mask, rng), kind
        split = "test" if test_from is not None and i >= test_from else "train"
        index = dataset.add(split, "clean", (), attributes(pixels, mask), group)
        kept[i] = (pixels, mask, index)
    if planted_from:
        plant(dataset, {role: kept[i] for role, i in planted_from.items()}, transform, rng)
    return dataset


@dataclass
class Outcome:
    """False flags on clean images and each problem's detection in one dataset."""

    n_clean: int
    false_flags: list[str]
    found: dict[str, list[bool]]


def evaluate(dataset: Dataset, settings: QualitySettings) -> Outcome:
    """Flag with assess() (equal embeddings) and compare with what each image must raise."""
    n = len(dataset.ids)
    report = assess(dataset.ids, dataset.ids, dataset.attrs, np.ones((n, 4)), settings)
    false_flags, found = [], defaultdict(list)
    for i, (role, expected) in enumerate(zip(dataset.roles, dataset.expected, strict=True)):
        raised = set(report.reasons(i))
        if role == "clean" and raised & EXCLUDING:
            false_flags.append(f"{dataset.ids[i]}: {sorted(raised & EXCLUDING)} by {report.rules_of(i)}")
        for flag in sorted(expected):
            found[f"{role.split(' ')[0] if role.startswith('cartoon') else role}: {flag}" if role != "clean"
                  else f"source of a copy: {flag}"].append(flag in raised)
    return Outcome(sum(role == "clean" for role in dataset.roles), false_flags, dict(found))


def percentiles(values) -> str:
    values = np.asarray(values, dtype=np.float64)
    p = np.percentile(values, [0, 1, 50, 99, 100]) if values.size else [np.nan] * 5
    return "min {:.4f}  p1 {:.4f}  median {:.4f}  p99 {:.4f}  max {:.4f}".format(*p)


def print_costs(sources: dict[str, list[Source]], repeats: int) -> dict[str, float]:
    """Median milliseconds per call of the stain scores and of all checks (with the perceptual hashes)."""
    glas, lung = sources["glas15"][0], sources["lc25000-lung"][0]
    big, big_mask = variants.resize(glas.pixels, glas.mask, 1000)
    inked = variants.green_blob(glas.pixels, glas.mask)
    cases = {"glas15 600x400": (glas.pixels, glas.mask), "lc25000 224x224": (lung.pixels, lung.mask),
             "glas15 resized 1000x667": (big, big_mask), "glas15 600x400 with ink": (inked, glas.mask)}
    out = {}
    print(f"\n== cost per image (median of {repeats} calls, one process) ==")
    for label, (pixels, mask) in cases.items():
        for what, function in (("stain scores", stain_scores), ("all checks (+ hashes)", image_quality)):
            times = []
            for _ in range(repeats):
                start = time.perf_counter()
                function(pixels, mask > 0)
                times.append(time.perf_counter() - start)
            out[f"{label}: {what}"] = 1e3 * float(np.median(times))
            print(f"  {label:<26} {what:<24} {out[f'{label}: {what}']:6.2f} ms")
    return out


def print_rescore_cost() -> dict[str, float]:
    """Milliseconds per file to re-score a cache of an older hygiene version (decode, checks, rewrite), no model."""
    out = {}
    print("\n== re-scoring a cache made by an older hygiene version (decode + checks + atomic rewrite, one process) ==")
    for dataset, count in (("glas15", 15), ("lc25000-lung", 100)):
        records = find_records(DATA / dataset, "train")[:count]
        with tempfile.TemporaryDirectory() as folder:
            paths = []
            for record in records:
                path = Path(folder) / f"{record.image_id}.h5"
                sha = rescore.score_image(record, 10**9)[0]
                store.write_image_features(path, np.zeros((4, 768), np.float32), np.zeros((4, 2)), np.ones(4),
                                           {"image_sha256": sha, "q_he_fraction": 0.5})
                paths.append(path)
            start = time.perf_counter()
            done = rescore.rescore_files(records, paths, 10**9, workers=0, progress=False)
            out[dataset] = 1e3 * (time.perf_counter() - start) / len(records)
        print(f"  {dataset:<13} {len(done.fresh)} files: {out[dataset]:.1f} ms per file")
    return out


def _hashes(phashes: list[str]) -> np.ndarray:
    return np.array([int(h, 16) for h in phashes], dtype=np.uint64)


def print_ink_hash(glas: list[Source], settings: QualitySettings) -> dict:
    """Bits between a green-blob copy and its source: plain perceptual hash against the ink-masked one."""
    rng = np.random.default_rng(11)
    plain, masked = [], []
    for source in glas:
        for kind in ("original", *variants.VARIANT_KINDS):
            for size in (300, 600, 1000):
                if kind == "original":
                    pixels, mask = variants.resize(source.pixels, source.mask, size)
                else:
                    pixels, mask, _ = variants.stain_variant(kind, source.pixels, source.mask, rng, size)
                inked = variants.green_blob(pixels, mask)
                plain.append(int(hamming(_hashes(dihedral_phashes(inked))[0], _hashes(dihedral_phashes(pixels))).min()))
                copy, original = image_quality(inked, mask > 0), image_quality(pixels, mask > 0)
                masked.append(int(hamming(_hashes(copy["phashes"])[0], _hashes(original["phashes"])).min()))
    hashes = [_hashes(image_quality(s.pixels, s.mask > 0)["phashes"]) for s in glas]
    distinct = min(int(hamming(hashes[i][0], hashes[j]).min()) for i in range(len(glas)) for j in range(len(glas))
                   if i != j)
    print("\n== green-blob copies of glas15 (original and the 4 variants, at 300/600/1000 px): bits to the source ==")
    for label, values in (("plain hash", plain), ("ink left out", masked)):
        over = sum(v > settings.phash_distance for v in values)
        print(f"  {label:<13} median {np.median(values):4.1f}  p95 {np.percentile(values, 95):4.1f}  "
              f"max {max(values):>2}  over {settings.phash_distance} bits (link lost): {over} of {len(values)}")
    print(f"  distinct glas15 images: nearest at {distinct} bits")
    return {"plain": plain, "masked": masked, "distinct_min": distinct}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seeds", type=int, default=3, help="seeds of the acceptance-sized sets (default 3)")
    parser.add_argument("--quick", action="store_true", help="acceptance-sized sets only, one seed, no stress kinds")
    parser.add_argument("--json", type=Path, default=None, help="also write the numbers here")
    args = parser.parse_args(argv)
    started = time.perf_counter()
    settings, no_z = QualitySettings(), QualitySettings(min_images_for_z=10**9)
    print("rules:\n" + "\n".join(f"  {line}" for line in rule_lines(settings).values()))
    if not (DATA / "glas15").is_dir() or not (DATA / "lc25000-lung").is_dir():
        print(f"no data under {DATA}: set PIPELINE_SHARED_DATA")
        return 1
    sources = load_sources()
    glas, lung = sources["glas15"], sources["lc25000-lung"]
    print(f"real images: glas15 {len(glas)}, lc25000-lung {len(lung)}")
    report: dict = {"costs_ms": print_costs(sources, 20 if args.quick else 100)}
    report["rescore_ms"] = print_rescore_cost()
    report["ink_hash"] = print_ink_hash(glas, settings)
    small_sources = glas[:12] + [lung[i] for i in LUNG_CLEAN] + glas[12:15]
    planted = {"blob_a": 1, "blob_b": 4, "exact": 6, "flip_rotate": 8, "reencode": 10, "resize": 11,
               "test_rotate": 14, "ink_before_variant": 7}
    kinds = ("original",) + variants.VARIANT_KINDS + (() if args.quick else variants.STRESS_KINDS)
    seeds = 1 if args.quick else args.seeds
    totals: dict = defaultdict(lambda: [0, 0, 0])  # (kind, setting) -> false flags, clean, false flags without z
    found_all: dict = defaultdict(lambda: [0, 0])
    misses: dict = defaultdict(list)
    scores: dict = defaultdict(lambda: defaultdict(list))

    def run(kind: str, setting: str, dataset: Dataset) -> None:
        outcome, without_z = evaluate(dataset, settings), evaluate(dataset, no_z)
        row = totals[(kind, setting)]
        row[0] += len(outcome.false_flags)
        row[1] += outcome.n_clean
        row[2] += len(without_z.false_flags)
        for role, hits in outcome.found.items():
            found_all[role][0] += sum(hits)
            found_all[role][1] += len(hits)
            if not all(hits):
                misses[role].append(f"{dataset.name} {len(hits) - sum(hits)}x")
        for group, attrs in zip(dataset.groups, dataset.attrs, strict=True):
            for key in SCORES:
                scores[group][key].append(attrs[key])
        print(f"  {dataset.name:<44} clean {outcome.n_clean:>3}  false flags {len(outcome.false_flags)} (without z: "
              f"{len(without_z.false_flags)})  problems found {sum(sum(h) for h in outcome.found.values())}/"
              f"{sum(len(h) for h in outcome.found.values())}", flush=True)
        for line in outcome.false_flags[:5]:
            print(f"      false flag: {line}")

    print("\n== datasets (false flags: clean images flagged non_tissue or ink) ==")
    for label, group in (("glas15", glas), ("lc25000-lung", lung), ("both", glas + lung)):
        run("original", f"real {label}", build(f"real images only: {label}", group, {}, bool, None, None))
    for kind in kinds:
        transform = None if kind == "original" else (
            lambda p, m, rng, kind=kind: variants.stain_variant(kind, p, m, rng))
        for setting, changed in ([("original", bool)] if kind == "original" else
                                 [("mixed", lambda i: i % 2 == 1), ("pale throughout", lambda i: True)]):
            for seed in range(seeds):
                rng = np.random.default_rng(1000 * seed + kinds.index(kind))
                run(kind, setting, build(f"{kind}, {setting}, small, seed {seed}", small_sources, planted, changed,
                                         transform, rng, test_from=22, kind=kind))
            if not args.quick:
                rng = np.random.default_rng(99 + kinds.index(kind))
                run(kind, setting, build(f"{kind}, {setting}, all 615", glas + lung,
                                         {**planted, "test_rotate": 17}, changed, transform, rng, kind=kind))
        if kind != "original":  # the tiny case: glas15 alone, pale throughout
            run(kind, "glas15 only", build(f"{kind}, glas15 only", glas, {}, lambda i: True, transform,
                                           np.random.default_rng(5 + kinds.index(kind)), kind=kind))

    print("\n== false-flag rate by kind and setting (all seeds and sizes together) ==")
    for (kind, setting), (bad, clean, bad_no_z) in totals.items():
        print(f"  {kind:<21} {setting:<24} {bad:>3} / {clean:<5} = {bad / max(clean, 1):.2%}   (without z-guard: "
              f"{bad_no_z})")
    print("\n== planted problems found (all datasets together) ==")
    for role, (hit, total) in sorted(found_all.items(), key=lambda item: (item[0].startswith("extra"), item[0])):
        print(f"  {role:<48} {hit:>4} / {total:<4}" + (f"   missed in: {', '.join(misses[role])}" if misses[role]
                                                        else ""))
    print("\n== score distributions (clean images by kind; problems by role) ==")
    for key in SCORES:
        print(f"  {key}")
        for group, values in sorted(scores.items(), key=lambda item: (":" in item[0], item[0])):
            print(f"    {group:<40} n {len(values[key]):>5}  {percentiles(values[key])}")
    print("\n== margins: worst clean image (issue's variants; stress kinds) against the mildest problem ==")
    clean_groups = ["original", *variants.VARIANT_KINDS]
    for key, threshold, low, problems in (
        ("q_stain_fraction", settings.min_stain_fraction, True, ["extra:greyscale_picture", "extra:blank_slide"]),
        ("q_off_hue_fraction", settings.max_off_hue_fraction, False, ["cartoon 0", "cartoon 2"]),
        ("q_flat_fill_fraction", settings.max_flat_fill_fraction, False,
         ["cartoon 1", "extra:cartoon_200px_jpeg45 1", "extra:cartoon_through_variant 1"]),
        ("q_green_ink_fraction", settings.max_green_ink_fraction, False,
         ["green_blob", "extra:green_ink_through_variant"]),
    ):
        def worst(groups: list[str], clean: bool, key: str = key, low: bool = low) -> float:
            values = np.concatenate([np.asarray(scores[g][key]) for g in groups if g in scores] or [[np.nan]])
            return float(np.nanmin(values) if low == clean else np.nanmax(values))

        stress = [k for k in variants.STRESS_KINDS if k in scores]
        print(f"  {key:<22} threshold {threshold:<6g} clean worst {worst(clean_groups, True):.4f}"
              + (f"  stress worst {worst(stress, True):.4f}" if stress else "")
              + "".join(f"  {role} mildest {worst([role], False):.4f}" for role in problems))
    print(f"\n(finished in {time.perf_counter() - started:.0f} s)")
    if args.json:
        report["false_flags"] = {f"{k} | {s}": v for (k, s), v in totals.items()}
        report["found"] = {role: v for role, v in found_all.items()}
        args.json.write_text(json.dumps(report, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
