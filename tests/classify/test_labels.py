from pathlib import Path

import numpy as np
import pytest

from pipeline.cache.featureset import FeatureSet
from pipeline.classify.labels import edit_distance, join_labels, label_problems
from pipeline.errors import LabelsError

CSV = Path("train_labels.csv")


def _names(counts: dict[str, int]) -> tuple[list[str], list[str]]:
    names = [name for name, n in counts.items() for _ in range(n)]
    return names, [f"img_{i:04d}.png" for i in range(len(names))]


def check_class_sizes(names, ids, folds, path):
    problems = label_problems(names, ids, folds, path)
    if problems:
        raise LabelsError("\n".join(problems))


def test_a_class_smaller_than_folds_gets_a_fold_count_that_works():
    names, ids = _names({"a": 10, "b": 3})
    with pytest.raises(LabelsError, match=r"'b' has 3 image\(s\) \(img_0010.png, img_0011.png, img_0012.png\)\. "
                                          r"Use --folds 3 or fewer"):
        check_class_sizes(names, ids, 5, CSV)
    check_class_sizes(names, ids, 3, CSV)  # enough


def test_a_class_of_one_image_says_no_fold_count_can_work_even_with_two_folds():
    names, ids = _names({"a": 10, "b": 4})
    names[-1] = "c"
    with pytest.raises(LabelsError) as caught:
        check_class_sizes(names, ids, 2, CSV)
    message = str(caught.value)
    assert "'c' has 1 image(s) (img_0013.png)" in message and "no --folds can work" in message
    assert "fix its label in train_labels.csv, merge it into another class, or drop its rows" in message
    assert "Use --folds" not in message


def test_a_small_class_close_to_a_larger_one_gets_did_you_mean_with_its_rows():
    names, ids = _names({"lung_n": 10, "lung_scc": 20, "lung_nn": 3})  # 10 is not 5 times 3: not taken for a typo
    with pytest.raises(LabelsError, match=r"'lung_nn' has 3 image\(s\) \(img_0030.png, img_0031.png, img_0032.png\)"
                                          r"\. Did you mean 'lung_n'\?"):
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
    with pytest.raises(LabelsError, match=r"the label 'Lung_scc' \(1 row\(s\): img_0002.png\) differs only by case, "
                                          r"spaces, '-' or '_' from the class 'lung_scc' \(2 rows\). Did you mean "
                                          r"'lung_scc'\?"):
        join_labels(_features(sorted(labels)), labels, CSV, {})


def test_edit_distance():
    assert edit_distance("lung_nn", "lung_n") == 1
    assert edit_distance("kitten", "sitting") == 3
    assert edit_distance("", "abc") == 3


def _labels(counts: dict[str, int]) -> dict[str, str]:
    names, ids = _names(counts)
    return dict(zip(ids, names, strict=True))


def test_a_typo_on_many_rows_is_refused_with_every_row_whatever_its_size():
    labels = _labels({"lung_aca": 174, "lung_acc": 6, "lung_n": 180, "lung_scc": 180})
    with pytest.raises(LabelsError) as caught:
        join_labels(_features(list(labels)), labels, CSV, {}, n_folds=5)
    message = str(caught.value)
    rows = ", ".join(f"img_{i:04d}.png" for i in range(174, 180))
    assert f"the label 'lung_acc' (6 row(s): {rows}) is 1 edit(s) from the class 'lung_aca' (174 rows)" in message
    assert "Did you mean 'lung_aca'?" in message and "--allow-labels 'lung_acc'" in message


def test_allow_labels_accepts_a_label_that_is_meant():
    labels = _labels({"lung_aca": 174, "lung_acc": 6, "lung_n": 180})
    names = join_labels(_features(list(labels)), labels, CSV, {}, n_folds=5, allowed=["lung_acc"])
    assert names.count("lung_acc") == 6
    with pytest.raises(LabelsError, match="--allow-labels 'lung_ac': no row of train_labels.csv has that label"):
        join_labels(_features(list(labels)), labels, CSV, {}, n_folds=5, allowed=["lung_acc", "lung_ac"])


def test_a_dash_or_underscore_variant_is_a_typo_and_similar_classes_of_similar_size_are_not():
    labels = _labels({"Luminal A": 40, "Luminal B": 30, "HER2(+)": 20, "HER2(-)": 18, "luminal-a": 9})
    with pytest.raises(LabelsError) as caught:
        join_labels(_features(list(labels)), labels, CSV, {}, n_folds=5)
    message = str(caught.value)
    assert "the label 'luminal-a' (9 row(s)" in message and "from the class 'Luminal A'" in message
    assert "'Luminal B' (" not in message and "'HER2(-)' (" not in message


def test_every_label_problem_is_reported_in_one_error():
    labels = _labels({"lung_aca": 60, "lung_acc": 3, "lung_n": 60, "lung_scc": 60, "lung_scx": 2, "other": 2})
    train = _features(list(labels)[1:])  # img_0000.png labelled but not cached
    labels["img_9999.png"] = "lung_n"
    del labels["img_0005.png"]  # cached but not labelled
    with pytest.raises(LabelsError) as caught:
        join_labels(train, labels, CSV, {}, n_folds=5)
    message = str(caught.value)
    assert message.startswith("train_labels.csv: 5 label problems; fix them all, then run again:")
    for part in ("1 cached train image(s) have no row in train_labels.csv: img_0005.png",
                 "lists 2 image(s) missing from the cache: img_0000.png, img_9999.png",
                 "the label 'lung_acc' (3 row(s)", "the label 'lung_scx' (2 row(s)",
                 "'other' has 2 image(s)"):
        assert part in message
