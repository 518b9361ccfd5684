"""Process set-up of the entry points: glibc keeps freed batch-sized blocks instead of unmapping them."""

from __future__ import annotations

import os
import platform
import subprocess
import sys
import textwrap

import pytest

from pipeline.cli import console

glibc = pytest.mark.skipif(platform.system() != "Linux" or platform.libc_ver()[0] != "glibc",
                           reason="mallopt is glibc's")

# Page faults of a 38 MiB float block (a batch of 64 tiles of 224 px), filled, freed, allocated again; torch's, not
# numpy's (which asks for huge pages).
_FAULTS = textwrap.dedent("""
    import resource, sys
    import torch
    from pipeline.cli.console import keep_freed_memory
    if sys.argv[1] == "keep":
        print("made", keep_freed_memory())
    def faults():
        before = resource.getrusage(resource.RUSAGE_SELF).ru_minflt
        torch.ones(64 * 150528, dtype=torch.float32)
        return resource.getrusage(resource.RUSAGE_SELF).ru_minflt - before
    counts = [faults() for _ in range(24)]
    print("faults", sorted(counts[-8:])[4])  # the steady state: glibc settles after a few blocks
""")


def _faults(mode: str, **env: str) -> tuple[str, float]:
    environment = {key: value for key, value in os.environ.items() if not key.startswith("MALLOC_")}
    completed = subprocess.run([sys.executable, "-c", _FAULTS, mode], capture_output=True, text=True, check=True,
                               env={**environment, **env})
    lines = dict(line.split(" ", 1) for line in completed.stdout.splitlines())
    return lines.get("made", ""), float(lines["faults"])


@glibc
def test_keep_freed_memory_reuses_a_batch_sized_block_without_page_faults() -> None:
    made, kept = _faults("keep")
    _, default = _faults("plain")
    assert made == "True"
    assert default > 5000  # 38 MiB / 4 KiB pages: every page of every new block faults
    assert kept < 100


@glibc
def test_keep_freed_memory_leaves_a_users_allocator_settings_alone() -> None:
    made, faults = _faults("keep", MALLOC_MMAP_THRESHOLD_="131072")
    assert made == "False"
    assert faults > 5000


def test_keep_freed_memory_is_part_of_process_set_up(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(console, "keep_freed_memory", lambda: calls.append(True) or True)
    console.prepare_process()
    assert calls == [True]
