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
