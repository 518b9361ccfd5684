"""A slide's MPP and objective power from its metadata table: every source, its priority and the implausible ones."""

import pytest

from pipeline.data.slide_properties import mpp_from_properties, objective_power

APERIO = (
    "Aperio Image Library v12.0.15\r\n46000x32914 [0,100 46000x32914] (240x240) JPEG/RGB Q=70|AppMag = 20|MPP = 0.4990"
)


def test_openslide_and_tiffslide_values_come_first():
    both = {"openslide.mpp-x": "0.2498", "openslide.mpp-y": "0.2502", "aperio.MPP": "0.3",
            "tiff.XResolution": "20000", "tiff.ResolutionUnit": "centimeter"}
    assert mpp_from_properties(both) == (0.2498, 0.2502, "openslide.mpp-x")
    assert mpp_from_properties({"tiffslide.mpp-x": 0.5, "tiffslide.mpp-y": None}) == (0.5, 0.5, "tiffslide.mpp-x")


def test_aperio_mpp_from_its_property_or_the_description():
    assert mpp_from_properties({"aperio.MPP": "0.499"}) == (0.499, 0.499, "Aperio MPP")
    assert mpp_from_properties({"tiff.ImageDescription": APERIO}) == (0.499, 0.499, "Aperio MPP")
    assert objective_power({"tiff.ImageDescription": APERIO}) == 20.0
    assert mpp_from_properties({"tiff.ImageDescription": "Generic|MPP = 0.5"}) is None  # not Aperio's


@pytest.mark.parametrize(("unit", "resolution", "expected"), [
    ("centimeter", "40000", 0.25),  # OpenSlide's spelling
    ("CENTIMETER", 20000.0, 0.5),  # tiffslide's
    ("inch", "50800", 0.5),
])
def test_tiff_resolution_tags_with_their_unit(unit, resolution, expected):
    props = {"tiff.XResolution": resolution, "tiff.YResolution": resolution, "tiff.ResolutionUnit": unit}
    mpp_x, mpp_y, source = mpp_from_properties(props)
    assert (mpp_x, mpp_y, source) == (pytest.approx(expected), pytest.approx(expected), "TIFF resolution tags")


def test_no_unit_or_an_implausible_value_counts_as_missing(caplog):
    assert mpp_from_properties({"tiff.XResolution": "1", "tiff.ResolutionUnit": "none"}) is None
    assert mpp_from_properties({}) is None
    # 72 dpi (an image editor's default) is 353 um/px: ignored with a warning, never used
    assert mpp_from_properties({"tiff.XResolution": "72", "tiff.ResolutionUnit": "inch"}) is None
    assert "TIFF resolution tags gives 352.8" in caplog.text
    # a bad first source does not hide a good later one
    assert mpp_from_properties({"openslide.mpp-x": "0", "aperio.MPP": "0.25"}) == (0.25, 0.25, "Aperio MPP")
    assert mpp_from_properties({"openslide.mpp-x": "nan", "openslide.mpp-y": "x"}) is None


def test_objective_power():
    assert objective_power({"openslide.objective-power": "40"}) == 40.0
    assert objective_power({"tiffslide.objective-power": 20, "aperio.AppMag": "40"}) == 20.0
    assert objective_power({"aperio.AppMag": "40"}) == 40.0
    assert objective_power({"openslide.objective-power": "0"}) is None and objective_power({}) is None
