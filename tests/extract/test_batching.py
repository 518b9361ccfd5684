import threading
import time

import pytest
import torch

from pipeline.extract.batching import Prefetcher, Slice, ThreadShare, TileQueue


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


class _Item:
    def __init__(self, index: int, n_tiles: int) -> None:
        self.index = index
        self.tiles = torch.zeros(n_tiles)


def test_take_fills_a_given_buffer_in_place():
    queue = TileQueue()
    queue.put(0, torch.arange(3))
    queue.put(1, torch.arange(10, 15))
    buffer = torch.full((4,), -1)
    batch, slices = queue.take(4, out=buffer)
    assert batch.data_ptr() == buffer.data_ptr() and batch.tolist() == [0, 1, 2, 10]
    assert slices == [Slice(0, 0, 3), Slice(1, 0, 1)]
    batch, slices = queue.take(4, out=buffer)  # fewer left than asked: a view of the first rows
    assert batch.tolist() == [11, 12, 13, 14] and slices == [Slice(1, 1, 4)]
    assert queue.take(4, out=buffer)[0].numel() == 0


def test_prefetcher_yields_everything_in_order():
    items = [_Item(0, 2), "a failure without tiles", _Item(2, 0), _Item(3, 5)]
    assert list(Prefetcher(items, max_tiles=1)) == items


def test_prefetcher_holds_at_most_max_tiles_ahead():
    pulled = []

    def source():
        for i in range(50):
            pulled.append(i)
            yield _Item(i, 2)

    iterator = iter(Prefetcher(source(), max_tiles=4))
    assert next(iterator).index == 0
    time.sleep(0.3)  # give the reader every chance to run ahead
    # 4 tiles (2 items) held, plus the one item the reader holds while it waits for room
    assert len(pulled) <= 1 + 2 + 1
    assert [item.index for item in iterator] == list(range(1, 50))


def test_prefetcher_says_how_many_tiles_are_ready():
    release = threading.Event()

    def source():
        yield _Item(0, 3)
        yield _Item(1, 2)
        release.wait(5)
        yield _Item(2, 4)

    prefetcher = Prefetcher(source(), max_tiles=100)
    iterator = iter(prefetcher)
    prefetcher_items = [next(iterator)]
    deadline = time.monotonic() + 5
    while prefetcher.held != 2 and time.monotonic() < deadline:
        time.sleep(0.01)
    assert prefetcher.held == 2  # item 1 waits; item 2 is not decoded yet
    release.set()
    prefetcher_items += list(iterator)
    assert prefetcher.held == 0 and len(prefetcher_items) == 3


@pytest.fixture
def threads():
    before = torch.get_num_threads()
    torch.set_num_threads(4)
    yield
    torch.set_num_threads(before)


def test_thread_share_gives_the_workers_their_cores_while_the_next_batch_is_not_ready(threads):
    share = ThreadShare(workers=1, batch_size=8)
    share.before_batch(waiting=3)  # the workers are behind: the model leaves them a core
    assert torch.get_num_threads() == 3
    share.before_batch(waiting=8)  # a whole batch waits: every core
    assert torch.get_num_threads() == 4
    share.before_batch(waiting=0)
    share.restore()
    assert torch.get_num_threads() == 4 and (share.reduced, share.batches) == (2, 3)


def test_thread_share_keeps_one_thread_and_changes_nothing_without_workers(threads):
    ThreadShare(workers=8, batch_size=8).before_batch(waiting=0)
    assert torch.get_num_threads() == 1
    torch.set_num_threads(4)
    share = ThreadShare(workers=0, batch_size=8)
    share.before_batch(waiting=0)
    assert torch.get_num_threads() == 4 and share.reduced == 0


def test_prefetcher_passes_on_the_source_error_after_the_items_before_it():
    def source():
        yield _Item(0, 1)
        yield _Item(1, 1)
        raise OSError("disk gone")

    seen = []
    with pytest.raises(OSError, match="disk gone"):
        for item in Prefetcher(source(), max_tiles=8):
            seen.append(item.index)
    assert seen == [0, 1]


def test_prefetcher_stops_reading_when_the_consumer_stops():
    pulled = []

    def source():
        for i in range(1000):
            pulled.append(i)
            yield _Item(i, 1)

    for item in Prefetcher(source(), max_tiles=3):
        if item.index == 2:
            break
    count = len(pulled)
    time.sleep(0.1)
    assert len(pulled) == count < 10  # the reader thread has ended
