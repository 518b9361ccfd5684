import numpy as np
import pytest

from pipeline.cache import FeatureSet, concat_image_features, parse_pool, pool_tiles
from pipeline.errors import ConfigError


def _feature_set(embeddings, image_index, n_images):
    return FeatureSet(embeddings, image_index, np.ones(len(image_index), np.float32),
                      np.zeros((len(image_index), 2), np.int32), [str(i) for i in range(n_images)],
                      [str(i) for i in range(n_images)])


def test_pooled_statistics_match_a_loop_over_images_in_any_tile_order():
    rng = np.random.default_rng(0)
    counts = rng.integers(1, 20, size=50)
    index = rng.permutation(np.repeat(np.arange(50), counts))  # unsorted tiles
    E = rng.normal(size=(len(index), 12)).astype(np.float32)
    pooled = pool_tiles(E, index, 50, ("mean", "max", "std"))
    assert pooled.shape == (50, 36) and pooled.dtype == np.float32
    # the mean is summed in float64 in tile order, as --level image always did (np.add.at), so it is the same bits
    sums = np.zeros((50, 12))
    np.add.at(sums, index, E)
    np.testing.assert_array_equal(pooled[:, :12], (sums / counts[:, None]).astype(np.float32))
    np.testing.assert_array_equal(pooled[:, 12:24], np.stack([E[index == i].max(0) for i in range(50)]))
    np.testing.assert_allclose(pooled[:, 24:], np.stack([E[index == i].std(0) for i in range(50)]), atol=1e-6)
    np.testing.assert_array_equal(pool_tiles(E, index, 50, ("max", "mean"))[:, :12], pooled[:, 12:24])
    features = _feature_set(E, index, 50)
    np.testing.assert_array_equal(features.image_embeddings(), pooled[:, :12])
    np.testing.assert_array_equal(features.image_embeddings(("mean", "max", "std")), pooled)


def test_parse_pool_and_errors():
    assert parse_pool("mean, max") == ("mean", "max")
    for bad in ("", "median", "mean,mean"):
        with pytest.raises(ConfigError, match="--pool must be"):
            parse_pool(bad)
    with pytest.raises(ValueError, match="without tiles"):
        pool_tiles(np.zeros((2, 3)), np.array([0, 2]), 3)
    with pytest.raises(ValueError, match="image_index"):
        pool_tiles(np.zeros((2, 3)), np.array([0, 5]), 3)


def test_concatenated_image_features_put_each_caches_statistics_side_by_side():
    rng = np.random.default_rng(1)
    first = _feature_set(rng.normal(size=(7, 4)).astype(np.float32), np.array([0, 0, 1, 2, 2, 2, 1]), 3)
    second = _feature_set(rng.normal(size=(3, 6)).astype(np.float32), np.array([0, 1, 2]), 3)  # other tiles, other D
    joined = concat_image_features([first, second], ("mean", "max"))
    assert joined.embeddings.shape == (3, 4 * 2 + 6 * 2) and joined.embeddings.dtype == np.float32
    np.testing.assert_array_equal(joined.embeddings[:, :8], first.image_embeddings(("mean", "max")))
    np.testing.assert_array_equal(joined.embeddings[:, 8:], second.image_embeddings(("mean", "max")))
    # one row per image, so the mean pool of an image-level head sees exactly these rows
    np.testing.assert_array_equal(joined.image_index, [0, 1, 2])
    np.testing.assert_array_equal(joined.image_embeddings(), joined.embeddings)
    assert joined.image_ids == first.image_ids and joined.image_attrs == []
