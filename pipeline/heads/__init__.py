"""Classification heads on embeddings: the contract, the table of heads and pickle-free saving.

Each name is imported on first use: the table (``--head`` choices for ``--help``) needs neither scikit-learn nor
torch.
"""

from __future__ import annotations

from pipeline.lazy import lazy_exports

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

__getattr__, __dir__ = lazy_exports(__name__, _API, globals())
