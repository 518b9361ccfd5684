import numpy as np
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


def _mixed_folder(root):
    """train_data with an image and its mask, an image without one, two slides (an Aperio .svs and a tiled generic
    .tif, their own names), a small stripped .tif without the img_ prefix and a stripped img_ .tif image."""
    import numpy as np
    import tifffile
    from PIL import Image

    from benchmarks import slide_maker

    folder = root / "train_data"
    folder.mkdir(parents=True)
    pixels = np.full((64, 64, 3), 200, np.uint8)
    for name in ("img_0000.png", "mask_0000.png", "img_0001.jpg", "notes.tif", "img_0002.tif", "mask_0002.png"):
        Image.fromarray(pixels).save(folder / name)
    layout = slide_maker.default_layout(512, 512, slide_maker.synthetic_patches())
    slide_maker.write_slide(folder / "TCGA-A1-A0SB.svs", layout, "aperio")
    tifffile.imwrite(folder / "scan 7.tif", np.zeros((512, 512, 3), np.uint8), tile=(256, 256))
    return folder


def test_slides_and_unmasked_images_say_their_kind_and_mask_source(tmp_path):
    folder = _mixed_folder(tmp_path)
    records = find_records(tmp_path, slides=True)
    found = {r.sample_index: (r.image_id, r.kind, r.mask_source, r.mask_path and r.mask_path.name) for r in records}
    assert found == {
        "img_0000.png": ("train/img_0000", "image", "mask_file", "mask_0000.png"),
        "img_0001.jpg": ("train/img_0001", "unmasked_image", "tissue_detection", None),
        "img_0002.tif": ("train/img_0002", "image", "mask_file", "mask_0002.png"),  # stripped: an image
        "TCGA-A1-A0SB.svs": ("train/TCGA-A1-A0SB", "slide", "tissue_detection", None),
        "scan 7.tif": ("train/scan 7", "slide", "tissue_detection", None),  # tiled: a slide, under its own name
    }
    assert [r.sample_index for r in records][-2:] == ["TCGA-A1-A0SB.svs", "scan 7.tif"]
    assert all(r.image_path == folder / r.sample_index for r in records)
    # Without slides=True the listing is what it always was: the img_ files, no slide.
    assert [(r.sample_index, r.kind) for r in find_records(tmp_path)] == [
        ("img_0000.png", "image"), ("img_0001.jpg", "unmasked_image"), ("img_0002.tif", "image"),
    ]


def test_a_tiled_img_tif_is_a_slide_and_two_files_may_not_share_a_stem(tmp_path):
    import numpy as np
    import tifffile

    folder = _mixed_folder(tmp_path)
    tifffile.imwrite(folder / "img_0003.tif", np.zeros((512, 512, 3), np.uint8), tile=(256, 256))
    kinds = {r.sample_index: r.kind for r in find_records(tmp_path, slides=True)}
    assert kinds["img_0003.tif"] == "slide"
    (folder / "TCGA-A1-A0SB.png").write_bytes(b"x")
    (folder / "img_TCGA.png").write_bytes(b"x")
    tifffile.imwrite(folder / "img_0000.tiff", np.zeros((512, 512, 3), np.uint8), tile=(256, 256))
    with pytest.raises(DataLayoutError, match="share the name img_0000, so their features would share one cache"):
        find_records(tmp_path, slides=True)


def test_a_mask_file_beside_a_slide_is_its_mask_and_tissue_mask_lists_only_such_slides(tmp_path):
    from PIL import Image

    from pipeline.data.records import slide_listing

    folder = _mixed_folder(tmp_path)
    Image.fromarray(np.zeros((32, 32), np.uint8)).save(folder / "mask_TCGA-A1-A0SB.png")  # any downsample
    found = {r.sample_index: (r.kind, r.mask_source, r.mask_path and r.mask_path.name)
             for r in find_records(tmp_path, slides=slide_listing("auto"))}
    assert found["TCGA-A1-A0SB.svs"] == ("slide", "mask_file", "mask_TCGA-A1-A0SB.png")
    assert found["scan 7.tif"] == ("slide", "tissue_detection", None)
    assert "mask_TCGA-A1-A0SB.png" not in found
    masked = [r.sample_index for r in find_records(tmp_path, slides=slide_listing("mask")) if r.kind == "slide"]
    assert masked == ["TCGA-A1-A0SB.svs"]  # --tissue mask: mask files only


def test_a_record_checks_its_kind_and_mask_source(tmp_path):
    from pipeline.data.records import ImageRecord

    record = ImageRecord("train/a", "train", "a.svs", tmp_path / "a.svs", None, "slide", "tissue_detection")
    assert record.kind == "slide"
    with pytest.raises(ValueError, match="kind must be one of"):
        ImageRecord("train/a", "train", "a.svs", tmp_path / "a.svs", None, "wsi")
    with pytest.raises(ValueError, match="mask source 'mask_file' does not match mask file None"):
        ImageRecord("train/a", "train", "a.png", tmp_path / "a.png", None, "image", "mask_file")


def test_labels_map_slide_file_names(tmp_path):
    path = tmp_path / "labels.csv"
    path.write_text("sample_index,label\nTCGA-A1-A0SB.svs,Luminal A\nscan 7.tif,Basal\nimg_0000.png,Basal\n")
    assert read_labels(path) == {"TCGA-A1-A0SB.svs": "Luminal A", "scan 7.tif": "Basal", "img_0000.png": "Basal"}
    path.write_text("TCGA-A1-A0SB.SVS,Luminal A\n")
    with pytest.raises(LabelsError, match="The first row is data: add the header row"):
        read_labels(path)
