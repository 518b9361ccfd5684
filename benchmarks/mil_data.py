"""Build the multiple-instance (MIL) benchmark data from the shared LC25000 lung tiles (used by bench_mil).

Each image is a 3x3 mosaic of 224 px source tiles (672x672 PNG with an all-inside mask). An ``lung_aca`` or
``lung_scc`` image holds 1 or 2 tumour tiles of its class at random positions among normal lung tiles (the witness
tiles); a ``lung_n`` image holds 9 normal tiles. The class therefore lives in 1-2 of the 9 tiles, and votes over tiles
that all inherit the image's label drown it.

Leakage control:

* The 600 source tiles (both splits of the shared set) are clustered into near-duplicate groups: exact copies (MD5)
  and flips/rotations within ``PHASH_DISTANCE`` bits of 64 of the project's dihedral perceptual hash, linked by
  union-find. LC25000 was made by flipping and rotating 250 originals per class, so such clusters exist. Clusters
  are never split below.
* Whole clusters go to the train or the test pool: no test mosaic shares a tile, or a near-duplicate of one, with a
  training mosaic.
* Tumour tiles are used once each. Normal tiles are too few for that (a tumour mosaic needs 7-8, a normal one 9; the
  set has 200), so they are reused, each about equally often (least-used first, random tie-break), never twice in one
  mosaic, with a random flip/rotation per placement. To keep reused tiles out of two folds, the training pool is cut
  into ``--blocks`` blocks of whole clusters (normal and tumour tiles alike), every block makes the same number of
  mosaics per class from its own tiles only, and the block is the duplicate group (``group`` in
  ``train_groups.csv``). Grouped folds over blocks then never show a validation mosaic a tile, or a near-duplicate
  of one, that a training mosaic holds. (A first version shared normal tiles across folds: a head that memorises
  them then learns each tile's label mix from the other folds, which is biased against the validation mosaic's own
  label, and cross-validated F1 fell far below the held-out test F1, most for the tile-level heads.)
* Within a block, mosaics share normal tiles, so blocks cannot serve for the early-stopping split inside a fit
  (each block holds every class equally, which leaves no class to stratify on). ``inner_group`` links only mosaics
  whose tumour tiles are near-duplicates; the benchmark passes it to the heads for that split.

Outputs (users' layout, plus the provenance the benchmark needs):

    OUT/train_data/img_XXXX.png + mask_XXXX.png     OUT/test_data/img_XXXX.png + mask_XXXX.png
    OUT/train_labels.csv  OUT/test_labels.csv       sample_index,label
    OUT/train_groups.csv                            sample_index,group,inner_group (group = block)
    OUT/test_groups.csv                             sample_index,group (tumour near-duplicates linked; the test
                                                    pool is one block, so this is for bootstrap intervals only)
    OUT/mosaics.csv                                 one row per tile placement: split, sample_index, label, block,
                                                    position (0-8, row-major), x, y, source split/file/name,
                                                    source cluster, dihedral transform, witness (1: tumour tile)
    OUT/build.json                                  settings, counts and seconds

    python -m benchmarks.mil_data --out DIR [--src ../shared/data/lc25000-lung] [--seed 0] [--blocks 12]
"""

from __future__ import annotations

import argparse
import csv
import json
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from benchmarks import SHARED_DATA
from pipeline.data.images import read_image
from pipeline.hygiene.checks import dihedral_phashes, hamming
from pipeline.hygiene.groups import group_by_shared_keys, link_pairs

TILE = 224  # source tile side, and the --tile-size the benchmark extracts with
GRID = 3  # mosaics are GRID x GRID tiles
CELLS = GRID * GRID
PHASH_DISTANCE = 10  # bits of 64; the project's near-duplicate threshold (pipeline.hygiene.settings)
NORMAL = "lung_n"
TUMOUR = ("lung_aca", "lung_scc")
CLASSES = (*TUMOUR, NORMAL)
DEFAULT_SRC = SHARED_DATA / "lc25000-lung"


@dataclass(frozen=True)
class SourceTile:
    """One 224 px tile of the shared set."""

    split: str  # "train" or "test" in the shared set
    file: str  # e.g. "img_0000.jpg"
    label: str
    name: str  # original LC25000 file name
    md5: str


