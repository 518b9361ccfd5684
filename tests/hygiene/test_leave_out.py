import numpy as np

from pipeline.hygiene.leave_out import MAX_CLASS_SHARE, MAX_SHARE, left_out_for_flags, too_many_line
from tests.hygiene.test_assessment import _assess, _attrs


def _report(n, ink=(), little_stain=(), off_hue=()):
    attrs = _attrs(n)
    for i in ink:
        attrs[i]["q_green_ink_fraction"] = 0.2
    for i in little_stain:
        attrs[i]["q_stain_fraction"] = 0.01
    for i in off_hue:
        attrs[i]["q_off_hue_fraction"] = 0.4
    return _assess(attrs)


def test_the_limits_are_the_issues():
    assert (MAX_SHARE, MAX_CLASS_SHARE) == (0.05, 0.10)


def test_under_both_limits_flagged_images_are_left_out_silently():
    report = _report(100, ink=range(4))  # 4% of all, 8% of class a
    labels = ["a"] * 50 + ["b"] * 50
    left_out, line = left_out_for_flags(report, labels)
    assert np.nonzero(left_out)[0].tolist() == [0, 1, 2, 3] and line is None
    kept, line = left_out_for_flags(report, labels, keep_outliers=True)
    assert not kept.any() and line is None


def test_over_the_share_limit_all_are_kept_and_the_line_names_counts_flags_and_rules():
    report = _report(100, ink=(0, 1), little_stain=(60, 61, 62), off_hue=(63,))  # 6 of 100, b: 4 of 50
    labels = ["a"] * 50 + ["b"] * 50
    left_out, line = left_out_for_flags(report, labels)
    assert not left_out.any()
    assert line == ("hygiene flags 6 of 100 training images (6.0%): non_tissue 4 (little_stain 3, off_hue 1), ink 2 "
                    "(green_ink 2); over 5% of the training images or 10% of a class, so all are kept in training "
                    "(pass --drop-flagged to leave them out)")
    left_out, line = left_out_for_flags(report, labels, drop_flagged=True)
    assert left_out.sum() == 6 and line.endswith("of a class, --drop-flagged leaves them out of training")


def test_over_the_class_limit_alone():
    report = _report(100, ink=(90, 91, 92))  # 3% of all, but 3 of 20 of class c: 15%
    labels = ["a"] * 40 + ["b"] * 40 + ["c"] * 20
    left_out, line = left_out_for_flags(report, labels)
    assert not left_out.any()
    assert line.startswith("hygiene flags 3 of 100 training images (3.0%; c: 3 of 20, 15.0%): ink 3 (green_ink 3);")


def test_only_training_rows_count():
    report = _report(40, ink=(35, 36, 37, 38, 39))  # the flagged images are test rows (after the 30 training ones)
    left_out, line = left_out_for_flags(report, ["a"] * 30)
    assert left_out.shape == (30,) and not left_out.any() and line is None
    assert too_many_line(np.zeros(30, bool), ["a"] * 30, report, dropped=False) is None
