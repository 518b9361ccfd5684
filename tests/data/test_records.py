import pytest

from pipeline.data.labels import read_labels
from pipeline.data.records import find_records
from pipeline.errors import DataLayoutError, LabelsError


def test_finds_pairs_with_split_in_ids(make_data):
    root = make_data(n_train=3, n_test=2)
    records = find_records(root)
    assert [r.image_id for r in records] == [
        "train/img_0000", "train/img_0001", "train/img_0002", "test/img_0000", "test/img_0001",
    ]
    assert records[3].sample_index == "img_0000.png" and records[3].split == "test"
    assert all(r.mask_path.name == r.image_path.name.replace("img_", "mask_") for r in records)
    assert [r.split for r in find_records(root, "test")] == ["test", "test"]


def test_jpeg_image_with_png_mask_and_missing_mask(tmp_path):
    folder = tmp_path / "train_data"
    folder.mkdir()
    (folder / "img_0000.jpg").write_bytes(b"x")
    (folder / "mask_0000.png").write_bytes(b"x")
    (folder / "mask_0000.jpg").write_bytes(b"x")  # the lossless mask wins
    (folder / "img_0001.png").write_bytes(b"x")
    (folder / "notes.txt").write_text("ignored")
    records = find_records(tmp_path)
    assert records[0].mask_path.name == "mask_0000.png"
    assert records[1].mask_path is None


def test_folder_without_splits_is_an_error(tmp_path):
    with pytest.raises(DataLayoutError, match="has neither train_data/ nor test_data/"):
        find_records(tmp_path)
    with pytest.raises(DataLayoutError, match="does not exist"):
        find_records(tmp_path / "nope")


def test_requested_split_missing_is_an_error(make_data):
    root = make_data(n_train=2, n_test=0)
    with pytest.raises(DataLayoutError, match="--split test was asked for"):
        find_records(root, "test")
    with pytest.raises(DataLayoutError, match="must be one of train, test, all. Got 'val' instead."):
        find_records(root, "val")


def test_labels_accept_bom_crlf_spaces_and_identical_duplicates(tmp_path, caplog):
    path = tmp_path / "labels.csv"
    path.write_bytes("\ufeffsample_index , label\r\n img_0000.png , Luminal A \r\nimg_0001.png,HER2(+)\r\n"
                     "img_0001.png,HER2(+)\r\n\r\n".encode())
    assert read_labels(path) == {"img_0000.png": "Luminal A", "img_0001.png": "HER2(+)"}
    assert "listed twice" in caplog.text


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("", "is empty"),
        ("sample_index,label\n", "has a header but no rows"),
        ("id,class\nimg_0000.png,a\n", "must have the columns sample_index,label. Got 'id,class' instead."),
        ("sample_index,label\nimg_0000.png,a\nimg_0000.png,b\n", "img_0000.png has two labels, 'a' and 'b'"),
        ("sample_index,label\nimg_0000.png\n", "line 2: expected sample_index,label"),
    ],
)
def test_label_file_errors(tmp_path, content, message):
    path = tmp_path / "labels.csv"
    path.write_text(content)
    with pytest.raises(LabelsError, match=message.replace("(", r"\(").replace(")", r"\)")):
        read_labels(path)


def test_missing_label_file(tmp_path):
    with pytest.raises(LabelsError, match="does not exist"):
        read_labels(tmp_path / "missing.csv")