@dataclass
class Mosaic:
    """One generated image: 9 source tiles (indices into the tile list), their transforms and witness flags."""

    label: str
    block: int  # the tile block it was drawn from
    tiles: np.ndarray  # (9,) int source tile index per position, row-major
    transforms: np.ndarray  # (9,) int in [0, 8): dihedral transform per position
    witness: np.ndarray  # (9,) bool: the position holds a tumour tile


def read_sources(src: Path) -> tuple[list[SourceTile], np.ndarray]:
    """Read every source tile of both splits.

    Returns:
        The tiles, and their pixels (n, 224, 224, 3) uint8.
    """
    with open(src / "source_mapping.csv", newline="", encoding="utf-8") as file:
        rows = list(csv.DictReader(file))
    tiles = [SourceTile(r["split"], r["sample_index"], r["label"], r["lc25000_name"], r["md5"]) for r in rows]
    pixels = np.stack([read_image(src / f"{t.split}_data" / t.file).pixels for t in tiles])
    if pixels.shape[1:] != (TILE, TILE, 3):
        raise ValueError(f"expected {TILE}x{TILE} RGB source tiles, got {pixels.shape[1:]}")
    return tiles, pixels


def near_duplicate_clusters(tiles: list[SourceTile], pixels: np.ndarray, max_bits: int = PHASH_DISTANCE) -> np.ndarray:
    """Cluster source tiles that are exact copies or flips/rotations of each other.

    Two tiles are linked when their MD5s match or the identity hash of one is within ``max_bits`` of any of the 8
    dihedral hashes of the other (as :func:`pipeline.hygiene.assess` does for whole images).

    Returns:
        (n,) int64 cluster id per tile, numbered from 0 in order of first appearance.
    """
    hashes = np.array([[int(h, 16) for h in dihedral_phashes(p)] for p in pixels], dtype=np.uint64)  # (n, 8)
    distance = np.stack([hamming(hashes[i, 0], hashes).min(axis=1) for i in range(len(hashes))])  # (n, n)
    distance = np.minimum(distance, distance.T)
    np.fill_diagonal(distance, 64)
    pairs = np.argwhere(np.triu(distance <= max_bits, 1))
    return link_pairs(group_by_shared_keys([t.md5 for t in tiles]), pairs)


def split_clusters(
    labels: np.ndarray, clusters: np.ndarray, test_tiles: dict[str, int], rng: np.random.Generator
) -> np.ndarray:
    """Send whole clusters to the test pool until each class has at least its quota of test tiles.

    Args:
        labels: (n,) class name per tile. clusters: (n,) cluster id per tile (never spanning two classes here).
        test_tiles: Class -> number of tiles wanted in the test pool.

    Returns:
        (n,) bool, True for tiles of the test pool.
    """
    test = np.zeros(len(labels), dtype=bool)
    for label, quota in test_tiles.items():
        for cluster in rng.permutation(np.unique(clusters[labels == label])):
            if (test & (labels == label)).sum() >= quota:
                break
            test |= clusters == cluster
    return test


def assign_blocks(
    labels: np.ndarray, clusters: np.ndarray, pool: np.ndarray, n_blocks: int, rng: np.random.Generator
) -> np.ndarray:
    """Deal the pool's clusters into ``n_blocks`` blocks, class by class, each to the block with fewest such tiles.

    Returns:
        (n,) int64 block per tile, -1 outside the pool.
    """
    block = np.full(len(labels), -1, dtype=np.int64)
    for label in CLASSES:
        filled = np.zeros(n_blocks, dtype=np.int64)
        for cluster in rng.permutation(np.unique(clusters[pool & (labels == label)])):
            members = pool & (clusters == cluster)
            target = int(np.argmin(filled))  # ties go to the lowest block; the cluster order is random
            block[members] = target
            filled[target] += members.sum()
    return block


