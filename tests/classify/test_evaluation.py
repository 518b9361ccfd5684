import numpy as np
import pytest

from pipeline.cache.featureset import FeatureSet
from pipeline.classify.evaluation import Scheme, cross_validate
from pipeline.classify.metrics import compute_metrics
from pipeline.classify.votes import vote
from pipeline.errors import ConfigError


class SpyHead:
    """Remembers which rows it was trained on; predicts class 0 with a row-dependent probability."""

    fitted: list = []

    def fit(self, X, y, groups=None):
        self.classes_ = np.unique(y)
        SpyHead.fitted.append(set(np.round(X[:, 0], 6)))
        return self

    def predict_proba(self, X):
        p = 1 / (1 + np.exp(-X[:, 1]))
        out = np.zeros((len(X), len(self.classes_)))
        out[:, 0], out[:, -1] = p, 1 - p
        return out


def _features(n_images=12, tiles=3):
    rng = np.random.default_rng(0)
    image_index = np.repeat(np.arange(n_images), tiles)
    embeddings = np.stack([image_index + 0.001 * np.tile(np.arange(tiles), n_images),
                           rng.normal(size=n_images * tiles)], axis=1).astype(np.float32)
    return FeatureSet(embeddings, image_index, np.full(len(image_index), 0.7, np.float32),
                      np.zeros((len(image_index), 2), np.int32), [f"train/img_{i}" for i in range(n_images)],
                      [f"img_{i}.png" for i in range(n_images)])


def test_no_validation_image_is_ever_trained_on_and_tiles_match_images():
    features = _features()
    labels = np.array([0, 1] * 6)
    folds = np.arange(12) % 3
    SpyHead.fitted = []
    result = cross_validate(SpyHead, features, labels, np.arange(12), folds, Scheme(), 2)
    for fold, trained in enumerate(SpyHead.fitted):
        trained_images = {int(v) for v in trained}
        assert trained_images.isdisjoint(set(np.nonzero(folds == fold)[0].tolist()))
    assert not np.isnan(result.proba).any() and not np.isnan(result.tile_proba).any()
    np.testing.assert_allclose(vote(result.tile_proba, features.image_index, 12, "mean"), result.proba)


def test_image_level_trains_on_one_row_per_image():
    SpyHead.fitted = []
    cross_validate(SpyHead, _features(), np.array([0, 1] * 6), np.arange(12), np.arange(12) % 2, Scheme("image"), 2)
    assert all(len(rows) == 6 for rows in SpyHead.fitted)


def test_untrainable_images_are_validated_but_never_trained_on():
    SpyHead.fitted = []
    trainable = np.ones(12, bool)
    trainable[[0, 5]] = False
    result = cross_validate(SpyHead, _features(), np.array([0, 1] * 6), np.arange(12), np.arange(12) % 3, Scheme(),
                            2, trainable)
    assert all(0 not in {int(v) for v in rows} and 5 not in {int(v) for v in rows} for rows in SpyHead.fitted)
    assert not np.isnan(result.proba[[0, 5]]).any()


def test_metrics():
    metrics = compute_metrics(np.array([0, 0, 1, 1, 2]), np.array([0, 1, 1, 1, 2]), ["a", "b", "c"], [0.5, 0.7])
    assert metrics["accuracy"] == pytest.approx(0.8)
    assert metrics["confusion_matrix"] == [[1, 1, 0], [0, 2, 0], [0, 0, 1]]
    assert metrics["per_class"]["a"] == {"precision": 1.0, "recall": 0.5, "f1": pytest.approx(2 / 3), "support": 2}
    assert metrics["weighted_f1_folds_mean"] == pytest.approx(0.6)
    assert metrics["weighted_f1"] == pytest.approx((2 * 2 / 3 + 2 * 0.8 + 1) / 5)


def test_unknown_level():
    with pytest.raises(ConfigError, match="--level must be one of tile, image. Got 'slide' instead."):
        Scheme("slide").validate()
