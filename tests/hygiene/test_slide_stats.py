"""Hygiene on made slides: tissue and pen statistics by colour, and duplicate slides found by their thumbnail hash."""

import hashlib
import shutil

import numpy as np
import pytest

from benchmarks import slide_maker
from pipeline.cache import store
from pipeline.data.images import pixels_xxh3
from pipeline.data.slide_tiles import find_slide_tissue
from pipeline.data.slides import Slide
from pipeline.hygiene.assessment import assess
from pipeline.hygiene.checks import SLIDE_STATS, image_quality
from pipeline.hygiene.slide_stats import add_slide_statistics, slide_statistics

pytest.importorskip("tifffile")

SIDE = 4096  # level-0 px at 0.5 um/px: a 256-px thumbnail at 8 um/px


def _found(path, mpp=None):
    with Slide(path, mpp=mpp) as slide:
        return find_slide_tissue(slide)


@pytest.fixture(scope="module")
def inked(tmp_path_factory, patches):
    """A slide with green, blue and black strokes across its first piece, and its layout."""
    layout = slide_maker.default_layout(SIDE, SIDE, patches, pens=("green", "blue", "black"))
    path = slide_maker.write_slide(tmp_path_factory.mktemp("inked") / "inked.svs", layout, "aperio", mpp=0.5,
                                   app_mag=20)
    return path, layout


def test_pen_fractions_by_colour_and_the_tissue_fraction_match_the_made_slide(inked):
    path, layout = inked
    stats = slide_statistics(_found(path))
    assert set(stats) == set(SLIDE_STATS)
    # each band of ink, 1/64 of the side thick, widened by the detector's margin of 2 thumbnail px (32 level-0 px)
    _, _, width, thickness, _ = layout.pens[0]
    band = (thickness + 2 * 32) * width / SIDE**2
    for colour in ("green", "blue", "black"):
        assert 0.7 * band <= stats[f"slide_pen_{colour}_fraction"] <= 1.3 * band, (colour, stats, band)
    assert stats["slide_pen_fraction"] == pytest.approx(sum(stats[f"slide_pen_{c}_fraction"]
                                                            for c in ("green", "blue", "black")))
    truth = (layout.tissue_mask(16) & ~layout.pen_mask(16)).mean()
    assert 0.8 * truth <= stats["slide_tissue_fraction"] <= truth  # glas15's lumens and the pen margin stay out


def test_a_slide_without_pen_has_none_and_one_colour_is_told_apart(tmp_path, patches):
    plain = slide_maker.write_slide(tmp_path / "plain.svs", slide_maker.default_layout(SIDE, SIDE, patches), mpp=0.5)
    stats = slide_statistics(_found(plain))
    assert stats["slide_pen_fraction"] == 0 and stats["slide_tissue_fraction"] > 0.2
    green = slide_maker.default_layout(SIDE, SIDE, patches, pens=("green",))
    stats = slide_statistics(_found(slide_maker.write_slide(tmp_path / "green.svs", green, mpp=0.5)))
    assert stats["slide_pen_green_fraction"] > 0 and stats["slide_pen_fraction"] == stats["slide_pen_green_fraction"]


def test_statistics_are_written_once_into_slide_files_only(inked, tmp_path):
    path, _ = inked
    files, attrs, images = {}, {}, {"train/inked": path, "train/img_0000": tmp_path / "img_0000.png"}
    for image_id in images:
        files[image_id] = tmp_path / f"{image_id.split('/')[1]}.h5"
        store.write_image_features(files[image_id], np.zeros((1, 4), np.float32), np.zeros((1, 2), np.int32),
                                   np.ones(1, np.float32), {"image_id": image_id}, {"mpp_level0": 0.5})
        attrs[image_id] = store.read_attrs(files[image_id])
    assert add_slide_statistics(images, files, attrs) == 1
    written = store.read_attrs(files["train/inked"])
    assert written["slide_pen_blue_fraction"] > 0 and written["image_id"] == "train/inked"
    assert attrs["train/inked"] == written and "slide_pen_fraction" not in store.read_attrs(files["train/img_0000"])
    assert add_slide_statistics(images, files, attrs) == 0  # already there: the slide is not read again


def _slide_attrs(path, mpp):
    """A slide's hygiene attributes as extraction stores them (extract/decoding.py): checksums and thumbnail scores."""
    found = _found(path, mpp)
    return {"image_sha256": hashlib.sha256(path.read_bytes()).hexdigest(),
            "pixels_xxh3": pixels_xxh3(found.thumbnail),
            "mask_sha256": "", "mask_fraction": float(found.tissue.mean()),
            **image_quality(found.thumbnail, found.tissue), **slide_statistics(found)}


def test_copies_reencoded_rescaled_and_reframed_scans_are_duplicates_and_other_slides_are_not(inked, tmp_path, patches):
    path, layout = inked
    shifted = slide_maker.SlideLayout(  # the same glass scanned with a wider margin (another scan area)
        SIDE + 512, SIDE + 256, tuple((x + 256, y + 128, w, h) for x, y, w, h in layout.tissue), layout.patches,
        tuple((x + 256, y + 128, w, h, ink) for x, y, w, h, ink in layout.pens))
    rng = np.random.default_rng(0)
    pieces = tuple((int(x) * 256, int(y) * 256, int(w) * 256, int(h) * 256) for x, y, w, h in
                   zip(rng.integers(0, 8, 3), rng.integers(0, 8, 3), rng.integers(3, 8, 3), rng.integers(3, 8, 3),
                       strict=True))
    slides = {"inked": (path, 0.5), "copy": (shutil.copy(path, tmp_path / "copy.svs"), 0.5)}
    for name, made, mpp, options in (("jpeg60", layout, 0.5, {"quality": 60}),
                                     ("at40x", slide_maker.doubled(layout), 0.25, {}),
                                     ("reframed", shifted, 0.5, {}),
                                     ("other", slide_maker.SlideLayout(SIDE, SIDE, pieces, patches), 0.5, {})):
        slides[name] = (slide_maker.write_slide(tmp_path / f"{name}.svs", made, "aperio", mpp=mpp,
                                                app_mag=round(10 / mpp), **options), mpp)
    names = list(slides)
    attrs = [_slide_attrs(p, mpp) for p, mpp in slides.values()]
    report = assess([f"train/{n}" for n in names], [f"{n}.svs" for n in names], attrs,
                    np.random.default_rng(1).normal(size=(len(names), 8)))
    flags = {name: report.reasons(i) for i, name in enumerate(names)}
    assert flags["copy"] == flags["inked"] == ["exact_duplicate", "near_duplicate"]  # same file, and the others
    for name in ("jpeg60", "at40x", "reframed"):
        assert flags[name] == ["near_duplicate"], (name, flags)
    assert flags["other"] == [] and len(set(report.duplicate_group[:-1])) == 1
    assert report.duplicate_group[-1] != report.duplicate_group[0]
    distance = report.scores["nearest_phash_distance"]
    assert distance[names.index("reframed")] <= 8 and distance[names.index("other")] >= 20
    assert report.scores["pen_blue_fraction"][0] > 0 and np.isfinite(report.scores["tissue_fraction"]).all()