class NormalSampler:
    """Draws normal tiles for mosaics, least-used first with a random tie-break, never twice in one mosaic."""

    def __init__(self, pool: np.ndarray, rng: np.random.Generator):
        if len(pool) < CELLS:
            raise ValueError(f"a block needs at least {CELLS} normal tiles; this one has {len(pool)}.")
        self.pool, self.rng = pool, rng
        self.used = np.zeros(len(pool), dtype=np.int64)

    def draw(self, k: int) -> np.ndarray:
        """Return ``k`` distinct tile indices (k <= pool size)."""
        # Adding uniform noise in [0, 1) to integer counts breaks ties randomly without reordering distinct counts.
        chosen = np.argsort(self.used + self.rng.random(len(self.pool)), kind="stable")[:k]
        self.used[chosen] += 1
        return self.pool[chosen]


def plan_mosaics(
    labels: np.ndarray, pool: np.ndarray, per_class: int, block: int, rng: np.random.Generator
) -> tuple[list[Mosaic], dict[str, int]]:
    """Plan the mosaics of one block of tiles.

    A tumour class with T tiles gives n = min(per_class, T, T of the other tumour class) mosaics, of which T' - n hold
    2 tumour tiles and the rest 1, where T' = min(T, 2n) tiles are used (each once; any excess is left unused).
    The normal class gets the same n, so the classes are balanced as far as the tumour tiles allow.

    Args:
        labels: (n_tiles,) class name per source tile. pool: (n_tiles,) bool, tiles this block may use.
        per_class: Wanted mosaics per class. block: Block id recorded on the mosaics.

    Returns:
        The mosaics, and the number of tumour tiles left unused per class.
    """
    tumour = {label: rng.permutation(np.flatnonzero(pool & (labels == label))) for label in TUMOUR}
    n = min(per_class, *(len(t) for t in tumour.values()))
    sampler = NormalSampler(np.flatnonzero(pool & (labels == NORMAL)), rng)
    mosaics, unused = [], {}
    for label, witnesses in tumour.items():
        used = min(len(witnesses), 2 * n)
        unused[label] = len(witnesses) - used
        counts = np.array([2] * (used - n) + [1] * (2 * n - used))
        starts = np.concatenate([[0], np.cumsum(counts)])
        for i in rng.permutation(n):  # shuffled so that 1- and 2-witness mosaics are interleaved
            mosaics.append(_mosaic(label, block, witnesses[starts[i] : starts[i + 1]], sampler, rng))
    mosaics += [_mosaic(NORMAL, block, np.zeros(0, dtype=np.int64), sampler, rng) for _ in range(n)]
    return mosaics, unused


def _mosaic(label: str, block: int, witnesses: np.ndarray, sampler: NormalSampler, rng: np.random.Generator) -> Mosaic:
    positions = rng.choice(CELLS, size=len(witnesses), replace=False)
    tiles = np.empty(CELLS, dtype=np.int64)
    witness = np.zeros(CELLS, dtype=bool)
    witness[positions] = True
    tiles[positions] = witnesses
    tiles[~witness] = sampler.draw(CELLS - len(witnesses))
    return Mosaic(label, block, tiles, rng.integers(0, 8, size=CELLS), witness)


