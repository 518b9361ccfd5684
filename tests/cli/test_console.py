"""Process set-up of the entry points."""

from __future__ import annotations

import pytest

from pipeline.cli import console


def test_keep_freed_memory_is_part_of_process_set_up(monkeypatch: pytest.MonkeyPatch) -> None:
    calls = []
    monkeypatch.setattr(console, "keep_freed_memory", lambda: calls.append(True) or True)
    console.prepare_process()
    assert calls == [True]
