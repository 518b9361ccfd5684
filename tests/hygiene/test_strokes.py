import numpy as np

from pipeline.hygiene.strokes import MIN_CONTRAST_BLUER, MIN_STROKE_SPAN, bluer_than_structures, strokes


def _pens(shape=(40, 60)):
    return {colour: np.zeros(shape, bool) for colour in ("green", "blue", "black")}


def test_a_stroke_beside_tissue_is_kept_in_the_colour_of_most_of_its_pixels_and_scattered_pixels_are_not():
    pens = _pens()
    pens["blue"][10, 5:25] = True  # a line of 20 px: blue but for a few pixels read black over dense tissue
    pens["black"][10, 25:28] = True
    pens["green"][30, 40] = pens["green"][33, 50] = True  # scattered single pixels
    pens["blue"][20, 50 : 50 + MIN_STROKE_SPAN - 2] = True  # too short to be a stroke
    tissue = np.zeros((40, 60), bool)
    tissue[12:18, :] = True  # the line lies beside tissue
    found = strokes(pens, tissue)
    assert found["blue"][10, 5:28].all() and found["blue"].sum() == 23
    assert not found["green"].any() and not found["black"].any()
    far = strokes(pens, np.zeros((40, 60), bool))  # on bare glass, far from any tissue: no stroke
    assert not any(mask.any() for mask in far.values())


def test_without_glass_a_blue_stroke_counts_only_when_bluer_than_the_images_own_structures():
    shape = (40, 60)
    hue = np.full(shape, 100.0)  # what the dark structures add: haematoxylin's hue
    chroma, mean = np.full(shape, 0.3), np.full(shape, 0.3)
    added = (np.zeros((*shape, 3)), hue, chroma, mean)
    contrast = _pens(shape)
    contrast["blue"][5, 5:25] = True
    contrast["blue"][30, 30:50] = True
    hue[5, 5:25] = 100.0 - MIN_CONTRAST_BLUER - 5.0  # a pen: well bluer than the nuclei
    hue[30, 30:50] = 100.0 - MIN_CONTRAST_BLUER + 10.0  # nuclei turned blue by a cast: not bluer enough
    kept = bluer_than_structures(contrast, np.zeros(shape, bool), added)
    assert kept[5, 5:25].all() and not kept[30].any()
    few = (added[0], hue, chroma, np.zeros(shape))  # no structures to compare with: every blue stroke stays
    assert np.array_equal(bluer_than_structures(contrast, np.zeros(shape, bool), few), contrast["blue"])
