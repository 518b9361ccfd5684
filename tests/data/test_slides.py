"""Whole-slide images through OpenSlide and tiffslide: levels, MPP, tiles equal to OpenSlide's pixels, thumbnails,
and each documented error. The slides are made here (benchmarks/slide_maker.py), from glas15 when it is present."""

import sys

import numpy as np
import openslide
import pytest
from PIL import Image

from benchmarks import slide_maker
from pipeline.data import slide_backends, slides
from pipeline.data.slide_backends import is_slide
from pipeline.data.slides import Slide
from pipeline.errors import ImageReadError, SlideLibraryError, SlideMppError, SlideReadError

BACKENDS = ("openslide", "tiffslide")



@pytest.fixture(scope="module")
def made(tmp_path_factory, any_patches):
    """Three made slides: Aperio 4096x4096 at 0.25 um/px (40x), generic 4096x2048 at 0.5 um/px in centimetres,
    and generic without resolution unit (no MPP). Returns {name: (path, layout)}."""
    folder = tmp_path_factory.mktemp("slides")
    square = slide_maker.default_layout(4096, 4096, any_patches, pens=("green",))
    wide = slide_maker.default_layout(4096, 2048, any_patches)
    return {
        "aperio": (slide_maker.write_slide(folder / "aperio.svs", square, "aperio", mpp=0.25, app_mag=40), square),
        "generic": (slide_maker.write_slide(folder / "generic.tif", wide, "generic", mpp=0.5, unit="cm"), wide),
        "no_mpp": (slide_maker.write_slide(folder / "no_mpp.tiff", wide, "generic", unit="none"), wide),
    }


def _openslide_pixels(path, x, y, level, size):
    with openslide.OpenSlide(str(path)) as reference:
        return np.asarray(reference.read_region((x, y), level, (size, size)))[:, :, :3]


@pytest.mark.parametrize("backend", BACKENDS)
def test_made_slides_open_with_levels_mpp_and_objective(made, backend):
    with Slide(made["aperio"][0], backend=backend) as slide:
        assert slide.backend == backend
        assert slide.dimensions == (4096, 4096) and slide.level_count == 3
        assert slide.level_dimensions == ((4096, 4096), (1024, 1024), (256, 256))
        assert slide.level_downsamples == (1.0, 4.0, 16.0)
        assert slide.mpp == pytest.approx(0.25) and slide.mpp_source == f"{backend}.mpp-x"
        assert slide.objective_power == 40.0
        if backend == "openslide":
            assert slide.properties["openslide.vendor"] == "aperio"
    with Slide(made["generic"][0], backend=backend) as slide:
        assert slide.dimensions == (4096, 2048) and slide.level_dimensions[2] == (256, 128)
        assert slide.mpp == pytest.approx(0.5) and slide.objective_power is None
        assert slide.properties["tiff.ResolutionUnit"].lower() == "centimeter"


def test_the_mpp_override_wins_and_says_so(made, caplog):
    with Slide(made["aperio"][0], mpp=0.5) as slide:
        assert slide.mpp == 0.5 and slide.mpp_source == "--mpp"
        assert slide.best_level_for(2.0) == 1
    assert "--mpp 0.5 overrides 0.25 um/px" in caplog.text
    with pytest.raises(ValueError, match="--mpp must be a positive number"):
        Slide(made["aperio"][0], mpp=0.0)
    with Slide(made["aperio"][0]) as slide:
        with pytest.raises(ValueError, match="'resample' parameter must be one of"):
            slide.read_tile(0, 0, 256, 256, resample="cubic")
        with pytest.raises(ValueError, match="Tile sizes must be positive pixel counts. Got size0=0"):
            slide.read_tile(0, 0, 0, 256)
        assert slide.read_tile(512, 512, 128, 256).shape == (256, 256, 3)  # a 40x slide enlarged for an 80x tile


def test_level_choice_is_never_coarser_than_the_target(made):
    with Slide(made["aperio"][0]) as slide:  # levels at 0.25, 1.0 and 4.0 um/px
        assert [slide.best_level_for(t) for t in (0.1, 0.25, 0.5, 0.99, 1.0, 1.005, 3.9, 4.0, 50.0)] == [
            0, 0, 0, 0, 1, 1, 1, 2, 2,
        ]
        for target in np.geomspace(0.05, 20, 60):
            level = slide.best_level_for(target)
            level_mpp = slide.mpp * slide.level_downsamples[level]
            assert level == 0 or level_mpp <= target * (1 + slides.LEVEL_TOLERANCE)
            if level + 1 < slide.level_count:  # the next level would have been coarser than the target
                assert slide.mpp * slide.level_downsamples[level + 1] > target * (1 + slides.LEVEL_TOLERANCE)


