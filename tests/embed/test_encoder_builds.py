"""Every registry entry's full architecture, built on the meta device (shapes without memory or compute).

Checks, per entry: the parameter count matches the published model size (so the architecture is the real one),
the token layout (CLS + registers + patches), the embedding size through the same wrapper the loader uses, and the
preprocessing where the table overrides the model's config. Real values and the hub loading path are tested at
reduced depth in test_encoder_loading.py.
"""

import pytest
import torch

from pipeline.embed.registry import ENCODERS
from pipeline.embed.timm_loader import build_timm_entry, wrap_efficientnet_lite0
from pipeline.embed.transformers_loader import table_preprocessing, wrap_transformers
from tests.embed.encoder_fakes import ARCHITECTURES, build


def _record_tokens(model: torch.nn.Module) -> list[torch.Tensor]:
    """Keep the last layer's tokens of every forward pass, so one pass checks both the tokens and the embedding."""
    seen: list[torch.Tensor] = []
    if hasattr(model, "forward_features"):
        features = model.forward_features
        model.forward_features = lambda pixels: seen.append(features(pixels)) or seen[-1]
    else:
        model.register_forward_hook(lambda module, args, output: seen.append(output.last_hidden_state))
    return seen


def _patch(model: torch.nn.Module) -> int:
    if hasattr(model, "patch_embed"):
        return model.patch_embed.patch_size[0]
    return model.config.patch_size


@pytest.mark.parametrize("name", list(ENCODERS))
def test_full_architecture_on_the_meta_device(name):
    entry = ENCODERS[name]
    model = build(entry, device="meta")
    published = ARCHITECTURES[name][3]
    if published is not None:
        millions = sum(p.numel() for p in model.parameters()) / 1e6
        assert abs(millions - published) / published < 0.03, millions
    pixels = torch.zeros(2, 3, entry.input_size, entry.input_size, device="meta")
    if entry.loader == "package":
        built = wrap_efficientnet_lite0(entry, model)
    elif entry.loader == "timm":
        built = build_timm_entry(entry, name, model)  # raises when prefix tokens or size disagree with the table
    else:
        built = wrap_transformers(model, name, entry, table_preprocessing(entry))
    assert built.dim == entry.dim and built.rule == entry.output
    tokens = _record_tokens(model)
    assert built.module(pixels).shape == (2, entry.dim)
    if entry.output != "pooled":
        patches = (entry.input_size // _patch(model)) ** 2
        assert tokens[0].shape == (2, entry.prefix_tokens + patches, model.embed_dim if hasattr(model, "embed_dim")
                                   else model.config.hidden_size)
        assert built.prefix_tokens == entry.prefix_tokens
    if entry.table_preprocessing or entry.loader == "package":
        assert built.preprocessing == table_preprocessing(entry)
