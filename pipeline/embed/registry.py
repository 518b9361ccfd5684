"""The encoder registry: one table of the frozen encoders ``--model`` accepts by name. Imports no torch.

Each entry says where the weights come from, the exact loading call, how tiles are preprocessed, which output is
the embedding, its size, and the magnification the encoder was trained at. Only encoders that transformers or timm
build without remote code are here; docs/encoders.md lists the sources of every field and the encoders left out.
``timm:NAME``, any other Hugging Face id and local folders are accepted beside the table.
"""

from __future__ import annotations

import difflib
import math
from dataclasses import dataclass, field

IMAGENET = ((0.485, 0.456, 0.406), (0.229, 0.224, 0.225))
HALF = ((0.5, 0.5, 0.5), (0.5, 0.5, 0.5))
HOPTIMUS = ((0.707223, 0.578729, 0.703617), (0.211883, 0.230117, 0.177517))
# The TF Lite EfficientNets' "inception-style" statistics, (x - 127) / 128 on 0-255 pixels (MEAN_RGB, STDDEV_RGB of
# tensorflow/tpu's efficientnet_lite_builder.py), written for pixels scaled to [0, 1].
TFLITE = ((127 / 255,) * 3, (128 / 255,) * 3)
SWIGLU = {"mlp_layer": "timm.layers.SwiGLUPacked", "act_layer": "torch.nn.SiLU"}  # dotted: resolved at load
OUTPUTS = ("cls", "cls+mean", "pooled")
MIXED = (0.25, 0.5, 1.0, 2.0)  # multi-magnification training: 40x, 20x, 10x and 5x
DEFAULT_MODEL = "phikon"


@dataclass(frozen=True)
class Encoder:
    """One row of the table.

    Attributes:
        name: The ``--model`` value.
        source: Hugging Face id of the weights ("" when they come in a pip package).
        loader: "transformers" (ViTModel for ViT configs, else AutoModel; never remote code), "timm"
            (``timm.create_model("hf-hub:" + source, pretrained=True, num_classes=0, **kwargs)``) or "package".
        dim: Embedding size D.
        kwargs: The exact keyword arguments of that call; classes as dotted names ("torch.nn.SiLU").
        output: "cls" (token 0 of the last layer), "cls+mean" (token 0 concatenated with the mean of the patch
            tokens, CLS and register tokens excluded) or "pooled" (the model's own pooled features).
        prefix_tokens: CLS and register tokens in front of the patch tokens.
        input_size, interpolation, mean, std: The preprocessing its authors document.
        resize_size: The side tiles are resized to before the central ``input_size`` is cropped, as the authors'
            ``Resize(256)`` + ``CenterCrop(224)``; 0: tiles are resized whole to ``input_size``.
        table_preprocessing: The model's own config is known to be wrong (or its card overrides it): use the
            table's preprocessing. Otherwise the model's config wins and the table is the fallback.
        mpp: Micrometres per pixel of the pixels the encoder was trained on (several: mixed magnification;
            empty: not a pathology encoder).
        licence: Short licence name; a trailing "?" means it was not read from the model card itself.
        gated: Access must be requested on the model's Hugging Face page first.
    """

    name: str
    source: str
    loader: str
    dim: int
    kwargs: dict = field(default_factory=dict)
    output: str = "cls"
    prefix_tokens: int = 1
    input_size: int = 224
    interpolation: str = "bicubic"
    mean: tuple[float, float, float] = IMAGENET[0]
    std: tuple[float, float, float] = IMAGENET[1]
    resize_size: int = 0
    table_preprocessing: bool = False
    mpp: tuple[float, ...] = (0.5,)
    licence: str = ""
    gated: bool = False

    @property
    def page(self) -> str:
        """Where the model card is and where access to a gated model is requested."""
        return f"https://huggingface.co/{self.source}" if self.source else ""

    @property
    def magnification(self) -> str:
        """E.g. "20x (0.5 um/px)", "5x-40x (0.25-2 um/px)", or "n/a"."""
        if not self.mpp:
            return "n/a"
        powers = [f"{round(10 / mpp):g}x" for mpp in self.mpp]  # 0.5 um/px is the usual 20x objective
        if len(self.mpp) == 1:
            return f"{powers[0]} ({self.mpp[0]:g} um/px)"
        return f"{powers[-1]}-{powers[0]} ({min(self.mpp):g}-{max(self.mpp):g} um/px)"


