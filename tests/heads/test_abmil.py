"""The attention-MIL head's bag interface: learning from a few witness tiles, attention, seeding, state, checks."""

import numpy as np
import pytest
import torch
from sklearn.metrics import f1_score

from pipeline.errors import ConfigError, ModelLoadError
from pipeline.heads import abmil, load_head, make_head, save_head
from pipeline.heads.abmil import ABMILHead
from pipeline.heads.bags import Bags, pool_in_chunks


def make_bags(n_bags=120, dim=16, seed=0, sizes=(3, 9)):
    """Bags of 3-9 tiles; class 1 and 2 bags hold one or two witness tiles (the first ones), class 0 none."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_bags) % 3
    counts = rng.integers(sizes[0], sizes[1] + 1, size=n_bags)
    bag_index = np.repeat(np.arange(n_bags), counts)
    X = rng.normal(size=(len(bag_index), dim)).astype(np.float32)
    starts = np.concatenate([[0], np.cumsum(counts)[:-1]])
    witness = np.zeros(len(X), dtype=bool)
    for b in np.flatnonzero(y > 0):
        X[starts[b] : starts[b] + 1 + b % 2, y[b] - 1] += 4.0  # the class lives in feature y-1 of 1-2 tiles
        witness[starts[b] : starts[b] + 1 + b % 2] = True
    return X, y, bag_index, witness


def small_head(**kwargs):
    return ABMILHead(**{"hidden_dim": 16, "attention_dim": 8, "max_epochs": 30, "n_models": 1, **kwargs})


@pytest.fixture(scope="module")
def fitted():
    X, y, bag_index, witness = make_bags()
    return small_head(max_epochs=100).fit(X, y, bag_index), (X, y, bag_index, witness)


def test_learns_from_a_few_tiles_and_attends_to_them(fitted):
    head, (X, y, bag_index, witness) = fitted
    X_new, y_new, index_new, witness_new = make_bags(seed=1)
    out = head.predict_bags(X_new, index_new)
    assert out.proba.shape == (len(y_new), 3) and out.proba.dtype == np.float64
    np.testing.assert_allclose(out.proba.sum(1), 1.0, atol=1e-12)
    assert f1_score(y_new, head.predict(X_new, index_new), average="weighted") > 0.8  # 0.87 on 120 bags
    assert out.attention.shape == (len(X_new),) and (out.attention >= 0).all()
    np.testing.assert_allclose(np.bincount(index_new, weights=out.attention), 1.0, atol=1e-6)
    tumour = y_new[index_new] > 0
    # the witness tiles carry most of the attention of their bags, far above their share of the tiles
    share = witness_new[tumour].sum() / tumour.sum()
    assert out.attention[tumour & witness_new].sum() / (y_new > 0).sum() > 2 * share
    # a witness tile on its own is classified as its bag's class
    own = out.tile_proba[witness_new].argmax(1)
    assert (own == y_new[index_new][witness_new]).mean() > 0.9


def test_bag_logits_are_the_attention_weighted_tile_logits(fitted):
    head, (X, _, bag_index, _) = fitted
    network = head.networks_[0]
    tiles, mask = Bags((X - head.mean_) / head.std_, bag_index, bag_index.max() + 1).batch(np.arange(5))
    with torch.no_grad():
        logits, attention, tile_logits = network(tiles, mask, with_tiles=True)
    np.testing.assert_allclose((attention[..., None] * tile_logits).sum(1), logits, atol=1e-5)


def test_tile_order_and_padding_do_not_matter(fitted):
    head, (X, _, bag_index, _) = fitted
    order = np.random.default_rng(1).permutation(len(X))  # tiles shuffled across and within bags
    shuffled, plain = head.predict_bags(X[order], bag_index[order]), head.predict_bags(X, bag_index)
    np.testing.assert_allclose(shuffled.proba, plain.proba, atol=1e-5)
    np.testing.assert_allclose(shuffled.attention, plain.attention[order], atol=1e-5)
    np.testing.assert_allclose(shuffled.tile_proba, plain.tile_proba[order], atol=1e-5)
    one = bag_index == 0  # a bag alone (no padding) scores as in a padded batch
    np.testing.assert_allclose(head.predict_proba(X[one], bag_index[one]), plain.proba[:1], atol=1e-5)


def test_chunks_bound_padding():
    counts = np.array([1, 5, 2, 50, 3])
    bags = Bags(np.zeros((counts.sum(), 2), np.float32), np.repeat(np.arange(5), counts), 5)
    chunks = bags.chunks(np.arange(5), max_tiles=10)
    assert sorted(np.concatenate(chunks).tolist()) == [0, 1, 2, 3, 4]
    assert all(len(c) * counts[c].max() <= 10 or len(c) == 1 for c in chunks)
    tiles, mask = bags.batch(np.array([3, 0]))
    assert tiles.shape == (2, 50, 2) and mask.sum(1).tolist() == [50, 1]


def test_seeded_members_and_caller_rng_untouched():
    X, y, bag_index, _ = make_bags(60)
    torch.manual_seed(123)
    before = torch.rand(1)
    torch.manual_seed(123)
    a = small_head(seed=3).fit(X, y, bag_index).predict_proba(X, bag_index)
    assert torch.rand(1) == before  # fork_rng restored the caller's generator
    b = small_head(seed=3).fit(X, y, bag_index).predict_proba(X, bag_index)
    c = small_head(seed=4).fit(X, y, bag_index).predict_proba(X, bag_index)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    # members are averaged: the first member of an ensemble with seed 0 is the single head with seed 0
    pair = small_head(n_models=2).fit(X, y, bag_index)
    first, second = small_head(seed=0).fit(X, y, bag_index), small_head(seed=1).fit(X, y, bag_index)
    np.testing.assert_allclose(pair.predict_proba(X, bag_index),
                               (first.predict_proba(X, bag_index) + second.predict_proba(X, bag_index)) / 2, atol=1e-6)
    assert len(pair.networks_) == 2 and len(pair.best_epoch_) == 2


def test_one_thread_by_default_and_threads_restored():
    X, y, bag_index, _ = make_bags(30)
    assert make_head("abmil").n_jobs == 1 and make_head("abmil").n_models == 3
    previous = torch.get_num_threads()
    small_head(max_epochs=2, n_jobs=2).fit(X, y, bag_index)
    assert torch.get_num_threads() == previous


def test_save_load_round_trip_without_pickle(tmp_path):
    X, y, bag_index, _ = make_bags(60)
    head = small_head(n_models=2, max_epochs=5).fit(X, np.array(["aca", "n", "scc"])[y], bag_index)
    save_head(head, tmp_path / "head")
    restored = load_head(tmp_path / "head")
    assert isinstance(restored, ABMILHead) and restored.get_params() == head.get_params()
    for got, expected in zip(restored.predict_bags(X, bag_index), head.predict_bags(X, bag_index), strict=True):
        np.testing.assert_array_equal(got, expected)
    assert restored.best_epoch_ == head.best_epoch_
    (tmp_path / "head" / "head.json").write_text((tmp_path / "head" / "head.json").read_text().replace(
        '"n_models": 2', '"n_models": 3'))
    with pytest.raises(ModelLoadError, match="members"):
        load_head(tmp_path / "head")


def test_groups_and_weights_accepted():
    X, y, bag_index, _ = make_bags(60)
    groups = np.arange(60) // 2  # pairs of bags stay on one side of the inner split
    head = small_head(max_epochs=5).fit(X, y, bag_index, groups=groups, sample_weight=np.where(y == 0, 2.0, 1.0))
    assert head.n_epochs_[0] >= 1


def test_no_validation_split_trains_fixed_epochs(caplog):
    X, y, bag_index, _ = make_bags(3)  # one bag per class: no inner split possible
    head = small_head(max_epochs=4).fit(X, y, bag_index)
    assert head.n_epochs_ == [4] and "too few groups" in caplog.text


@pytest.mark.parametrize(
    ("what", "value", "error"),
    [
        ("bag_index", "short", ValueError),
        ("bag_index", "empty_bag", ValueError),
        ("bag_index", "negative", ValueError),
        ("bag_index", "float", ValueError),
        ("y", "per_tile", ValueError),
        ("y", "one_class", ValueError),
        ("groups", "wrong", ValueError),
        ("sample_weight", "negative", ValueError),
        ("param", ("class_weight", "auto"), ConfigError),
        ("param", ("hidden_dim", 0), ConfigError),
        ("param", ("dropout", 1.0), ConfigError),
        ("param", ("batch_size", 2.5), ConfigError),
        ("param", ("n_models", 0), ConfigError),
        ("param", ("n_jobs", -2), ConfigError),
        ("param", ("max_train_tiles", 0), ConfigError),
    ],
)
def test_bad_input_is_refused(what, value, error):
    X, y, bag_index, _ = make_bags(30)
    kwargs = {}
    head = small_head(max_epochs=1)
    if what == "bag_index":
        bag_index = {"short": bag_index[:-1], "empty_bag": np.where(bag_index == 3, 4, bag_index),
                     "negative": bag_index - 1, "float": bag_index.astype(float)}[value]
    elif what == "y":
        y = {"per_tile": y[bag_index], "one_class": np.zeros_like(y)}[value]
    elif what == "groups":
        kwargs["groups"] = np.arange(len(y) + 1)
    elif what == "sample_weight":
        kwargs["sample_weight"] = -np.ones(len(y))
    else:
        head.set_params(**{value[0]: value[1]})
    with pytest.raises(error):
        head.fit(X, y, bag_index, **kwargs)


def test_predict_checks_dimension(fitted):
    head, (X, _, bag_index, _) = fitted
    with pytest.raises(ValueError, match="features"):
        head.predict_proba(X[:, :-1], bag_index)


def large_bags(n_bags=60, size=400, dim=8, seed=0):
    """Bags of ``size`` tiles; class 1 bags hold 15% witness tiles (feature 0 raised), class 0 none."""
    rng = np.random.default_rng(seed)
    y = np.arange(n_bags) % 2
    bag_index = np.repeat(np.arange(n_bags), size)
    X = rng.normal(size=(len(bag_index), dim)).astype(np.float32)
    for b in np.flatnonzero(y):
        X[b * size + rng.choice(size, size * 15 // 100, replace=False), 0] += 4.0
    return X, y, bag_index


def _record_lengths(monkeypatch):
    """Tiles per bag (L) of every padded training batch the network sees, as a list filled while fitting."""
    lengths, forward = [], abmil.GatedAttentionMIL.forward

    def recording(self, tiles, mask, with_tiles=False):
        if self.training:
            lengths.append(tiles.shape[1])
        return forward(self, tiles, mask, with_tiles)

    monkeypatch.setattr(abmil.GatedAttentionMIL, "forward", recording)
    return lengths


def test_training_samples_at_most_max_train_tiles_of_a_large_bag_and_still_learns(monkeypatch):
    X, y, bag_index = large_bags()
    lengths = _record_lengths(monkeypatch)
    head = small_head(max_train_tiles=32, max_epochs=40).fit(X, y, bag_index)
    assert lengths and max(lengths) == 32  # 400-tile bags, 32 sampled per step
    X_new, y_new, index_new = large_bags(seed=1)
    assert f1_score(y_new, head.predict(X_new, index_new)) > 0.9  # 60 witnesses of 400: ~5 per sample of 32
    lengths.clear()
    small_head(max_train_tiles=None, max_epochs=1).fit(X, y, bag_index)
    assert set(lengths) == {400}  # None: every tile, as before


def test_sampling_is_seeded_and_changes_with_the_seed():
    X, y, bag_index = large_bags(12, 100)
    fits = [small_head(max_train_tiles=16, max_epochs=3, seed=s).fit(X, y, bag_index) for s in (0, 0, 1)]
    a, b, c = (f.predict_proba(X, bag_index) for f in fits)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)


def test_bags_up_to_max_train_tiles_train_exactly_as_without_sampling():
    X, y, bag_index, _ = make_bags(60)  # 3-9 tiles a bag
    plain = small_head(max_train_tiles=None).fit(X, y, bag_index).predict_bags(X, bag_index)
    for limit in (9, 512):  # the largest bag exactly at the limit draws nothing either
        sampled = small_head(max_train_tiles=limit).fit(X, y, bag_index).predict_bags(X, bag_index)
        for got, expected in zip(sampled, plain, strict=True):
            np.testing.assert_array_equal(got, expected)


def test_sampled_batches_hold_distinct_tiles_of_their_own_bag():
    counts = np.array([3, 50, 20])
    bag_index = np.repeat(np.arange(3), counts)
    bags = Bags(np.arange(len(bag_index), dtype=np.float32)[:, None], bag_index, 3)
    rng = np.random.default_rng(0)
    tiles, mask = bags.batch(np.array([0, 1, 2]), max_tiles=10, rng=rng)
    assert tiles.shape == (3, 10, 1) and mask.sum(1).tolist() == [3, 10, 10]
    rows = tiles[..., 0].numpy().astype(int)
    assert rows[0, :3].tolist() == [0, 1, 2]  # a small bag gives all its tiles, in order
    for b in (1, 2):
        assert len(set(rows[b])) == 10 and all(bag_index[r] == b for r in rows[b])
    again = bags.batch(np.array([0, 1, 2]), max_tiles=10, rng=rng)[0][..., 0].numpy().astype(int)
    assert not np.array_equal(again[1], rows[1])  # a fresh sample each call
    assert bags.batch(np.array([0]), max_tiles=10, rng=None)[0].shape == (1, 3, 1)  # no draw, no generator needed


def test_a_bag_larger_than_one_pass_is_scored_in_chunks_with_the_same_result(fitted, monkeypatch):
    head, _ = fitted
    X, _, bag_index = large_bags(3, 300, dim=16)
    whole = head.predict_bags(X, bag_index)
    passes = []
    hook = head.networks_[0].project.register_forward_hook(lambda m, inputs, out: passes.append(inputs[0].shape))
    monkeypatch.setattr(abmil, "_PREDICT_TILES", 64)
    try:
        chunked = head.predict_bags(X, bag_index)
    finally:
        hook.remove()
    assert passes and max(int(np.prod(shape[:-1])) for shape in passes) <= 64  # never a whole 300-tile bag
    for got, expected in zip(chunked, whole, strict=True):
        np.testing.assert_allclose(got, expected, rtol=1e-5, atol=1e-6)


def test_pool_in_chunks_equals_the_padded_forward(fitted):
    head, (X, _, bag_index, _) = fitted
    network = head.networks_[0]
    one = torch.from_numpy(((X - head.mean_) / head.std_)[bag_index == 3])
    with torch.no_grad():
        logits, attention, tile_logits = network(one[None], torch.ones((1, len(one)), dtype=torch.bool), True)
        chunked = pool_in_chunks(network, one, max_tiles=2)
    for got, expected in zip(chunked, (logits[0], attention[0], tile_logits[0]), strict=True):
        np.testing.assert_allclose(got.numpy(), expected.numpy(), rtol=1e-5, atol=1e-6)
