import random
import struct
import threading
import time
import zlib

import numpy as np
import pytest
import torch
from PIL import Image

from pipeline.data.records import ImageRecord
from pipeline.errors import ConfigError
from pipeline.extract import settings as settings_module
from pipeline.extract.launch import JobStore, Launch, local_device, log_prefix, resolve_shard, torchrun_launch
from pipeline.extract.settings import ExtractionSettings, default_workers
from pipeline.extract.sharding import Shard, parse_shard, partition, pixel_counts, shard_records

TORCHRUN_ENV = {"TORCHELASTIC_RUN_ID": "job-7", "RANK": "3", "WORLD_SIZE": "8", "LOCAL_RANK": "1",
                "LOCAL_WORLD_SIZE": "4", "TORCHELASTIC_RESTART_COUNT": "2"}


def _png_header(width, height):
    """A PNG that only claims a size: IHDR, an empty IDAT and IEND, no pixel data."""
    def chunk(kind, data):
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", b"") + chunk(b"IEND", b"")


# ---------------------------------------------------------------- --shard I/N


def test_parse_shard():
    assert parse_shard("1/4") == Shard(1, 4) and parse_shard(" 0/1 ") == Shard(0, 1)
    assert Shard(2, 8).label == "2/8"


@pytest.mark.parametrize("text", ["4/4", "-1/4", "1/0", "0/-2"])
def test_shard_out_of_range(text):
    with pytest.raises(ConfigError, match=rf"--shard I/N must have 0 <= I < N \(shards are numbered from 0, like "
                                          rf"torchrun's RANK: the last of 4 is 3/4\). Got '{text}' instead."):
        parse_shard(text)


@pytest.mark.parametrize("text", ["1", "1/2/3", "a/b", "1/", ""])
def test_shard_not_i_over_n(text):
    with pytest.raises(ConfigError, match=rf"--shard must be I/N: .* e.g. --shard 0/4. Got '{text}' instead."):
        parse_shard(text)


def test_settings_check_the_shard():
    with pytest.raises(ConfigError, match="Got '2/2' instead"):
        ExtractionSettings(shard=Shard(2, 2)).validate()


# ---------------------------------------------------------------- partition


def test_heaviest_first_onto_the_least_loaded_shard():
    shards = partition([10, 9, 8, 7, 6, 5], list("abcdef"), 2)
    # 10 -> 0; 9 -> 1; 8 -> 1 (17); 7 -> 0 (17); 6 -> 0 (tie: lower shard); 5 -> 1: loads 23 and 22
    assert shards == [[0, 3, 4], [1, 2, 5]]


def test_equal_weights_are_dealt_by_id():
    assert partition([1, 1, 1, 1], ["d", "c", "b", "a"], 2) == [[1, 3], [0, 2]]
    assert partition([0, 0, 0], ["a", "b", "c"], 3) == [[0], [1], [2]]  # unreadable headers are spread too


def test_partition_is_a_balanced_split_that_does_not_depend_on_the_listing_order():
    rng = random.Random(0)
    ids = [f"train/img_{i:04d}" for i in range(200)]
    weights = [rng.choice([224 * 224, 1024 * 1280, 2048 * 2048, 775 * 522]) for _ in ids]
    shards = partition(weights, ids, 6)
    assert sorted(i for shard in shards for i in shard) == list(range(200))  # every image once
    loads = [sum(weights[i] for i in shard) for shard in shards]
    assert max(loads) <= 4 / 3 * max(sum(weights) / 6, max(weights))  # LPT's bound
    order = list(range(200))
    rng.shuffle(order)
    shuffled = partition([weights[i] for i in order], [ids[i] for i in order], 6)
    assert [{ids[order[i]] for i in shard} for shard in shuffled] == [{ids[i] for i in shard} for shard in shards]


def test_pixel_counts_come_from_headers_without_decoding(tmp_path):
    Image.fromarray(np.zeros((20, 30, 3), np.uint8)).save(tmp_path / "a.png")
    (tmp_path / "huge.png").write_bytes(_png_header(30000, 30000))  # beyond Pillow's bomb limit, no pixels
    (tmp_path / "bad.png").write_bytes(b"not an image")
    limit = Image.MAX_IMAGE_PIXELS
    records = [ImageRecord(f"train/{name}", "train", f"{name}.png", tmp_path / f"{name}.png", None)
               for name in ("a", "huge", "bad", "missing")]
    assert pixel_counts(records) == [600, 900_000_000, 0, 0]
    assert Image.MAX_IMAGE_PIXELS == limit  # Pillow's own limit is never changed