@pytest.mark.parametrize("backend", BACKENDS)
def test_read_tile_equals_openslides_own_pixels(made, backend):
    path, layout = made["aperio"]
    x, y = 512, 640  # inside the first tissue piece, not on a tile boundary of the file
    with Slide(path, backend=backend) as slide:
        same_level = slide.read_tile(x, y, 256, 256)
        from_level_1 = slide.read_tile(x, y, 1024, 256)
        resized = slide.read_tile(x, y, 512, 256)
    assert same_level.shape == (256, 256, 3) and same_level.dtype == np.uint8
    expected = {
        "level 0": (same_level, _openslide_pixels(path, x, y, 0, 256)),
        "level 1": (from_level_1, _openslide_pixels(path, x, y, 1, 256)),
        "resized": (resized, np.asarray(Image.fromarray(_openslide_pixels(path, x, y, 0, 512)).resize((256, 256),
                                                                                                   Image.BILINEAR))),
    }
    for name, (ours, theirs) in expected.items():
        difference = np.abs(ours.astype(int) - theirs)
        if backend == "openslide":
            assert difference.max() == 0, name
        else:  # another JPEG decoder may round differently
            assert difference.mean() < 1.0 and difference.max() <= 16, name
    # and the pixels are the made tissue, within JPEG's loss (on 8 x 8 block means, which JPEG keeps even for the
    # noisy synthetic stand-in used without glas15)
    difference = (same_level.astype(float) - layout.render(x, y, 256, 256)).reshape(32, 8, 32, 8, 3)
    assert np.abs(difference.mean(axis=(1, 3))).mean() < 3 and np.abs(difference).mean() < 25


@pytest.mark.parametrize("backend", BACKENDS)
def test_outside_the_slide_is_white(made, backend):
    with Slide(made["generic"][0], backend=backend) as slide:
        region = slide.read_region(4096 - 64, 2048 - 32, 0, 128, 128)
        beyond = slide.read_region(5000, 5000, 1, 16, 16)
        inside = slide.read_region(0, 0, 0, 64, 32)
    assert (region[32:] == 255).all() and (region[:, 64:] == 255).all()
    assert (beyond == 255).all() and region.shape == (128, 128, 3)
    assert np.abs(inside.astype(int) - slide_maker.GLASS).max() < 12  # the glass itself is not white


@pytest.mark.parametrize("backend", BACKENDS)
def test_thumbnail_size_content_and_levels_read(made, backend, monkeypatch):
    path, layout = made["generic"]
    levels = []
    original = Slide.read_region

    def spy(self, x0, y0, level, width, height):
        levels.append((level, width, height))
        return original(self, x0, y0, level, width, height)

    monkeypatch.setattr(Slide, "read_region", spy)
    with Slide(path, backend=backend) as slide:
        thumb = slide.thumbnail(512)
        assert thumb.shape == (256, 512, 3) and thumb.dtype == np.uint8
        assert {level for level, _, _ in levels} == {1}  # 1024x512 at level 1, box-reduced by 2; never level 0
        assert np.abs(thumb.astype(int) - layout.render(0, 0, 512, 256, 8)).mean() < 6
        monkeypatch.setattr(slides, "THUMBNAIL_BLOCK", 100)  # blocks of 100 level pixels give the same picture
        levels.clear()
        assert np.array_equal(slide.thumbnail(512), thumb)
        assert max(max(w, h) for _, w, h in levels) <= 100
        assert slide.thumbnail(10_000).shape == (2048, 4096, 3)  # never enlarged


