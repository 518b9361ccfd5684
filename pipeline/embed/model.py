"""A loaded, frozen embedder and what identifies it (name, source, weights checksum, preprocessing)."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import nn

from pipeline.embed.preprocessing import Preprocessing
from pipeline.embed.registry import find


@dataclass
class LoadedModel:
    """A frozen embedder and what identifies it.

    Attributes:
        name: The ``--model`` value as given (the entry's name for an encoder of the table).
        slug: Short file-system-safe name used in cache folder names.
        source: Where the weights came from (Hugging Face id, folder, timm name or package).
        module: Maps normalised pixels (B, 3, S, S) float to embeddings (B, D).
        preprocessing: The model's own input size, resize filter, mean and std.
        dim: Embedding size D.
        revision: Hugging Face commit hash when known, else "".
        checksum: SHA-256 over the weights (names, dtypes, shapes and values), the output rule when it is not
            plain CLS or pooled, and the architecture when the weights do not fix it (efficientnet-lite0): two caches
            with the same checksum were made by the same weights, run and read the same way.
        output: Which output is the embedding: ``cls``, ``cls+mean[P:]`` (CLS with the mean of the patch tokens
            from index P) or ``pooled``; "" when not recorded.
    """

    name: str
    slug: str
    source: str
    module: nn.Module
    preprocessing: Preprocessing
    dim: int
    revision: str
    checksum: str
    output: str = ""


def weights_checksum(module: nn.Module, rule: str = "", architecture: str = "") -> str:
    """SHA-256 over a module's state dict (names, dtypes, shapes, raw values), ``rule`` and ``architecture``.

    The rule and the architecture enter only when given: the weights alone say neither which output is read nor,
    for some (efficientnet-lite0), which architecture runs them.
    """
    digest = hashlib.sha256()
    if rule:
        digest.update(f"output|{rule}".encode())
    if architecture:
        digest.update(f"architecture|{architecture}".encode())
    for key, tensor in sorted(module.state_dict().items()):
        flat = tensor.detach().cpu().contiguous().reshape(-1)
        digest.update(f"{key}|{flat.dtype}|{tuple(tensor.shape)}".encode())
        digest.update(flat.view(torch.uint8).numpy().data)
    return digest.hexdigest()


def slugify(name: str) -> str:
    """File-system-safe short name of a model: ``timm:vit_small`` -> ``timm-vit_small``.

    A name or Hugging Face id of the encoder table gives the entry's name (``UNI``, ``MahmoodLab/UNI`` -> ``uni``),
    so every spelling of one encoder finds the same cache.
    """
    entry = find(name)
    if entry is not None:
        return entry.name
    path = Path(name)
    base = path.name if path.exists() else name.replace("/", "--").replace(":", "-")
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", base).strip("-") or "model"


def freeze(module: nn.Module) -> nn.Module:
    """Eval mode and no gradients, in place; returns the module."""
    module.eval()
    for parameter in module.parameters():
        parameter.requires_grad_(False)
    return module
