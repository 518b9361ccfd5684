"""Classification heads on embeddings: the contract, the table of heads and pickle-free saving.

Each name is imported on first use: the table (``--head`` choices for ``--help``) needs neither scikit-learn nor
torch.
"""

from __future__ import annotations

import importlib
from typing import Any

_API = {
    "Head": "base",
    "load_head": "persistence",
    "save_head": "persistence",
    "HEADS": "registry",
    "HEAD_NAMES": "registry",
    "head_class": "registry",
    "heads_help": "registry",
    "make_head": "registry",
}
__all__ = sorted(_API)


def __getattr__(name: str) -> Any:
    if name in _API:
        value = getattr(importlib.import_module(f"pipeline.heads.{_API[name]}"), name)
        globals()[name] = value
        return value
    try:  # a submodule used as an attribute before anyone imported it
        return importlib.import_module(f"pipeline.heads.{name}")
    except ModuleNotFoundError:
        raise AttributeError(f"module 'pipeline.heads' has no attribute {name!r}") from None


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
