"""Load a Hugging Face transformers vision model from a folder: a hub snapshot or one saved with save_pretrained.

Never runs code from a model's repository (``trust_remote_code`` stays off), and refuses a checkpoint whose weights
do not fit the architecture transformers built: such a model would run and give wrong embeddings without an error
(e.g. histai/hibou-b without its own code silently loses its register tokens).
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path

from torch import nn

from pipeline.embed.preprocessing import Preprocessing
from pipeline.embed.registry import Encoder
from pipeline.embed.tokens import CLSEmbedder, prefix_tokens_of
from pipeline.errors import ModelLoadError

logger = logging.getLogger(__name__)

HARMLESS_MISSING = ("mask_token",)  # DINOv2's masked-modelling token: never used for embedding, some repos lack it


@dataclass(frozen=True)
class Built:
    """A loaded model before freezing: the wrapped module, its preprocessing, embedding size, rule and prefix.

    ``architecture`` names the architecture the weights are put in when the weights alone do not say it (the same
    tensors fit timm's ``efficientnet_lite0`` and ``tf_efficientnet_lite0``); it is then part of the checksum.
    """

    module: nn.Module
    preprocessing: Preprocessing
    dim: int
    rule: str
    prefix_tokens: int
    architecture: str = ""


def load_transformers_folder(folder: Path, label: str, entry: Encoder | None = None) -> Built:
    """Load ``folder`` (config.json + weights) as an embedder.

    Args:
        folder: A hub snapshot or a folder saved with ``save_pretrained``.
        label: How messages name the model (the ``--model`` value).
        entry: The registry row when the model is one; its kwargs, output rule and preprocessing then apply.

    Raises:
        ModelLoadError: The folder cannot be loaded, or the weights do not fit the architecture.
    """
    from transformers import AutoConfig, AutoModel, ViTModel
    from transformers.utils import logging as transformers_logging

    verbosity = transformers_logging.get_verbosity()
    # Its load report lists harmless keys too (a pooler the embedder does not build); _check_weights_fit reports the
    # ones that matter, in one line.
    transformers_logging.set_verbosity_error()
    try:
        config = AutoConfig.from_pretrained(folder)
        vit = config.model_type == "vit"
        kwargs = dict(entry.kwargs) if entry else ({"add_pooling_layer": False} if vit else {})
        model, info = (ViTModel if vit else AutoModel).from_pretrained(folder, output_loading_info=True, **kwargs)
    except (OSError, ValueError, KeyError, RuntimeError) as exc:
        raise ModelLoadError(f"Cannot load {label} from {folder} ({str(exc).splitlines()[0][:200]}).") from exc
    finally:
        transformers_logging.set_verbosity(verbosity)
    _check_weights_fit(model, info, folder, label)
    return wrap_transformers(model, label, entry, _preprocessing(folder, config, entry))


def wrap_transformers(model: nn.Module, label: str, entry: Encoder | None, preprocessing: Preprocessing) -> Built:
    """Wrap a transformers model with its output rule (the entry's, else CLS), checked against the entry."""
    rule = entry.output if entry else "cls"
    prefix = prefix_tokens_of(model) or 1
    if entry is not None and prefix != entry.prefix_tokens:
        raise ModelLoadError(f"{label}: the loaded model has {prefix} CLS/register tokens, the registry expects "
                             f"{entry.prefix_tokens}; its repository may have changed.")
    config = model.config
    width = int(getattr(config, "hidden_size", 0) or getattr(config, "hidden_sizes", [0])[-1])
    dim = 2 * width if rule == "cls+mean" else width
    return Built(CLSEmbedder(model, rule, prefix), preprocessing, dim, rule, prefix)


def table_preprocessing(entry: Encoder) -> Preprocessing:
    """The preprocessing the registry documents for ``entry``."""
    return Preprocessing(entry.input_size, entry.mean, entry.std, entry.interpolation, entry.resize_size)


def _check_weights_fit(model: nn.Module, info: dict, folder: Path, label: str) -> None:
    """Refuse weights the model would miss (left random) or could not place in a part it built."""
    parts = {name for name, _ in model.named_children()}
    missing = sorted(k for k in info.get("missing_keys", ()) if not k.endswith(HARMLESS_MISSING))
    # Unexpected keys of a part the model does not have (a classification head, a pooler left out) are harmless;
    # an unexpected key inside a part it has means the checkpoint's architecture differs from the one built.
    unplaced = sorted(k for k in info.get("unexpected_keys", ()) if k.split(".")[0] in parts)
    if not missing and not unplaced:
        return
    custom = ""
    try:
        if json.loads((folder / "config.json").read_text()).get("auto_map"):
            custom = " Its config.json names code of its own (auto_map), which this project does not run."
    except (OSError, ValueError):
        pass
    example = (missing + unplaced)[0]
    raise ModelLoadError(
        f"{label}: its weights do not fit the architecture transformers builds ({len(missing)} missing, "
        f"{len(unplaced)} without a place, e.g. '{example}'), so its embeddings would be wrong.{custom} "
        "Use an encoder from `python extract.py --list-models`."
    )


def _preprocessing(folder: Path, config: object, entry: Encoder | None) -> Preprocessing:
    """The table's values where they are known better, else the model's image-processor config, else a default."""
    from transformers.image_processing_base import ImageProcessingMixin

    if entry is not None and entry.table_preprocessing:
        return table_preprocessing(entry)
    default_size = int(getattr(config, "image_size", 224) or 224)
    try:
        processor_dict, _ = ImageProcessingMixin.get_image_processor_dict(folder)
    except (OSError, ValueError) as exc:
        if entry is not None:
            return table_preprocessing(entry)
        logger.warning("%s has no image-processor config (%s); using %d px and ImageNet mean/std.",
                       folder, str(exc).splitlines()[0][:200], default_size)
        return Preprocessing(input_size=default_size)
    preprocessing = Preprocessing.from_hf_dict(processor_dict, default_size)
    if entry is not None and preprocessing != table_preprocessing(entry):
        logger.debug("%s: the model's config gives %s, the registry %s; using the model's.", entry.name,
                     preprocessing, table_preprocessing(entry))
    return preprocessing