def test_shard_records_split_a_data_folder(make_data):
    from pipeline.data.records import find_records

    records = find_records(make_data(n_train=5, n_test=2), "all")
    parts = [shard_records(records, Shard(i, 3)) for i in range(3)]
    assert sorted(r.image_id for part in parts for r in part) == sorted(r.image_id for r in records)
    assert [len(part) for part in parts] == [3, 2, 2]
    assert shard_records(records, Shard()) == records
    for part in parts:  # each shard keeps the data folder's order
        assert part == sorted(part, key=records.index)


# ---------------------------------------------------------------- torchrun


def test_torchrun_is_recognised_by_its_own_variable():
    assert torchrun_launch({}) is None
    assert torchrun_launch({"RANK": "1", "WORLD_SIZE": "2"}) is None  # another launcher
    launch = torchrun_launch(TORCHRUN_ENV)
    assert launch == Launch(rank=3, world_size=8, local_rank=1, local_world_size=4, run_id="job-7", restart_count=2)
    assert launch.label == "3/8"


def test_the_shard_under_torchrun_is_the_rank():
    launch = torchrun_launch(TORCHRUN_ENV)
    assert resolve_shard(None, launch) == Shard(3, 8)
    assert resolve_shard(Shard(3, 8), launch) == Shard(3, 8)
    assert resolve_shard(None, None) == Shard(0, 1) and resolve_shard(Shard(1, 2), None) == Shard(1, 2)
    with pytest.raises(ConfigError, match=r"--shard 0/2 disagrees with torchrun's RANK 3 and WORLD_SIZE 8: under "
                                          r"torchrun each process embeds the shard of its rank. Leave --shard out."):
        resolve_shard(Shard(0, 2), launch)


def test_log_prefix():
    assert log_prefix(None, {}) == "" and log_prefix("1/4", {}) == "[shard 1/4] "
    assert log_prefix(None, TORCHRUN_ENV) == "[rank 3/8] "


def test_local_device(monkeypatch):
    launch = torchrun_launch(TORCHRUN_ENV)
    cpu = torch.device("cpu")
    assert local_device(cpu, launch) == cpu and local_device(torch.device("cuda"), None) == torch.device("cuda")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 8)
    assert local_device(torch.device("cuda"), launch) == torch.device("cuda", 1)  # LOCAL_RANK
    assert local_device(torch.device("cuda", 5), launch) == torch.device("cuda", 5)  # asked for
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert local_device(torch.device("cuda"), launch) == torch.device("cuda", 0)  # ranks share the only GPU


def test_decoding_workers_share_the_node(monkeypatch):
    monkeypatch.setattr(settings_module, "usable_cores", lambda: 16)
    assert default_workers("cuda") == 15 and default_workers("cpu") == 8
    assert default_workers("cuda", processes=2) == 7 and default_workers("cuda", processes=8) == 1
    assert default_workers("cuda", processes=32) == 1


def test_job_store_marks_shards_done_across_attempts():
    from torch.distributed import TCPStore

    server = TCPStore("127.0.0.1", 0, is_master=True, wait_for_workers=False)  # what torchrun's agent serves
    env = {"MASTER_ADDR": "127.0.0.1", "MASTER_PORT": str(server.port), "TORCHELASTIC_USE_AGENT_STORE": "True"}
    shards = ["all-0of2", "all-1of2"]
    rank0 = JobStore(Launch(0, 2, 0, 2, "job", 0), "cache-a", env)
    rank1 = JobStore(Launch(1, 2, 1, 2, "job", 0), "cache-a", env)
    JobStore(Launch(1, 2, 1, 2, "job", 0), "cache-b", env).mark_done("all-1of2")  # another cache's mark
    rank0.mark_done("all-0of2")
    waiter = threading.Thread(target=rank0.wait_for, args=(shards,))
    waiter.start()
    time.sleep(0.5)
    assert waiter.is_alive()
    rank1.mark_done("all-1of2")
    waiter.join(timeout=10)
    assert not waiter.is_alive()
    JobStore(Launch(0, 2, 0, 2, "job", 1), "cache-a", env).wait_for(shards)  # a restarted rank 0: done at once
    alone = JobStore(None, "cache-a")
    alone.mark_done("all-0of1")
    alone.wait_for(["anything"])  # no torchrun: nothing to wait for
