import torch

from pipeline.embed.preprocessing import Preprocessing, TileTransform


def _reference(transform: TileTransform, tiles: torch.Tensor) -> torch.Tensor:
    """The normalisation as it was written before it ran in place: new tensors at each step."""
    return (tiles.permute(0, 3, 1, 2).float() - transform.mean) * transform.inv_std


def test_in_place_normalisation_equals_the_plain_one_bit_for_bit():
    tiles = torch.randint(0, 256, (5, 32, 32, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    transform = TileTransform(Preprocessing(32, mean=(0.1, 0.5, 0.9), std=(0.2, 0.3, 0.25)))
    out, expected = transform(tiles), _reference(transform, tiles)
    assert torch.equal(out, expected) and out.stride() == expected.stride()  # same values, same memory layout


def test_float_input_is_left_as_it_is():
    tiles = torch.rand(2, 16, 16, 3, generator=torch.Generator().manual_seed(1)) * 255
    before = tiles.clone()
    out = TileTransform(Preprocessing(16))(tiles)
    assert torch.equal(tiles, before) and torch.equal(out, _reference(TileTransform(Preprocessing(16)), before))


def test_row_normalisation_of_a_strided_batch_equals_the_plain_one():
    # a batch cut out of a larger buffer (every other tile): its rows are still normalised in one new tensor
    tiles = torch.randint(0, 256, (6, 24, 24, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(2))[::2]
    transform = TileTransform(Preprocessing(24, mean=(0.3, 0.6, 0.2), std=(0.7, 0.1, 0.45)))
    out, expected = transform(tiles), _reference(transform, tiles)
    assert torch.equal(out, expected) and out.stride() == expected.stride()
    assert out.is_contiguous(memory_format=torch.channels_last)


def test_resized_and_cropped_tiles_keep_their_path():
    tiles = torch.randint(0, 256, (2, 20, 20, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(3))
    out = TileTransform(Preprocessing(16, resize_size=18))(tiles)
    assert out.shape == (2, 3, 16, 16)
