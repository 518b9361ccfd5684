"""A model's own preprocessing (input size, resize filter, mean and std) and its application to uint8 tiles.

The values are read from the model's configuration (Hugging Face ``preprocessor_config.json``, timm's
``pretrained_cfg``), except for the encoders whose config the registry knows to be wrong (the table's values then
win), and are recorded in the cache. Tiles travel as uint8 and are
converted, resized (only when their size differs from the model's), centre-cropped (only for models whose authors
resize larger and crop, e.g. prov-gigapath's 256 -> 224) and normalised in one step on the device.

The resize is torchvision's ``Resize`` on a tensor (antialiased bilinear or bicubic, ``align_corners=False``), with
its output clamped to the pixel range as PIL's uint8 output is: equal to the authors' torchvision transform run on
the tile as a tensor; against their PIL path it differs by at most a few levels of 255 (tests/embed/test_fidelity.py).
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

from pipeline.embed.registry import IMAGENET

IMAGENET_MEAN, IMAGENET_STD = IMAGENET  # the one definition is the registry's (it imports no torch)

# PIL's resample codes, as stored in Hugging Face preprocessor configs.
_PIL_RESAMPLE = {0: "nearest", 1: "bicubic", 2: "bilinear", 3: "bicubic", 4: "bilinear", 5: "bicubic"}
_DEFAULT_RESAMPLE = 3  # bicubic: for a config whose processor class transformers does not know


def default_resample(config: dict) -> int:
    """The PIL resample code transformers uses when ``config`` has no ``resample``: its processor class's default.

    ``ViTImageProcessor`` (phikon) resizes bilinear, ``BitImageProcessor`` (DINOv2 models) bicubic: the class is the
    config's ``image_processor_type`` (a ``...Fast`` or ``...Pil`` name maps to the same class).
    """
    name = str(config.get("image_processor_type") or "")
    for suffix in ("Fast", "Pil"):
        name = name.removesuffix(suffix)
    if not name:
        return _DEFAULT_RESAMPLE
    import transformers

    try:
        resample = getattr(transformers, name).resample
    except (AttributeError, ImportError):  # an unknown class, or one whose backend is missing
        return _DEFAULT_RESAMPLE
    return int(resample) if resample is not None else _DEFAULT_RESAMPLE


@dataclass(frozen=True)
class Preprocessing:
    """How a model expects its input.

    Attributes:
        input_size: Side of the square input in pixels.
        mean: Per-channel mean of pixels scaled to [0, 1].
        std: Per-channel standard deviation.
        interpolation: "bilinear", "bicubic" or "nearest"; used only when tiles are not the size resized to.
        resize_size: Resize tiles to this side, then crop the central ``input_size`` (torchvision's
            ``Resize(256)`` + ``CenterCrop(224)``); 0: resize the whole tile to ``input_size``, no crop.
    """

    input_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"
    resize_size: int = 0

    def to_dict(self) -> dict:
        """JSON-ready dict (lists, not tuples); ``resize_size`` only when set, so caches made before it stay valid."""
        values = asdict(self)
        values["mean"], values["std"] = list(self.mean), list(self.std)
        if not self.resize_size:
            del values["resize_size"]
        return values

    @property
    def resized_side(self) -> int:
        """The side tiles are resized to before the crop: ``resize_size``, else ``input_size``."""
        return self.resize_size or self.input_size

    @classmethod
    def from_hf_dict(cls, config: dict, default_size: int) -> Preprocessing:
        """Build from a Hugging Face image-processor dict (``size``, ``crop_size``, ``image_mean``, ...).

        As transformers applies it: a missing ``resample`` is the processor class's default
        (:func:`default_resample`), and with ``do_center_crop`` a ``size`` larger than ``crop_size`` is resized to
        before the crop.
        """
        size = _side(config.get("size"))
        crop = _side(config.get("crop_size")) if config.get("do_center_crop") else None
        resample = config.get("resample")
        resample = default_resample(config) if resample is None else int(resample)
        return cls(
            input_size=int(crop or size or default_size),
            mean=tuple(float(v) for v in config.get("image_mean", IMAGENET_MEAN)),
            std=tuple(float(v) for v in config.get("image_std", IMAGENET_STD)),
            interpolation=_PIL_RESAMPLE.get(resample, "bicubic"),
            resize_size=int(size) if crop and size and size != crop else 0,
        )

    @classmethod
    def from_timm_config(cls, config: dict) -> Preprocessing:
        """Build from ``timm.data.resolve_model_data_config`` output (``input_size`` is (C, H, W))."""
        interpolation = config.get("interpolation", "bicubic")
        return cls(
            input_size=int(config["input_size"][-1]),
            mean=tuple(float(v) for v in config["mean"]),
            std=tuple(float(v) for v in config["std"]),
            interpolation=interpolation if interpolation in ("bilinear", "bicubic", "nearest") else "bicubic",
        )


def _side(size: object) -> int | None:
    """One side from a Hugging Face size value (an int or a dict with height, shortest_edge or width)."""
    if isinstance(size, dict):
        size = size.get("height") or size.get("shortest_edge") or size.get("width")
    return int(size) if size else None


class TileTransform(torch.nn.Module):
    """uint8 tiles (B, T, T, 3) -> normalised float (B, 3, S, S): resized only when T differs, then cropped."""

    def __init__(self, preprocessing: Preprocessing) -> None:
        super().__init__()
        self.preprocessing = preprocessing
        mean = torch.tensor(preprocessing.mean, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        std = torch.tensor(preprocessing.std, dtype=torch.float32).view(1, 3, 1, 1) * 255.0
        self.register_buffer("mean", mean, persistent=False)
        self.register_buffer("inv_std", 1.0 / std, persistent=False)

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        """Normalise a batch of tiles.

        Args:
            tiles: (B, T, T, 3) uint8, channels last as cut from the image.

        Returns:
            (B, 3, S, S) float32 with S = ``preprocessing.input_size``.
        """
        crop = self.preprocessing.input_size
        size = self.preprocessing.resized_side
        if tiles.shape[1] == tiles.shape[2] == size == crop:
            return self._normalised_rows(tiles)
        pixels = tiles.permute(0, 3, 1, 2).to(torch.float32, copy=True)  # a copy even of float input (in place below)
        if pixels.shape[-1] != size or pixels.shape[-2] != size:
            mode = self.preprocessing.interpolation
            extra = {} if mode == "nearest" else {"align_corners": False, "antialias": True}
            pixels = F.interpolate(pixels, size=(size, size), mode=mode, **extra).clamp_(0.0, 255.0)
        if size != crop:
            start = int(round((size - crop) / 2.0))  # torchvision's CenterCrop offset
            pixels = pixels[..., start : start + crop, start : start + crop]
            return (pixels - self.mean) * self.inv_std  # a new dense tensor of the crop, as the model always had
        return pixels.sub_(self.mean).mul_(self.inv_std)

    def _normalised_rows(self, tiles: torch.Tensor) -> torch.Tensor:
        """Tiles already at the model's size: (B, S, S, 3) -> (B, 3, S, S) float32 viewed channels-last.

        The same operations in the same order, so the same bits, in place on one new float tensor, row by row: each
        image row is S x 3 values whose means and scales repeat every 3, so the arithmetic runs over long contiguous
        rows instead of a broadcast over the channel axis of length 3 (0.25 -> 0.065 ms per 224-px tile on a CPU).
        """
        batch, height, width, _ = tiles.shape
        pixels = tiles.to(torch.float32, memory_format=torch.contiguous_format, copy=True)  # (B, S, S, 3)
        rows = pixels.view(batch, height, width * 3)
        rows.sub_(self.mean.view(3).repeat(width)).mul_(self.inv_std.view(3).repeat(width))
        return pixels.permute(0, 3, 1, 2)
