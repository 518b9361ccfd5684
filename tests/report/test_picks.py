import numpy as np

from pipeline.report.picks import resolve_requests, select_images


def test_selection_picks_confidently_wrong_then_unsure_then_sure_correct_per_class():
    labels = np.array([0, 0, 0, 1, 1, 1, 0, 1])
    proba = np.array([
        [0.9, 0.1],  # 0 correct, sure
        [0.2, 0.8],  # 1 wrong, confident
        [0.55, 0.45],  # 2 correct, unsure
        [0.6, 0.4],  # 3 wrong, less confident
        [0.1, 0.9],  # 4 correct, surest of class 1
        [0.48, 0.52],  # 5 correct, least confident of all
        [0.7, 0.3],  # 6 correct
        [np.nan, np.nan],  # 7 never validated
    ])
    picks = select_images(labels, proba, n_wrong=1, n_unsure=2, n_correct=1)
    assert [(p.index, p.reason) for p in picks] == [(1, "wrong"), (5, "unsure"), (2, "unsure"), (0, "correct"),
                                                    (4, "correct")]
    everything = select_images(labels, proba, n_wrong=5, n_unsure=0, n_correct=5)
    assert [p.index for p in everything if p.reason == "wrong"] == [1, 3]
    assert 7 not in [p.index for p in everything] and len({p.index for p in everything}) == len(everything)


def test_requests_by_id_file_name_stem_test_id_and_all():
    train_ids = ["train/img_0000", "train/img_0001", "train/img_0002"]
    samples = ["img_0000.png", "img_0001.png", "img_0002.png"]
    picks, unknown = resolve_requests(["img_0002.png", "train/img_0000", "img_0002", "test/img_0001", "img_9"],
                                      train_ids, samples, ["test/img_0000", "test/img_0001"])
    assert [(p.split, p.index, p.reason) for p in picks] == [("train", 2, "requested"), ("train", 0, "requested"),
                                                              ("test", 1, "requested")]
    assert unknown == ["img_9"]
    picks, unknown = resolve_requests(["all"], train_ids, samples, [])
    assert [p.index for p in picks] == [0, 1, 2] and not unknown
