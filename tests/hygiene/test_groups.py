import numpy as np
import pytest

from pipeline.hygiene import groups
from pipeline.hygiene.checks import hamming
from pipeline.hygiene.groups import group_by_shared_keys, link_pairs


def test_shared_keys_link_transitively():
    found = group_by_shared_keys(["a", "b", "c", None, "d"], [None, "x", "y", "y", "x"])
    # 1 and 4 share "x"; 2 and 3 share "y"
    assert found.tolist() == [0, 1, 2, 2, 1]


def test_link_pairs_merges_groups():
    assert link_pairs(np.array([0, 1, 2, 1]), np.array([[0, 2]])).tolist() == [0, 1, 0, 1]


def _dense_reference(hashes, hashed, exact, max_distance):
    """The (n, n) computation the row-block search replaced."""
    n = len(hashes)
    distance = np.full((n, n), 64, dtype=np.int64)
    for i in np.nonzero(hashed)[0]:
        distance[i, hashed] = hamming(hashes[i, 0], hashes[hashed]).min(axis=1)
    distance = np.minimum(distance, distance.T)
    np.fill_diagonal(distance, 64)
    near = (distance <= max_distance) & (exact[:, None] != exact[None, :])
    return np.argwhere(np.triu(near, 1)), distance.min(axis=1), distance.argmin(axis=1)


@pytest.mark.parametrize("block_bytes", [1, 4 * 2**20])  # one row per block, and every row in one block
def test_near_duplicates_match_the_dense_matrix(monkeypatch, block_bytes):
    monkeypatch.setattr(groups, "NEAR_BLOCK_BYTES", block_bytes)
    rng = np.random.default_rng(0)
    hashes = rng.integers(0, 2**63, size=(60, 8), dtype=np.uint64)
    flips = np.uint64(0)
    for bit in rng.choice(64, 7, replace=False):
        flips |= np.uint64(1) << np.uint64(bit)
    hashes[7] = hashes[3][[2, 0, 1, 3, 4, 5, 6, 7]] ^ flips  # a flipped copy: 7 bits from a variant of image 3
    hashes[9, 0] = hashes[8, 5]  # image 9 is a variant of 8 one way only
    hashes[11] = hashes[10]  # identical pixels: an exact, not a near, duplicate
    hashed = np.ones(60, dtype=bool)
    hashed[20] = False
    exact = np.arange(60)
    exact[11] = 10
    pairs, nearest, index = groups.near_duplicates(hashes, hashed, exact, 10, hamming)
    want_pairs, want_nearest, want_index = _dense_reference(hashes, hashed, exact, 10)
    assert pairs.tolist() == want_pairs.tolist() and {(3, 7), (8, 9)} <= set(map(tuple, pairs.tolist()))
    assert nearest.tolist() == want_nearest.tolist() and nearest[10] == nearest[11] == 0 and nearest[20] == 64
    assert index.tolist() == want_index.tolist()


def test_shared_keys_count_only_across_other_pixels():
    exact = np.array([0, 1, 2, 2, 4, 5])
    keys = ["m", "m", "c", "c", None, None]  # 2 and 3 are the same pixels under one mask: not a shared mask
    shared, pairs = groups.shared_key_pairs(keys, exact)
    assert shared.tolist() == [True, True, False, False, False, False]
    assert link_pairs(exact, pairs).tolist() == [0, 0, 1, 1, 2, 3]
