
import numpy as np
import torch
from torch.utils.data import DataLoader

from pipeline.data.records import find_records
from pipeline.data.tiling import TilingSettings
from pipeline.extract import decoding
from pipeline.extract.decoding import TileDataset, TileSlots, keep_as_is

SHAPE = (4, 4, 3)


def test_tiles_through_reused_slots_equal_tiles_without(make_data):
    records = find_records(make_data(n_train=12, n_test=0, size=(96, 64)), "all")
    tiling = TilingSettings(tile_size=32, min_coverage=0.5)
    plain = [TileDataset(records, tiling, 10**8)[i].tiles.clone() for i in range(len(records))]
    slots = TileSlots(workers=1)
    loader = DataLoader(TileDataset(records, tiling, 10**8, slots=slots), batch_size=None, collate_fn=keep_as_is,
                        num_workers=1, prefetch_factor=2)
    tickets, carried = [], []
    for sent in loader:
        carried.append(sent.tiles.dim() == 4)
        item = slots.received(sent)
        np.testing.assert_array_equal(item.tiles.numpy(), plain[item.position].numpy())
        assert torch.equal(item.tiles, plain[item.position])
        tickets.append(item.ticket)
        slots.release(item.ticket)  # embedded: the worker may refill its slot
    assert len(tickets) == len(records) and all(ticket[2] >= 0 for ticket in tickets)
    assert len({ticket[2] for ticket in tickets}) < len(records)  # slots were reused, not one per image
    # a slot's tensor travels with its first item only; the others carry a row count
    assert sum(carried) == len({ticket[2] for ticket in tickets}) < len(records)


def test_the_stream_gives_each_image_once_in_the_map_style_order_across_workers(make_data):
    records = find_records(make_data(n_train=7, n_test=0, size=(64, 64)), "all")
    dataset = TileDataset(records, TilingSettings(tile_size=32), 10**8)
    assert [item.position for item in decoding.TileStream(dataset)] == list(range(7))  # no worker: all, in order
    loader = DataLoader(decoding.TileStream(dataset), batch_size=None, collate_fn=keep_as_is, num_workers=2)
    items = list(loader)
    assert [item.position for item in items] == list(range(7))  # worker w takes w, w + 2, ...: the same order
    for item in items:
        np.testing.assert_array_equal(item.tiles.numpy(), dataset[item.position].tiles.numpy())


def test_tiles_of_another_size_than_the_encoders_are_resized_by_the_worker_with_pillow(make_data):
    from pipeline.data.tiling import resize_tiles

    records = find_records(make_data(n_train=2, n_test=0, size=(96, 64)), "all")
    tiling = TilingSettings(tile_size=32, min_coverage=0.5)
    cut = TileDataset(records, tiling, 10**8)[0].tiles.numpy()
    fed = TileDataset(records, tiling, 10**8, resize=(24, "bicubic"))[0].tiles.numpy()
    assert cut.shape[1:] == (32, 32, 3) and fed.shape == (len(cut), 24, 24, 3)
    np.testing.assert_array_equal(fed, resize_tiles(cut, 24, "bicubic"))
    same = TileDataset(records, tiling, 10**8, resize=(32, "bicubic"))[0].tiles.numpy()
    np.testing.assert_array_equal(same, cut)  # the encoder's size already: untouched
