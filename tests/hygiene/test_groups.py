import numpy as np

from pipeline.hygiene.groups import group_by_shared_keys, link_pairs


def test_shared_keys_link_transitively():
    groups = group_by_shared_keys(["a", "b", "c", None, "d"], [None, "x", "y", "y", "x"])
    # 1 and 4 share "x"; 2 and 3 share "y"
    assert groups.tolist() == [0, 1, 2, 2, 1]


def test_link_pairs_merges_groups():
    assert link_pairs(np.array([0, 1, 2, 1]), np.array([[0, 2]])).tolist() == [0, 1, 0, 1]
