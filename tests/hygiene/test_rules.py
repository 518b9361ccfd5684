import numpy as np
import pytest

from pipeline.hygiene.rules import RULES, apply_rules, robust_z, rule_lines, scores_of
from pipeline.hygiene.settings import QualitySettings


def _scores(stain, flat=0.01, off_hue=0.0, green=0.0, outlier=1.0):
    n = len(stain)
    full = lambda value: np.full(n, value, dtype=np.float64)  # noqa: E731
    return {"q_stain_fraction": np.asarray(stain, dtype=np.float64), "q_flat_fill_fraction": full(flat),
            "q_off_hue_fraction": full(off_hue), "q_green_ink_fraction": full(green), "outlier_ratio": full(outlier)}


def _fired(scores, **settings):
    rules = apply_rules(scores, QualitySettings(**settings))
    return {rule: np.nonzero(fired)[0].tolist() for rule, fired in rules.items() if fired.any()}


def test_robust_z():
    z = robust_z(np.array([1.0, 2.0, 3.0, 4.0, 100.0, np.nan]))
    assert z[2] == 0.0 and z[4] > 30 and np.isnan(z[5])
    assert robust_z(np.full(5, 0.5)).tolist() == [0.0] * 5  # no spread: the floor keeps it finite
    assert np.isnan(robust_z(np.array([np.nan, np.nan]))).all()


def test_little_stain_needs_the_threshold_and_the_dataset():
    assert _fired(_scores([0.9] * 20 + [0.02])) == {"little_stain": [20]}
    assert _fired(_scores(np.linspace(0.03, 0.09, 20))) == {}  # pale throughout: normal for itself
    assert _fired(_scores([0.95] * 20 + [0.5])) == {}  # an outlier, but above the threshold
    assert _fired(_scores([0.9, 0.05])) == {"little_stain": [1]}  # under 8 images: the threshold alone
    assert _fired(_scores([0.9] * 3 + [np.nan] * 10 + [0.05])) == {"little_stain": [13]}  # NaN does not count
    assert _fired(_scores(np.linspace(0.03, 0.09, 20)), min_images_for_z=100) == {"little_stain": list(range(20))}


def test_flat_fills_need_the_threshold_and_the_dataset():
    scores = _scores([0.9] * 12)
    scores["q_flat_fill_fraction"][3] = 0.9
    assert _fired(scores) == {"flat_fills": [3]}
    scores["q_flat_fill_fraction"][:] = 0.7  # smooth throughout (a compressed scanner export): normal for itself
    assert _fired(scores) == {}


def test_absolute_rules_and_missing_scores():
    scores = _scores([0.9] * 10, off_hue=0.0, green=0.0, outlier=1.0)
    scores["q_green_ink_fraction"][3] = 0.02
    scores["q_off_hue_fraction"][4] = 0.3
    scores["outlier_ratio"][5] = 4.0
    assert _fired(scores) == {"green_ink": [3], "off_hue": [4], "embedding_outlier": [5]}
    scores["q_green_ink_fraction"][:] = 0.02  # ink on every slide is still ink
    assert _fired(scores)["green_ink"] == list(range(10))
    missing = {key: np.full(3, np.nan) for key in _scores([0.0] * 3)}
    assert _fired(missing) == {}


def test_rule_lines_name_every_rule_and_its_threshold():
    lines = rule_lines(QualitySettings(min_stain_fraction=0.2))
    assert set(lines) == set(RULES)
    assert lines["little_stain"].startswith("non_tissue: stain_fraction < 0.2 and more than 3 robust SDs below")
    assert lines["green_ink"] == "ink: green_ink_fraction > 0.003"


def test_scores_of_missing_keys_are_nan():
    assert scores_of([{"q_x": 0.5}, {}], "q_x").tolist()[0] == pytest.approx(0.5)
    assert np.isnan(scores_of([{}], "q_x")[0])


def test_each_pen_colour_has_its_rule_and_a_missing_colour_fires_nothing():
    scores = _scores([0.9] * 6)
    scores["q_blue_ink_fraction"] = np.array([0.0, 0.01, 0.0, 0.0, np.nan, 0.0])
    scores["q_black_ink_fraction"] = np.array([0.0, 0.0, 0.01, 0.0, np.nan, 0.003])  # 0.003: under 0.004
    assert _fired(scores) == {"blue_ink": [1], "black_ink": [2]}
    assert RULES["blue_ink"] == RULES["black_ink"] == "ink"
    assert _fired(scores, max_black_ink_fraction=0.002) == {"blue_ink": [1], "black_ink": [2, 5]}
    lines = rule_lines()
    assert lines["blue_ink"] == "ink: blue_ink_fraction > 0.003" and lines["black_ink"].endswith("> 0.004")
