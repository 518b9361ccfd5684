"""A model's own preprocessing (input size, resize filter, mean and std) and its application to uint8 tiles.

The values are read from the model's configuration (Hugging Face ``preprocessor_config.json``, timm's
``pretrained_cfg``), except for the encoders whose config the registry knows to be wrong (the table's values then
win), and are recorded in the cache. Tiles travel as uint8 and are
converted, resized (only when their size differs from the model's) and normalised in one step on the device.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

# PIL's resample codes, as stored in Hugging Face preprocessor configs.
_PIL_RESAMPLE = {0: "nearest", 1: "bicubic", 2: "bilinear", 3: "bicubic", 4: "bilinear", 5: "bicubic"}


@dataclass(frozen=True)
class Preprocessing:
    """How a model expects its input.

    Attributes:
        input_size: Side of the square input in pixels.
        mean: Per-channel mean of pixels scaled to [0, 1].
        std: Per-channel standard deviation.
        interpolation: "bilinear", "bicubic" or "nearest"; used only when tiles are not ``input_size`` already.
    """

    input_size: int
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    interpolation: str = "bicubic"

    def to_dict(self) -> dict:
        """JSON-ready dict (lists, not tuples)."""
        values = asdict(self)
        values["mean"], values["std"] = list(self.mean), list(self.std)
        return values

    @classmethod
    def from_hf_dict(cls, config: dict, default_size: int) -> Preprocessing:
        """Build from a Hugging Face image-processor dict (``size``, ``crop_size``, ``image_mean``, ...)."""
        size = config.get("crop_size") if config.get("do_center_crop") else config.get("size")
        if isinstance(size, dict):
            size = size.get("height") or size.get("shortest_edge") or size.get("width")
        return cls(
            input_size=int(size or default_size),
            mean=tuple(float(v) for v in config.get("image_mean", IMAGENET_MEAN)),
            std=tuple(float(v) for v in config.get("image_std", IMAGENET_STD)),
            interpolation=_PIL_RESAMPLE.get(int(config.get("resample", 3)), "bicubic"),
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


class TileTransform(torch.nn.Module):
    """uint8 tiles (B, T, T, 3) -> normalised float (B, 3, S, S), resized only when T != S."""

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
        pixels = tiles.permute(0, 3, 1, 2).to(torch.float32, copy=True)  # a copy even of float input (in place below)
        size = self.preprocessing.input_size
        if pixels.shape[-1] != size or pixels.shape[-2] != size:
            mode = self.preprocessing.interpolation
            extra = {} if mode == "nearest" else {"align_corners": False, "antialias": True}
            pixels = F.interpolate(pixels, size=(size, size), mode=mode, **extra).clamp_(0.0, 255.0)
        # in place, the same operations in the same order: a new (B, 3, S, S) float tensor per step cost the
        # kernel's zero-filling of its pages (more CPU than the arithmetic on a CPU run)
        return pixels.sub_(self.mean).mul_(self.inv_std)
