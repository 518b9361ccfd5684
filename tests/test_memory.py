"""glibc keeps freed batch-sized blocks: page faults of a block filled, freed and allocated again."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="mallopt is glibc's")

# Page faults of a float block filled, freed and allocated again (torch's, not numpy's, which asks for huge pages),
# in the steady state: glibc settles after a few blocks. argv: mode, block MiB.
_FAULTS = textwrap.dedent("""
    import resource, sys
    import torch
    from pipeline import memory
    if sys.argv[1] in ("keep", "worker"):
        print("made", memory.keep_freed_memory())
    if sys.argv[1] in ("worker", "spawned"):
        memory.worker_memory()
    size = int(sys.argv[2]) * 2**20 // 4
    def faults():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(size, dtype=torch.float32)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    counts = [faults() for _ in range(24)]
    print("faults", sorted(counts[-8:])[4])
""")


def _faults(mode: str, mib: int = 38, **env: str) -> tuple[str, float]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    completed = subprocess.run([sys.executable, "-c", _FAULTS, mode, str(mib)], capture_output=True, text=True,
                               check=True, env={**environment, **env})
    lines = dict(line.split(" ", 1) for line in completed.stdout.splitlines())
    return lines.get("made", ""), float(lines["faults"])


@glibc
def test_keep_freed_memory_reuses_a_batch_sized_block_without_page_faults():
    made, kept = _faults("keep")
    _, default = _faults("plain")
    assert made == "True"
    assert default > 5000  # 38 MiB / 4 KiB pages: every page of every new block faults
    assert kept < 100


@glibc
def test_a_decoding_worker_keeps_only_smaller_blocks():
    assert _faults("keep", mib=48)[1] < 100  # the main process keeps a 48 MiB block ...
    assert _faults("worker", mib=48)[1] > 5000  # ... a worker returns it (its own were 600 MB more on a slide)
    assert _faults("worker", mib=24)[1] < 100  # and still keeps what glibc keeps by default
    assert _faults("spawned", mib=48)[1] > 5000  # no setting inherited: the worker changes nothing


@glibc
def test_keep_freed_memory_leaves_a_users_allocator_settings_alone():
    made, faults = _faults("keep", MALLOC_MMAP_THRESHOLD_="131072")
    assert made == "False"
    assert faults > 5000
