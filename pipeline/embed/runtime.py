"""Where and in which number format the model runs: device choice, the precision policy and when to compile.

Precisions: ``fp32``; ``fp16`` and ``bf16`` autocast (weights stay fp32, matmuls and convolutions run in 16 bit);
``bf16-weights`` (the weights themselves are cast to bf16, so every op runs in bf16: faster than autocast on CPUs
with bf16 matrix units, and drifts about twice as far from fp32).

Policy for ``--precision auto`` (see the README's *Extraction speed* for the measurements behind it): fp16 autocast
on CUDA (it drifts far less from fp32 than bf16); bf16 autocast on a CPU with native bf16 matrix units (AMX or
AVX512-BF16, where it is several times faster than fp32) for transformer models, whose centred cosine to fp32 it
keeps above 0.999 (bf16 weights do not); fp32 everywhere else: convolutional models on such CPUs, and CPUs without
them (bf16 is emulated there and 6-15x slower than fp32).
The resolved precision is part of the cache settings, so caches made in different precisions are never mixed.

Policy for ``--compile auto``: ``torch.compile`` only for bf16 on CPUs with native bf16, where the issue's
measurements had it fuse the work around the matmuls (bf16 weights 40 -> 47 tiles/s). Not in fp32 on other CPUs,
where a ViT-B/16 gained 3-5% (its fp32 matmuls already run near the machine's limit) and EfficientNet-Lite0 1.3x,
each after 13-60 s of compiling that a short run never earns back (``--compile on`` for long EfficientNet runs).
Not on CUDA: on an H200 a compiled ViT-B/16 (fp16, batch 128, freezing) ran 5,148 tiles/s against 7,612 eager
(SDPA attention), after 12 s of compiling.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch
from torch import nn

from pipeline.embed.options import COMPILE_MODES, PRECISIONS
from pipeline.errors import ConfigError

_AUTOCAST_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}
_WEIGHT_DTYPES = {"bf16-weights": torch.bfloat16}


def resolve_device(device: str) -> torch.device:
    """Turn ``auto``, ``cpu``, ``cuda`` or ``cuda:N`` into a torch device.

    Raises:
        ConfigError: CUDA was asked for but is not available, or the name is unknown.
    """
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    if device == "cpu":
        return torch.device("cpu")
    if device == "cuda" or device.startswith("cuda:"):
        if not torch.cuda.is_available():
            raise ConfigError(
                f"--gpu / --device {device} was asked for but CUDA is not available (torch {torch.__version__}, "
                f"built for CUDA {torch.version.cuda or 'none'}). Install a CUDA build of torch and check nvidia-smi, "
                "or drop --gpu to run on the CPU."
            )
        return torch.device(device)
    raise ConfigError(f"--device must be one of auto, cpu, cuda. Got '{device}' instead.")


def cpu_has_native_bf16() -> bool:
    """True when the CPU has bf16 matrix instructions (AMX tiles or AVX512-BF16), where bf16 is several times faster."""
    checks = ("_is_amx_tile_supported", "_is_avx512_bf16_supported")
    return any(bool(getattr(torch.cpu, name, lambda: False)()) for name in checks)


def linear_weight_share(module: nn.Module) -> float:
    """Fraction of a model's parameters held by linear layers: about 0.99 for a ViT, 0 for EfficientNet or ResNet."""
    total = sum(parameter.numel() for parameter in module.parameters())
    layers = [layer for layer in module.modules() if isinstance(layer, nn.Linear)]
    linear = sum(parameter.numel() for layer in layers for parameter in layer.parameters())
    return linear / total if total else 0.0


def resolve_precision(precision: str, device: torch.device, module: nn.Module | None = None) -> str:
    """Resolve ``auto`` to fp32, bf16 or fp16 for a device (and model); check explicit values.

    On a CPU with native bf16, ``auto`` is bf16 only for models whose weights are mostly in linear layers
    (transformers): bf16 autocast kept a ViT-B/16 at a centred cosine of 0.9997 to fp32 on real tiles but moved
    EfficientNet-Lite0 (depthwise convolutions, no linear layer) to 0.998, below the 0.999 that real features are
    held to, and bf16 matrix units speed up matmuls, not depthwise convolutions. Without ``module`` the model is
    taken to be a transformer.

    Raises:
        ConfigError: Unknown precision.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}. Got '{precision}' instead.")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "fp16"
    if not cpu_has_native_bf16() or (module is not None and linear_weight_share(module) < 0.5):
        return "fp32"
    return "bf16"


def resolve_compile(mode: str, device: torch.device, precision: str) -> bool:
    """Whether to ``torch.compile`` the model: ``on``, ``off``, or ``auto`` (bf16 on a CPU with native bf16 only).

    Raises:
        ConfigError: Unknown mode.
    """
    if mode not in COMPILE_MODES:
        raise ConfigError(f"--compile must be one of {', '.join(COMPILE_MODES)}. Got '{mode}' instead.")
    if mode != "auto":
        return mode == "on"
    return device.type == "cpu" and precision in ("bf16", "bf16-weights") and cpu_has_native_bf16()


def default_batch_size(device: torch.device) -> int:
    """Tiles per forward pass when not given: 16 on a CPU, 256 on CUDA.

    On CPUs, 16 was as fast as 32 for a ViT-B/16 and about 20% faster for EfficientNet-Lite0 (activations that stay
    in cache). On an H200, a ViT-B/16 in fp16 ran 7,272 / 7,612 / 7,786 / 7,787 tiles/s at batch 64 / 128 / 256 /
    512: 256 is at the plateau, and fewer batches mean less work per tile for the host thread that feeds the GPU.
    """
    return 256 if device.type == "cuda" else 16


def weights_dtype(precision: str) -> torch.dtype:
    """The dtype the model's weights and inputs are cast to: bf16 for ``bf16-weights``, else float32."""
    return _WEIGHT_DTYPES.get(precision, torch.float32)


def autocast_dtype(precision: str) -> torch.dtype | None:
    """The autocast dtype of a precision, or None when it runs without autocast."""
    return _AUTOCAST_DTYPES.get(precision)


@contextlib.contextmanager
def inference_context(device: torch.device, precision: str) -> Iterator[None]:
    """No gradients, autocast to bf16/fp16 when asked; fp32 means real fp32 (no TF32 shortcuts on CUDA)."""
    with torch.inference_mode():
        dtype = autocast_dtype(precision)
        if dtype is not None:
            with torch.autocast(device_type=device.type, dtype=dtype):
                yield
        elif device.type == "cuda" and precision == "fp32":
            matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
            try:
                yield
            finally:
                torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
        else:
            yield