def test_a_slide_without_mpp_says_which_flag_to_pass(made):
    path = made["no_mpp"][0]
    with Slide(path) as slide:
        assert slide.mpp_source == "" and slide.thumbnail(64).shape == (32, 64, 3)  # usable without MPP
        with pytest.raises(SlideMppError, match=r"no_mpp.tiff: has no MPP in its metadata .*; pass --mpp UM"):
            _ = slide.mpp
        with pytest.raises(SlideMppError):
            slide.best_level_for(0.5)
    with Slide(path, mpp=0.5) as slide:
        assert slide.best_level_for(2.0) == 1
    assert issubclass(SlideMppError, ImageReadError)  # one slide's problem: extraction skips it and goes on


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("fraction", [0.5, 0.999])
def test_a_truncated_slide_is_named_as_such(made, tmp_path, backend, fraction):
    data = made["aperio"][0].read_bytes()
    cut = tmp_path / "cut.svs"
    cut.write_bytes(data[: int(len(data) * fraction)])
    with pytest.raises(SlideReadError, match=r"cut.svs: the file is truncated .* Copy or download it again"):
        Slide(cut, backend=backend)


@pytest.mark.parametrize("backend", BACKENDS)
@pytest.mark.parametrize("content", [b"II*\x00" + bytes(range(256)) * 20, b"not a slide at all"])
def test_a_corrupt_slide_is_refused_with_the_fix(tmp_path, backend, content):
    bad = tmp_path / "bad.svs"
    bad.write_bytes(content)
    with pytest.raises(SlideReadError, match=rf"bad.svs: {backend} cannot open it as a slide .* Re-export"):
        Slide(bad, backend=backend)


def test_unsupported_and_missing_files(tmp_path):
    image = tmp_path / "img_0000.png"
    Image.new("RGB", (8, 8)).save(image)
    with pytest.raises(SlideReadError, match=r"img_0000.png: .png is not a whole-slide format .*pyramidal TIFF"):
        Slide(image)
    with pytest.raises(SlideReadError, match="gone.svs: file not found"):
        Slide(tmp_path / "gone.svs")
    assert is_slide("A.SVS") and is_slide("b.mrxs") and not is_slide("img_0000.png")
    with pytest.raises(ValueError, match="'backend' parameter of Slide must be one of"):
        Slide(image, backend="bioformats")


def test_without_openslide_tiffslide_reads_and_without_either_the_message_names_the_install(made, monkeypatch):
    monkeypatch.setitem(sys.modules, "openslide", None)  # import openslide now raises ImportError
    with Slide(made["aperio"][0]) as slide:
        assert slide.backend == "tiffslide" and slide.mpp == pytest.approx(0.25)
    with pytest.raises(SlideLibraryError, match=r'OpenSlide cannot be loaded .*pip install -e "\.\[slides\]"'):
        Slide(made["aperio"][0], backend="openslide")
    monkeypatch.setitem(sys.modules, "tiffslide", None)
    with pytest.raises(SlideLibraryError, match=r'neither is installed\. Install them with pip install -e "\.\[slides'):
        Slide(made["aperio"][0])


def test_openslides_public_read_gives_the_same_pixels_as_the_direct_one(made, monkeypatch):
    path = made["generic"][0]
    with Slide(path, backend="openslide") as slide:
        direct = [slide.read_region(4096 - 200, 2048 - 100, 0, 256, 256), slide.read_tile(1024, 512, 1024, 256)]
        monkeypatch.setattr(slide_backends, "_direct_reader", lambda: None)  # as with another openslide-python
        public = [slide.read_region(4096 - 200, 2048 - 100, 0, 256, 256), slide.read_tile(1024, 512, 1024, 256)]
    for ours, theirs in zip(direct, public, strict=True):
        assert np.array_equal(ours, theirs)
    assert (direct[0][100:] == 255).all() and (direct[0][:100, :200] != 255).any()


@pytest.mark.parametrize("backend", BACKENDS)
def test_a_failing_region_read_names_the_slide_and_the_region(made, backend, monkeypatch):
    with Slide(made["aperio"][0], backend=backend) as slide:
        def broken(*args, **kwargs):
            raise RuntimeError("Jpeg8Error: corrupt data")

        monkeypatch.setattr(slides, f"read_{backend}", broken)
        with pytest.raises(SlideReadError, match=r"aperio.svs: reading 256x256 px of level 1 at \(0, 16\) failed "
                                                 r"\(RuntimeError: Jpeg8Error: corrupt data\); the file is damaged"):
            slide.read_tile(0, 16, 1024, 256)


def test_the_slide_libraries_load_only_when_a_slide_is_opened():
    import subprocess

    code = "import sys, pipeline.data.slides; print(sorted({'openslide', 'tiffslide', 'tifffile'} & set(sys.modules)))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
