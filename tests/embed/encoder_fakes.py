"""What each encoder's hub repository describes, as random-weight builds, and a fake local Hugging Face cache.

``ARCHITECTURES`` holds, per registry entry, the architecture its hub repository's config describes: for timm repos
the ``architecture`` and the ``model_args`` of their config.json (the registry's kwargs add the rest, as timm does
with the real repos), for transformers repos the config. Sources are in docs/encoders.md; the parameter counts are
the published model sizes the full-depth builds must match.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import torch

from pipeline.embed.registry import Encoder
from pipeline.embed.timm_loader import resolve_kwargs

COMMIT = "c0ffee" + "0" * 34
_DINO_REG = "vit_giant_patch14_reg4_dinov2"
_KAIKO = {"dynamic_img_size": True}

# name: (kind, architecture or config type, hub config arguments, published parameters in millions or None)
ARCHITECTURES: dict[str, tuple[str, str, dict, float | None]] = {
    "phikon": ("transformers", "vit", {"hidden_size": 768, "num_hidden_layers": 12, "num_attention_heads": 12,
                                       "intermediate_size": 3072, "image_size": 224, "patch_size": 16}, 86),
    "phikon-v2": ("transformers", "dinov2", {"hidden_size": 1024, "num_hidden_layers": 24, "num_attention_heads": 16,
                                             "image_size": 224, "patch_size": 16}, 303),
    "midnight": ("transformers", "dinov2", {"hidden_size": 1536, "num_hidden_layers": 40, "num_attention_heads": 24,
                                            "use_swiglu_ffn": True, "image_size": 224, "patch_size": 14}, 1135),
    "uni": ("timm", "vit_large_patch16_224", {"img_size": 224, "patch_size": 16}, 303),
    "uni2-h": ("timm", "vit_giant_patch14_224", {}, 681),
    "virchow": ("timm", "vit_huge_patch14_224", {"img_size": 224, "init_values": 1e-5, "mlp_ratio": 5.3375,
                                                 "global_pool": "", "dynamic_img_size": True}, 632),
    "virchow2": ("timm", "vit_huge_patch14_224", {"img_size": 224, "init_values": 1e-5, "mlp_ratio": 5.3375,
                                                  "global_pool": "", "dynamic_img_size": True, "reg_tokens": 4}, 632),
    "h-optimus-0": ("timm", _DINO_REG, {"img_size": 224, "global_pool": "token"}, 1135),
    "h-optimus-1": ("timm", _DINO_REG, {"img_size": 224, "global_pool": "token"}, 1135),
    "h0-mini": ("timm", "vit_base_patch14_reg4_dinov2", {"img_size": 224, "global_pool": "",
                                                         "mlp_ratio": 5.33334}, None),
    "prov-gigapath": ("timm", "vit_giant_patch14_dinov2", {"img_size": 224, "patch_size": 16, "embed_dim": 1536,
                                                           "depth": 40, "num_heads": 24, "init_values": 1e-5,
                                                           "mlp_ratio": 5.33334}, 1135),
    "kaiko-vits16": ("timm", "vit_small_patch16_224", _KAIKO, 21.7),
    "kaiko-vits8": ("timm", "vit_small_patch8_224", _KAIKO, 21.7),
    "kaiko-vitb16": ("timm", "vit_base_patch16_224", _KAIKO, 85.8),
    "kaiko-vitb8": ("timm", "vit_base_patch8_224", _KAIKO, 85.8),
    "kaiko-vitl14": ("timm", "vit_large_patch14_reg4_dinov2", {**_KAIKO, "img_size": 518}, 304),
    "efficientnet-lite0": ("package", "tf_efficientnet_lite0", {}, 3.4),
}


def hf_cache() -> Path:
    """The Hugging Face cache huggingface_hub uses now (tests/conftest.py points it at temporary folders)."""
    from huggingface_hub import constants

    return Path(constants.HF_HUB_CACHE)


def put_in_hf_cache(repo_id: str, files: dict[str, bytes], commit: str = COMMIT) -> Path:
    """Write files as huggingface_hub lays out a download (snapshots/<commit>/, refs/main); return the snapshot."""
    repo = hf_cache() / f"models--{repo_id.replace('/', '--')}"
    snapshot = repo / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        (snapshot / name).write_bytes(data)
    (repo / "refs").mkdir(exist_ok=True)
    (repo / "refs" / "main").write_text(commit)
    return snapshot


def with_depth(entry: Encoder, depth: int) -> Encoder:
    """The entry with a reduced depth where its own kwargs fix the depth (UNI2-h passes the whole architecture)."""
    return dataclasses.replace(entry, kwargs={**entry.kwargs, "depth": depth}) if "depth" in entry.kwargs else entry


def build(entry: Encoder, depth: int | None = None, device: str = "cpu") -> torch.nn.Module:
    """The entry's architecture with random weights: full depth (None) or ``depth`` blocks, on ``device``."""
    kind, arch, args, _ = ARCHITECTURES[entry.name]
    torch.manual_seed(0)
    with torch.device(device):
        if kind == "transformers":
            from transformers import Dinov2Config, Dinov2Model, ViTConfig, ViTModel

            config_class, model_class = (ViTConfig, ViTModel) if arch == "vit" else (Dinov2Config, Dinov2Model)
            config = config_class(**{**args, **({"num_hidden_layers": depth} if depth else {})})
            return model_class(config, **entry.kwargs).eval()
        import timm

        kwargs = {**args, **resolve_kwargs(entry.kwargs), **({"depth": depth} if depth else {})}
        if device == "meta" and arch.startswith("vit_"):
            kwargs["weight_init"] = "skip"  # meta tensors hold no values: initialising them only costs time
        return timm.create_model(arch, pretrained=False, **{"num_classes": 0, **kwargs}).eval()


def put_timm_repo(entry: Encoder, depth: int, pretrained_cfg: dict | None = None) -> torch.nn.Module:
    """Put the entry's hub repository, ``depth`` blocks of random weights, in the fake cache; return the model."""
    import safetensors.torch

    _, arch, args, _ = ARCHITECTURES[entry.name]
    model = build(entry, depth)
    config = {"architecture": arch, "num_classes": 0, "model_args": {**args, "depth": depth},
              "pretrained_cfg": pretrained_cfg or {}}
    weights = safetensors.torch.save(model.state_dict())
    put_in_hf_cache(entry.source, {"config.json": json.dumps(config).encode(), "model.safetensors": weights})
    return model


def put_transformers_repo(entry: Encoder, depth: int, processor: dict | None = None) -> Path:
    """Put the entry's hub repository, ``depth`` layers of random weights, in the fake cache; return the snapshot."""
    import tempfile

    model = build(entry, depth)
    with tempfile.TemporaryDirectory() as folder:
        model.save_pretrained(folder)
        files = {path.name: path.read_bytes() for path in Path(folder).iterdir()}
    if processor is not None:
        files["preprocessor_config.json"] = json.dumps(processor).encode()
    return put_in_hf_cache(entry.source, files)