def _kaiko(variant: str, repo: str, dim: int, prefix: int = 1) -> Encoder:
    # 1aurent's timm ports of kaiko's GitHub weights; the L14 hub config says 518 px and ImageNet statistics, the
    # authors' card and README say 224 px and 0.5/0.5: the table wins for all five.
    return Encoder(
        f"kaiko-{variant}", f"1aurent/{repo}.kaiko_ai_towards_large_pathology_fms", "timm", dim,
        {"dynamic_img_size": True}, prefix_tokens=prefix, interpolation="bilinear", mean=HALF[0], std=HALF[1],
        table_preprocessing=True, licence="Kaiko NC",
    )


_UNI2_KWARGS = {
    "img_size": 224, "patch_size": 14, "depth": 24, "num_heads": 24, "init_values": 1e-5, "embed_dim": 1536,
    "mlp_ratio": 2.66667 * 2, "num_classes": 0, "no_embed_class": True, **SWIGLU, "reg_tokens": 8,
    "dynamic_img_size": True,
}
_HOPTIMUS_KWARGS = {"init_values": 1e-5, "dynamic_img_size": False}

_TABLE = (
    Encoder("phikon", "owkin/phikon", "transformers", 768, {"add_pooling_layer": False}, interpolation="bilinear",
            licence="Owkin NC?"),
    Encoder("phikon-v2", "owkin/phikon-v2", "transformers", 1024, interpolation="bilinear", licence="Owkin NC"),
    Encoder("midnight", "kaiko-ai/midnight", "transformers", 3072, output="cls+mean", interpolation="bilinear",
            mean=HALF[0], std=HALF[1], table_preprocessing=True, mpp=MIXED, licence="MIT"),
    Encoder("uni", "MahmoodLab/UNI", "timm", 1024, {"init_values": 1e-5, "dynamic_img_size": True},
            interpolation="bilinear", licence="CC-BY-NC-ND-4.0", gated=True),
    Encoder("uni2-h", "MahmoodLab/UNI2-h", "timm", 1536, _UNI2_KWARGS, prefix_tokens=9, interpolation="bilinear",
            licence="CC-BY-NC-ND-4.0", gated=True),
    Encoder("virchow", "paige-ai/Virchow", "timm", 2560, SWIGLU, output="cls+mean", licence="Apache-2.0 + Paige",
            gated=True),
    Encoder("virchow2", "paige-ai/Virchow2", "timm", 2560, SWIGLU, output="cls+mean", prefix_tokens=5, mpp=MIXED,
            licence="CC-BY-NC-ND-4.0?", gated=True),
    # The card feeds 224-px tiles without resizing; TRIDENT resizes with torchvision's default filter, bilinear.
    Encoder("h-optimus-0", "bioptimus/H-optimus-0", "timm", 1536, _HOPTIMUS_KWARGS, prefix_tokens=5,
            interpolation="bilinear", mean=HOPTIMUS[0], std=HOPTIMUS[1], table_preprocessing=True,
            licence="Apache-2.0"),
    Encoder("h-optimus-1", "bioptimus/H-optimus-1", "timm", 1536, _HOPTIMUS_KWARGS, prefix_tokens=5,
            interpolation="bilinear", mean=HOPTIMUS[0], std=HOPTIMUS[1], table_preprocessing=True,
            licence="Bioptimus NC?", gated=True),
    Encoder("h0-mini", "bioptimus/H0-mini", "timm", 1536, SWIGLU, output="cls+mean", prefix_tokens=5,
            mean=HOPTIMUS[0], std=HOPTIMUS[1], licence="Bioptimus NC?", gated=True),
    # The authors' README: Resize(256, bicubic), CenterCrop(224), ImageNet statistics.
    Encoder("prov-gigapath", "prov-gigapath/prov-gigapath", "timm", 1536, resize_size=256, table_preprocessing=True,
            licence="Apache-2.0, research only", gated=True),
    _kaiko("vits16", "vit_small_patch16_224", 384),
    _kaiko("vits8", "vit_small_patch8_224", 384),
    _kaiko("vitb16", "vit_base_patch16_224", 768),
    _kaiko("vitb8", "vit_base_patch8_224", 768),
    _kaiko("vitl14", "vit_large_patch14_reg4_224", 1024, prefix=5),
    # TF weights in timm's tf_efficientnet_lite0 (TF "same" padding), TF Lite statistics, bicubic (TF's eval resize)
    Encoder("efficientnet-lite0", "", "package", 1280, output="pooled", prefix_tokens=0, mean=TFLITE[0],
            std=TFLITE[1], table_preprocessing=True, mpp=(),
            licence="Apache-2.0"),  # the package's LICENSE file (its METADATA says UNKNOWN)
)
ENCODERS: dict[str, Encoder] = {encoder.name: encoder for encoder in _TABLE}