def plan_split(
    labels: np.ndarray, blocks: np.ndarray, per_class: int, rng: np.random.Generator
) -> tuple[list[Mosaic], dict[str, int]]:
    """Mosaics of all blocks (``blocks``: (n_tiles,) block id, -1 outside), in one shuffled order.

    ``per_class`` is shared out over the blocks as evenly as possible.
    """
    n_blocks = int(blocks.max()) + 1
    shares = np.full(n_blocks, per_class // n_blocks) + (np.arange(n_blocks) < per_class % n_blocks)
    mosaics, unused = [], dict.fromkeys(TUMOUR, 0)
    for block, share in enumerate(shares):
        planned, left = plan_mosaics(labels, blocks == block, int(share), block, rng)
        mosaics += planned
        unused = {label: unused[label] + left[label] for label in TUMOUR}
    return [mosaics[i] for i in rng.permutation(len(mosaics))], unused


def dihedral(pixels: np.ndarray, transform: int) -> np.ndarray:
    """One of the 8 flips/rotations of an (H, W, 3) tile: rotate by 90 x (t % 4) degrees, then flip if t >= 4."""
    turned = np.rot90(pixels, k=transform % 4)
    return np.ascontiguousarray(turned[:, ::-1] if transform >= 4 else turned)


def render(mosaic: Mosaic, pixels: np.ndarray) -> np.ndarray:
    """(672, 672, 3) uint8 image of a mosaic; position p sits at row p // 3, column p % 3."""
    image = np.empty((GRID * TILE, GRID * TILE, 3), dtype=np.uint8)
    for position, (tile, transform) in enumerate(zip(mosaic.tiles, mosaic.transforms, strict=True)):
        row, col = divmod(position, GRID)
        image[row * TILE : (row + 1) * TILE, col * TILE : (col + 1) * TILE] = dihedral(pixels[tile], int(transform))
    return image


def witness_groups(mosaics: list[Mosaic], clusters: np.ndarray) -> np.ndarray:
    """(n_mosaics,) int64 groups linking mosaics whose tumour tiles share a near-duplicate cluster (normal ignored)."""
    first_mosaic: dict[int, int] = {}  # cluster -> first mosaic holding one of its tiles
    pairs = []
    for i, mosaic in enumerate(mosaics):
        for tile in mosaic.tiles[mosaic.witness]:
            first = first_mosaic.setdefault(int(clusters[tile]), i)
            if first != i:
                pairs.append((first, i))
    return link_pairs(np.arange(len(mosaics)), np.array(pairs, dtype=np.int64).reshape(-1, 2))


def write_split(out: Path, split: str, mosaics: list[Mosaic], pixels: np.ndarray) -> None:
    """Write ``OUT/<split>_data/img_XXXX.png`` + ``mask_XXXX.png`` and ``OUT/<split>_labels.csv``."""
    folder = out / f"{split}_data"
    folder.mkdir(parents=True)
    mask = Image.fromarray(np.full((GRID * TILE, GRID * TILE), 255, dtype=np.uint8))
    for i, mosaic in enumerate(mosaics):
        Image.fromarray(render(mosaic, pixels)).save(folder / f"img_{i:04d}.png", compress_level=1)
        mask.save(folder / f"mask_{i:04d}.png")
    rows = [[_name(i), m.label] for i, m in enumerate(mosaics)]
    _write_csv(out / f"{split}_labels.csv", ["sample_index", "label"], rows)


def _name(i: int) -> str:
    return f"img_{i:04d}.png"


def _write_csv(path: Path, header: list[str], rows: list[list]) -> None:
    with open(path, "w", newline="", encoding="utf-8") as file:
        writer = csv.writer(file)
        writer.writerow(header)
        writer.writerows(rows)


def build(
    src: Path, out: Path, seed: int, train_per_class: int, test_per_class: int, n_blocks: int, overwrite: bool
) -> dict:
    """Build the whole benchmark folder; returns the summary also written to ``build.json``."""
    started = time.perf_counter()
    if out.exists():
        if not overwrite:
            raise FileExistsError(f"{out} exists; pass --overwrite to rebuild it.")
        shutil.rmtree(out)
    rng = np.random.default_rng(seed)
    tiles, pixels = read_sources(src)
    labels = np.array([t.label for t in tiles])
    clusters = near_duplicate_clusters(tiles, pixels)
    # Test pool: 1.5 tumour tiles per test mosaic on average (half hold 1, half 2) and as many normal tiles.
    quota = round(1.5 * test_per_class)
    test_pool = split_clusters(labels, clusters, dict.fromkeys(CLASSES, quota), rng)
    train_blocks = assign_blocks(labels, clusters, ~test_pool, n_blocks, rng)
    train, train_unused = plan_split(labels, train_blocks, train_per_class, rng)
    test, test_unused = plan_split(labels, np.where(test_pool, 0, -1), test_per_class, rng)
    inner = witness_groups(train, clusters)
    test_groups = witness_groups(test, clusters)
    out.mkdir(parents=True)
    write_split(out, "train", train, pixels)
    write_split(out, "test", test, pixels)
    _write_csv(out / "train_groups.csv", ["sample_index", "group", "inner_group"],
               [[_name(i), m.block, int(g)] for i, (m, g) in enumerate(zip(train, inner, strict=True))])
    _write_csv(out / "test_groups.csv", ["sample_index", "group"],
               [[_name(i), int(g)] for i, g in enumerate(test_groups)])
    placements = []
    for split, mosaics in (("train", train), ("test", test)):
        for i, mosaic in enumerate(mosaics):
            for position in range(CELLS):
                tile = tiles[mosaic.tiles[position]]
                row, col = divmod(position, GRID)
                placements.append([split, _name(i), mosaic.label, mosaic.block, position, col * TILE, row * TILE,
                                   tile.split, tile.file, tile.name, int(clusters[mosaic.tiles[position]]),
                                   int(mosaic.transforms[position]), int(mosaic.witness[position])])
    _write_csv(out / "mosaics.csv", ["split", "sample_index", "label", "block", "position", "x", "y", "source_split",
                                     "source_file", "lc25000_name", "source_cluster", "transform", "witness"],
               placements)
    # Checks: tumour tiles used once; no tile or cluster in two blocks or in both train and test.
    used = np.concatenate([m.tiles[m.witness] for m in train + test])
    assert len(used) == len(np.unique(used)), "a tumour tile was used twice"
    tile_blocks = {}
    for m in train:
        for tile in m.tiles:
            assert tile_blocks.setdefault(int(clusters[tile]), m.block) == m.block, "a cluster spans two blocks"
    test_clusters = {int(clusters[t]) for m in test for t in m.tiles}
    assert not test_clusters & set(tile_blocks), "a cluster is used in train and test"
    normal_use = np.bincount(np.concatenate([m.tiles[~m.witness] for m in train]), minlength=len(tiles))
    inner_sizes = np.bincount(inner)
    summary = {
        "src": str(src), "out": str(out), "seed": seed, "phash_distance": PHASH_DISTANCE, "blocks": n_blocks,
        "source_tiles": len(tiles), "source_clusters": int(clusters.max() + 1),
        "source_clusters_of_2_or_more": int((np.bincount(clusters) > 1).sum()),
        "test_pool_tiles": {label: int((test_pool & (labels == label)).sum()) for label in CLASSES},
        "train_block_tiles_min_max": {
            label: [int(np.bincount(train_blocks[(labels == label) & (train_blocks >= 0)]).min()),
                    int(np.bincount(train_blocks[(labels == label) & (train_blocks >= 0)]).max())]
            for label in CLASSES
        },
        "train_images": {label: sum(m.label == label for m in train) for label in CLASSES},
        "test_images": {label: sum(m.label == label for m in test) for label in CLASSES},
        "train_mosaics_with_2_witnesses": sum(int(m.witness.sum() == 2) for m in train),
        "test_mosaics_with_2_witnesses": sum(int(m.witness.sum() == 2) for m in test),
        "tumour_tiles_unused": {"train": train_unused, "test": test_unused},
        "train_inner_groups": len(inner_sizes), "train_inner_groups_of_2_or_more": int((inner_sizes > 1).sum()),
        "test_groups": int(test_groups.max() + 1),
        "train_normal_tile_uses_min_max": [int(normal_use[normal_use > 0].min()), int(normal_use.max())],
        "seconds": round(time.perf_counter() - started, 1),
    }
    (out / "build.json").write_text(json.dumps(summary, indent=2) + "\n", encoding="utf-8")
    return summary


def main() -> None:
    """Build the benchmark folder from the command line."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--src", type=Path, default=DEFAULT_SRC)
    parser.add_argument("--out", type=Path, required=True, help="the benchmark's data folder (outside the checkout)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--train-per-class", type=int, default=120, help="360 training images in all")
    parser.add_argument("--test-per-class", type=int, default=20)
    parser.add_argument("--blocks", type=int, default=12, help="tile blocks of the training pool (fold groups)")
    parser.add_argument("--overwrite", action="store_true")
    args = parser.parse_args()
    summary = build(args.src, args.out, args.seed, args.train_per_class, args.test_per_class, args.blocks,
                    args.overwrite)
    print(json.dumps(summary, indent=2))


if __name__ == "__main__":
    main()
