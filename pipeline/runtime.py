"""Where and in which number format the model runs: device choice and the precision policy.

Policy for ``--precision auto``: fp16 autocast on CUDA; bf16 autocast on a CPU with native bf16 matrix units
(AMX or AVX512-BF16); fp32 everywhere else. The resolved precision is part of the cache settings, so caches made
in different precisions are never mixed.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import torch

from pipeline.errors import ConfigError

PRECISIONS = ("auto", "fp32", "bf16", "fp16")
DEVICES = ("auto", "cpu", "cuda")
_DTYPES = {"bf16": torch.bfloat16, "fp16": torch.float16}


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


def resolve_precision(precision: str, device: torch.device) -> str:
    """Resolve ``auto`` to fp32, bf16 or fp16 for a device; check explicit values.

    Raises:
        ConfigError: Unknown precision.
    """
    if precision not in PRECISIONS:
        raise ConfigError(f"--precision must be one of {', '.join(PRECISIONS)}. Got '{precision}' instead.")
    if precision != "auto":
        return precision
    if device.type == "cuda":
        return "fp16"
    return "bf16" if cpu_has_native_bf16() else "fp32"


@contextlib.contextmanager
def inference_context(device: torch.device, precision: str) -> Iterator[None]:
    """No gradients, autocast to bf16/fp16 when asked; fp32 means real fp32 (no TF32 shortcuts on CUDA)."""
    with torch.inference_mode():
        if precision in _DTYPES:
            with torch.autocast(device_type=device.type, dtype=_DTYPES[precision]):
                yield
        elif device.type == "cuda":
            matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
            torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = False
            try:
                yield
            finally:
                torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn
        else:
            yield