# Asked for often, not loadable with transformers or timm alone: --model NAME says why (details in docs/encoders.md).
_HIBOU = ("needs its repository's own code (trust_remote_code); without it transformers silently drops its register "
          "tokens and gives wrong embeddings")
LEFT_OUT = {
    "hibou-b": _HIBOU,
    "hibou-l": _HIBOU,
    "conch": "needs the conch package (an open_clip fork)",
    "conch-v1.5": "is built by TRIDENT's own code",
    "musk": "needs the musk package",
    "keep": "needs its repository's own code (trust_remote_code)",
    "ctranspath": "needs a modified timm (timm_ctp)",
    "chief": "needs a modified timm (timm_ctp)",
    "openmidnight": "needs DINOv2's torch.hub code",
}


def find(value: str) -> Encoder | None:
    """The entry named ``value`` or whose Hugging Face id is ``value`` (either case-insensitive), else None."""
    key = value.strip().lower()
    for encoder in _TABLE:
        if key in (encoder.name, encoder.source.lower()):
            return encoder
    return None


def model_help() -> str:
    """The ``--model`` help text."""
    return (f"an encoder of the table ({', '.join(ENCODERS)}; see --list-models), timm:NAME, a Hugging Face id "
            "(org/name) or a local folder saved with save_pretrained; efficientnet-lite0 needs no download")


def unknown_model_message(value: str) -> str:
    """One line for a ``--model`` value that is none of the accepted forms."""
    key = value.strip().lower()
    if key in LEFT_OUT:
        return (f"--model {value} is not supported: it {LEFT_OUT[key]}, and this project loads encoders with "
                "transformers or timm only, without remote code. See `python extract.py --list-models` and "
                "docs/encoders.md.")
    close = difflib.get_close_matches(key, [*ENCODERS, *LEFT_OUT], n=1, cutoff=0.6)
    hint = f"Did you mean '{close[0]}'? " if close else ""
    return (f"Unknown --model '{value}'. {hint}Use a name from `python extract.py --list-models` "
            f"({', '.join(ENCODERS)}), timm:NAME, a Hugging Face id (org/name) or a local folder saved with "
            "save_pretrained.")


def tile_size_for_mpp(encoder: Encoder, data_mpp: float) -> int:
    """The ``--tile-size`` (original pixels) whose tiles, resized to the encoder's input, match its training scale.

    A tile of T pixels at ``data_mpp`` um/px covers T * data_mpp um; the encoder saw ``input_size`` pixels at its
    ``mpp``. Of several training scales the one nearest to the data's is taken (the least resizing). E.g. data at
    0.25 um/px and a 0.5 um/px encoder with 224-px input: 448.

    Raises:
        ValueError: ``data_mpp`` is not positive or the encoder's training scale is unknown.
    """
    if not data_mpp > 0 or not math.isfinite(data_mpp):
        raise ValueError(f"--mpp must be a positive number of micrometres per pixel. Got {data_mpp} instead.")
    if not encoder.mpp:
        raise ValueError(f"{encoder.name} was not trained on pathology images at a known scale: --mpp cannot "
                         "size its tiles. Give --tile-size instead.")
    nearest = min(encoder.mpp, key=lambda mpp: abs(math.log(mpp / data_mpp)))
    # with a resize-and-crop, the tile is resized to resize_size: that is the side whose pixels are at the mpp
    return max(1, round((encoder.resize_size or encoder.input_size) * nearest / data_mpp))
