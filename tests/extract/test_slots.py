from types import SimpleNamespace

import numpy as np
import torch

from pipeline.extract import decoding
from pipeline.extract import slots as slot_module
from pipeline.extract.slots import TileSlots

SHAPE = (4, 4, 3)



def test_a_slot_is_reused_only_after_its_item_is_released(monkeypatch):
    slots = TileSlots(workers=1)
    monkeypatch.setattr(slot_module, "get_worker_info", lambda: SimpleNamespace(id=0))
    first, ticket0 = slots.buffer(3, SHAPE)
    second, ticket1 = slots.buffer(2, SHAPE)
    assert ticket0 == (0, 0, 0) and ticket1 == (0, 1, 1)  # item 0 is not released: a second slot
    assert first.is_shared() and second.untyped_storage().data_ptr() != first.untyped_storage().data_ptr()
    slots.release(ticket0)
    third, ticket2 = slots.buffer(2, SHAPE)
    assert ticket2 == (0, 2, 0) and third.untyped_storage().data_ptr() == first.untyped_storage().data_ptr()
    bigger, ticket3 = slots.buffer(5, SHAPE)  # slot 1 is free once item 2 is released, but too small: a new one
    slots.release(ticket2)
    assert ticket3 == (0, 3, 2) and len(bigger) == 5


def test_past_the_memory_bound_or_outside_a_worker_a_fresh_tensor_carries_the_tiles(monkeypatch):
    slots = TileSlots(workers=1)
    assert slots.buffer(2, SHAPE)[1] is None  # the main process itself (workers=0): no slot, no ticket
    monkeypatch.setattr(slot_module, "get_worker_info", lambda: SimpleNamespace(id=0))
    monkeypatch.setattr(slot_module, "SLOT_BYTES_PER_WORKER", 3 * int(np.prod(SHAPE)))
    _, kept = slots.buffer(3, SHAPE)
    fresh, ticket = slots.buffer(1, SHAPE)
    assert kept[2] == 0 and ticket == (0, 1, -1) and not fresh.is_shared()
    slots.release(ticket)  # releases item 0 too: a worker's items are embedded in order
    assert int(slots.released[0]) == 2 and slots.buffer(3, SHAPE)[1] == (0, 2, 0)


def test_an_item_of_a_slot_sent_before_carries_only_its_row_count(monkeypatch):
    worker, main = TileSlots(workers=1), TileSlots(workers=1)
    monkeypatch.setattr(slot_module, "get_worker_info", lambda: SimpleNamespace(id=0))
    buffer, ticket = worker.buffer(3, SHAPE)
    buffer.fill_(7)
    first = worker.carried(buffer, ticket)
    assert first is buffer
    item = main.received(decoding.ImageTiles(0, first, np.zeros((3, 2), np.int32), np.ones(3, np.float32), {},
                                             ticket=ticket))
    assert torch.equal(item.tiles, torch.full((3, *SHAPE), 7, dtype=torch.uint8))
    worker.release(ticket)
    again, ticket2 = worker.buffer(2, SHAPE)
    again.fill_(9)
    placeholder = worker.carried(again, ticket2)
    assert ticket2[2] == ticket[2] and placeholder.shape == (2, 0) and placeholder.numel() == 0
    second = main.received(decoding.ImageTiles(1, placeholder, np.zeros((2, 2), np.int32), np.ones(2, np.float32), {},
                                               ticket=ticket2))
    assert torch.equal(second.tiles, torch.full((2, *SHAPE), 9, dtype=torch.uint8))
    fresh = torch.zeros((1, *SHAPE), dtype=torch.uint8)  # no slot (ticket slot -1 or none): sent as it is
    assert worker.carried(fresh, (0, 5, -1)) is fresh and worker.carried(fresh, None) is fresh


def _read_released(slots, ready, go, out):
    slots._released()  # the child's own view, made before the parent's write
    ready.set()
    go.wait(10)
    out.put(int(slots._released()[0]))


def test_a_worker_process_sees_the_main_process_release_a_slot():
    import multiprocessing

    context = multiprocessing.get_context("fork" if "fork" in multiprocessing.get_all_start_methods() else "spawn")
    slots = TileSlots(workers=1)
    ready, go, out = context.Event(), context.Event(), context.Queue()
    child = context.Process(target=_read_released, args=(slots, ready, go, out))
    child.start()
    assert ready.wait(30)
    slots.release((0, 4, 0))
    go.set()
    assert out.get(timeout=30) == 5
    child.join(10)
