from pathlib import Path

import numpy as np
import pytest

from pipeline.cache.featureset import FeatureSet
from pipeline.classify.labels import check_class_sizes, edit_distance, join_labels
from pipeline.errors import ConfigError, LabelsError

CSV = Path("train_labels.csv")


def _names(counts: dict[str, int]) -> tuple[list[str], list[str]]:
    names = [name for name, n in counts.items() for _ in range(n)]
    return names, [f"img_{i:04d}.png" for i in range(len(names))]


def test_a_class_smaller_than_folds_gets_a_fold_count_that_works():
    names, ids = _names({"a": 10, "b": 3})
    with pytest.raises(ConfigError, match=r"'b' has 3 image\(s\) \(img_0010.png, img_0011.png, img_0012.png\)\. "
                                          r"Use --folds 3 or fewer"):
        check_class_sizes(names, ids, 5, CSV)
    check_class_sizes(names, ids, 3, CSV)  # enough


def test_a_class_of_one_image_says_no_fold_count_can_work_even_with_two_folds():
    names, ids = _names({"a": 10, "b": 1})
    with pytest.raises(ConfigError) as caught:
        check_class_sizes(names, ids, 2, CSV)
    message = str(caught.value)
    assert "'b' has 1 image(s) (img_0010.png)" in message and "no --folds can work" in message
    assert "fix its label in train_labels.csv, merge it into another class, or drop its rows" in message
    assert "Use --folds" not in message


def test_a_typo_class_gets_did_you_mean_with_its_rows():
    names, ids = _names({"lung_n": 20, "lung_scc": 20, "lung_nn": 1})
    with pytest.raises(ConfigError, match=r"'lung_nn' has 1 image\(s\) \(img_0040.png\)\. Did you mean 'lung_n'\?"):
        check_class_sizes(names, ids, 5, CSV)


def test_classes_one_character_apart_are_fine_when_both_are_large():
    names, ids = _names({"HER2(+)": 12, "HER2(-)": 12})
    check_class_sizes(names, ids, 5, CSV)


def _features(sample_index: list[str]) -> FeatureSet:
    n = len(sample_index)
    return FeatureSet(np.zeros((n, 2), np.float32), np.arange(n), np.ones(n, np.float32), np.zeros((n, 2), np.int32),
                      [f"train/{s[:-4]}" for s in sample_index], sample_index)


def test_a_label_that_differs_only_by_case_or_spaces_is_refused_with_its_rows():
    labels = {"img_0000.png": "lung_scc", "img_0001.png": "lung_scc", "img_0002.png": "Lung_scc",
              "img_0003.png": "lung_n", "img_0004.png": "lung_n "}
    labels["img_0004.png"] = "lung_n"
    with pytest.raises(LabelsError, match=r"the label 'Lung_scc' \(1 row\(s\): img_0002.png\) differs from the class "
                                          r"'lung_scc' only by case or spaces. Did you mean 'lung_scc'\?"):
        join_labels(_features(sorted(labels)), labels, CSV, {})


def test_edit_distance():
    assert edit_distance("lung_nn", "lung_n") == 1
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3
