"""Which output of an encoder is the embedding: the CLS token, or CLS with the mean of the patch tokens.

A ViT's last layer gives (B, prefix + patches, W) tokens: the CLS token, then register tokens (none, 4 or 8 by model),
then one token per patch. ``cls`` keeps token 0, (B, W); ``cls+mean`` concatenates token 0 with the mean of the patch
tokens, register tokens excluded, (B, 2W), as Virchow's and Midnight's authors do. The wrappers keep the model under
the attribute ``model``, so the weights' checksum of a CLS model is what it was before the registry.
"""

from __future__ import annotations

import torch
from torch import nn

RULES = ("cls", "cls+mean")


def select(tokens: torch.Tensor, rule: str, prefix_tokens: int) -> torch.Tensor:
    """Apply ``rule`` to the last layer's tokens (B, N, W): (B, W) for cls, (B, 2W) for cls+mean."""
    if rule == "cls":
        return tokens[:, 0]
    if rule == "cls+mean":
        return torch.cat([tokens[:, 0], tokens[:, prefix_tokens:].mean(dim=1)], dim=1)
    raise ValueError(f"Unknown output rule '{rule}'. Use one of {RULES}.")


def describe(rule: str, prefix_tokens: int) -> str:
    """The rule as recorded with a model, e.g. ``cls+mean[5:]`` (patch tokens from index 5)."""
    return f"cls+mean[{prefix_tokens}:]" if rule == "cls+mean" else rule


class CLSEmbedder(nn.Module):
    """A Hugging Face vision model: pixel_values (B, 3, S, S) -> the rule applied to ``last_hidden_state``.

    Models without a token sequence (CNNs) give their ``pooler_output`` flattened, (B, D).
    """

    def __init__(self, model: nn.Module, rule: str = "cls", prefix_tokens: int = 1) -> None:
        super().__init__()
        self.model = model
        self.rule = rule
        self.prefix_tokens = prefix_tokens

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Embed normalised pixels (B, 3, S, S) into (B, D)."""
        outputs = self.model(pixel_values=pixels)
        hidden = getattr(outputs, "last_hidden_state", None)
        if hidden is not None and hidden.dim() == 3:
            return select(hidden, self.rule, self.prefix_tokens)
        return outputs.pooler_output.flatten(1)


class TimmTokens(nn.Module):
    """A timm ViT: pixels (B, 3, S, S) -> the rule applied to ``forward_features`` (after the final norm).

    Reading the tokens directly makes the embedding independent of the ``global_pool`` a hub config sets (token,
    none, average).
    """

    def __init__(self, model: nn.Module, rule: str, prefix_tokens: int) -> None:
        super().__init__()
        self.model = model
        self.rule = rule
        self.prefix_tokens = prefix_tokens

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Embed normalised pixels (B, 3, S, S) into (B, D)."""
        return select(self.model.forward_features(pixels), self.rule, self.prefix_tokens)


def prefix_tokens_of(model: nn.Module) -> int | None:
    """CLS + register tokens a loaded model puts in front of its patch tokens; None when it cannot tell.

    timm ViTs say it (``num_prefix_tokens``); transformers' DINOv2 with registers has ``num_register_tokens``.
    """
    if hasattr(model, "num_prefix_tokens"):
        return int(model.num_prefix_tokens)
    config = getattr(model, "config", None)
    if config is None:
        return None
    embeddings = getattr(model, "embeddings", None)
    registers = getattr(embeddings, "register_tokens", None)
    return 1 + (int(registers.shape[1]) if registers is not None else 0)
