import numpy as np
import pytest

from pipeline.cache.featureset import FeatureSet
from pipeline.classify.evaluation import Scheme, cross_validate, fit_head
from pipeline.classify.metrics import compute_metrics
from pipeline.classify.votes import vote
from pipeline.errors import ConfigError


class SpyHead:
    """Remembers which rows it was trained on; predicts class 0 with a row-dependent probability."""

    fitted: list = []

    def fit(self, X, y, groups=None, sample_weight=None):
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


class SpyBagHead:
    """A bag head that remembers what it was given; predicts from each bag's first tile, attends evenly."""

    calls: list = []

    def fit(self, X, y, bag_index=None, groups=None):
        self.classes_ = np.unique(y)
        SpyBagHead.calls.append((X.copy(), np.asarray(y).copy(), bag_index.copy(), np.asarray(groups).copy()))
        return self

    def predict_bags(self, X, bag_index, n_bags):
        from pipeline.heads.bags import BagPrediction

        counts = np.bincount(bag_index, minlength=n_bags)
        proba = np.zeros((n_bags, len(self.classes_)))
        proba[:, 0] = 1.0
        tile_proba = np.tile([0.0, 1.0], (len(X), 1))
        return BagPrediction(proba, tile_proba, 1.0 / counts[bag_index])


def test_bag_heads_get_each_image_as_a_bag_with_its_label_and_group_and_return_attention():
    features = _features(n_images=12, tiles=3)
    labels, groups, folds = np.array([0, 1] * 6), np.arange(12) // 2, np.arange(12) % 3
    SpyBagHead.calls = []
    scheme = Scheme("tile").for_head("abmil")
    assert scheme.level == "bag" and Scheme("image", pool=("mean", "max")).for_head("mlp").level == "image"
    result = cross_validate(SpyBagHead, features, labels, groups, folds, scheme, 2)
    for fold, (X, y, bag_index, bag_groups) in enumerate(SpyBagHead.calls):
        images = np.flatnonzero(folds != fold)
        assert len(X) == 3 * len(images) and bag_index.tolist() == np.repeat(np.arange(len(images)), 3).tolist()
        np.testing.assert_array_equal(y, labels[images])
        np.testing.assert_array_equal(bag_groups, groups[images])
        np.testing.assert_array_equal(np.round(X[::3, 0]).astype(int), images)  # the bags are the images' tiles
    np.testing.assert_allclose(result.tile_attention, 1 / 3)
    np.testing.assert_allclose(result.tile_proba[:, 1], 1.0)
    assert (result.proba[:, 0] == 1).all()


def test_image_level_pools_the_requested_statistics():
    SpyHead.fitted = []
    features = _features()

    class Recorder(SpyHead):
        seen: list = []

        def fit(self, X, y, groups=None):
            Recorder.seen.append(X.shape)
            return super().fit(X, y, groups)

    cross_validate(Recorder, features, np.array([0, 1] * 6), np.arange(12), np.arange(12) % 2,
                   Scheme("image", pool=("mean", "max", "std")).validate(), 2)
    assert Recorder.seen == [(6, 6), (6, 6)]  # 2 features x 3 statistics, one row per image


@pytest.mark.parametrize(
    ("scheme", "message"),
    [
        (Scheme("tile", pool=("mean", "max")), "--pool mean,max needs --level image"),
        (Scheme("image", pool=("median",)), "--pool must be a comma-separated list of distinct statistics"),
        (Scheme("tile", vote="loudest"), "--vote must be one of"),
    ],
)
def test_bad_schemes_are_refused(scheme, message):
    with pytest.raises(ConfigError, match=message):
        scheme.validate()


def _one_big_image(seed=0):
    """20 images, 10 per class; one class-1 image has 1,000 tiles, 100x each other image's 10.

    Five class-0 images and the big class-1 image look alike (tiles around the origin); the other images sit apart
    (class 0 at +3, class 1 at -3 on the first axis). Counting images, the look-alike region is class 0 (5 images
    to 1); counting tiles, it is class 1 (1,000 tiles to 50, still after class weights over tiles).
    """
    rng = np.random.default_rng(seed)
    centres = [0.0] * 5 + [3.0] * 5 + [0.0] + [-3.0] * 9
    counts = [10] * 10 + [1000] + [10] * 9
    image_index = np.repeat(np.arange(20), counts)
    embeddings = rng.normal(scale=0.5, size=(len(image_index), 8))
    embeddings[:, 0] += np.repeat(centres, counts)
    features = FeatureSet(embeddings.astype(np.float32), image_index, np.ones(len(image_index), np.float32),
                          np.zeros((len(image_index), 2), np.int32), [f"train/img_{i}" for i in range(20)],
                          [f"img_{i}.png" for i in range(20)])
    look_alike = rng.normal(scale=0.5, size=(200, 8)).astype(np.float32)
    return features, np.array([0] * 10 + [1] * 10), look_alike


# Class-0 probability of new look-alike tiles, at least: 5 images to 1 would give 0.83. LightGBM's trees still carve
# the region by row counts (its A rows end up in small pockets among 1,000 B rows), so it moves from 0.18 to 0.44-0.48
# on seeds 0-2 rather than past one half; the weights it is given are the same (the test below).
FLOORS = {"logreg": 0.6, "mlp": 0.6, "lgbm": 0.4}


@pytest.mark.parametrize("name", ["logreg", "lgbm", "mlp"])
def test_one_big_image_does_not_outweigh_the_others_in_tile_level_training(name):
    from pipeline.heads import make_head

    features, labels, look_alike = _one_big_image()
    unweighted = make_head(name, n_jobs=1).fit(features.embeddings, labels[features.image_index],
                                               groups=features.image_index)
    before = unweighted.predict_proba(look_alike)[:, 0].mean()
    assert before < 0.4  # tiles counted: the big image's class wins the look-alike region
    head = fit_head(lambda: make_head(name, n_jobs=1), features, np.arange(20), labels, np.arange(20), Scheme())
    after = head.predict_proba(look_alike)[:, 0].mean()
    assert after > FLOORS[name]  # images counted: 5 images to 1


def test_each_image_and_each_class_weighs_the_same_in_a_tile_level_fit():
    from pipeline.heads.logreg import LogRegHead

    class WeightSpy(LogRegHead):
        def fit(self, X, y, groups=None, sample_weight=None):
            WeightSpy.given = sample_weight
            WeightSpy.final = self._prepare_targets(y, len(X), sample_weight)[1]  # with the balanced class weights
            return super().fit(X, y, groups, sample_weight)

    features, labels, _ = _one_big_image()
    images = np.array([0, 1, 2, 5, 6, 10, 11, 12])  # 5 images of class 0 (50 tiles), 3 of class 1 (1,020 tiles)
    fit_head(WeightSpy, features, images, labels, np.arange(20), Scheme())
    index = features.subset(images).image_index
    np.testing.assert_allclose(WeightSpy.given.mean(), 1.0)
    np.testing.assert_allclose(np.bincount(index, weights=WeightSpy.given), len(index) / 8)  # equal per image
    per_image = np.bincount(index, weights=WeightSpy.final)
    # balanced over images: each class holds half the weight, split equally among its images
    np.testing.assert_allclose(per_image, [len(index) / 2 / 5] * 5 + [len(index) / 2 / 3] * 3)
