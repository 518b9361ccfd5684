import torch

from pipeline.batching import Slice, TileQueue


def test_batches_span_images_and_keep_order():
    queue = TileQueue()
    queue.put(0, torch.arange(3))
    queue.put(1, torch.arange(10, 15))
    queue.put(2, torch.arange(0))  # an empty image adds nothing
    queue.put(3, torch.arange(20, 22))
    batch, slices = queue.take(4)
    assert batch.tolist() == [0, 1, 2, 10]
    assert slices == [Slice(0, 0, 3), Slice(1, 0, 1)]
    batch, slices = queue.take(4)
    assert batch.tolist() == [11, 12, 13, 14] and slices == [Slice(1, 1, 4)]
    batch, slices = queue.take(4)
    assert batch.tolist() == [20, 21] and slices == [Slice(3, 0, 2)] and queue.size == 0
