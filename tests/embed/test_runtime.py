import pytest
import torch

from pipeline.embed import runtime
from pipeline.embed.runtime import (
    autocast_dtype,
    inference_context,
    resolve_compile,
    resolve_device,
    resolve_precision,
    weights_dtype,
)
from pipeline.errors import ConfigError

CPU, CUDA = torch.device("cpu"), torch.device("cuda")


@pytest.fixture
def cuda_present(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)


@pytest.fixture
def cuda_absent(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)


def test_auto_device_follows_cuda_availability(cuda_present):
    assert resolve_device("auto") == CUDA
    assert resolve_device("cuda:1") == torch.device("cuda:1")
    assert resolve_device("cpu") == CPU


def test_cuda_asked_without_cuda_fails_with_the_fix(cuda_absent):
    assert resolve_device("auto") == CPU
    with pytest.raises(ConfigError, match="--gpu / --device cuda was asked for but CUDA is not available.*drop --gpu"):
        resolve_device("cuda")
    with pytest.raises(ConfigError, match="--device must be one of auto, cpu, cuda. Got 'tpu' instead."):
        resolve_device("tpu")


@pytest.mark.parametrize("native", [True, False])
def test_auto_precision_policy(monkeypatch, native):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    assert resolve_precision("auto", CUDA) == "fp16"  # on any CPU
    assert resolve_precision("auto", CPU) == ("bf16" if native else "fp32")
    for explicit in ("fp32", "bf16", "fp16", "bf16-weights"):
        assert resolve_precision(explicit, CPU) == explicit
        assert resolve_precision(explicit, CUDA) == explicit


def test_auto_precision_on_native_bf16_cpus_keeps_convolutional_models_in_fp32(monkeypatch):
    from torch import nn

    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: True)
    transformer = nn.Sequential(nn.Conv2d(3, 8, 4, 4), nn.Flatten(), nn.Linear(8, 64), nn.Linear(64, 8))
    convnet = nn.Sequential(nn.Conv2d(3, 32, 3), nn.Conv2d(32, 32, 3, groups=32), nn.Flatten(), nn.Linear(4, 2))
    assert runtime.linear_weight_share(transformer) > 0.5 > runtime.linear_weight_share(convnet)
    assert resolve_precision("auto", CPU, transformer) == "bf16"
    assert resolve_precision("auto", CPU, convnet) == "fp32"
    assert resolve_precision("auto", CUDA, convnet) == "fp16"  # fp16 drifts little for both
    assert resolve_precision("bf16", CPU, convnet) == "bf16"  # asked for explicitly


def test_unknown_precision():
    with pytest.raises(ConfigError, match="--precision must be one of auto, fp32, bf16, fp16, bf16-weights. Got 'int"):
        resolve_precision("int8", CPU)


@pytest.mark.parametrize("native", [True, False])
def test_auto_compile_policy(monkeypatch, native):
    monkeypatch.setattr(runtime, "cpu_has_native_bf16", lambda: native)
    assert not resolve_compile("auto", CUDA, "fp16") and not resolve_compile("auto", CUDA, "fp32")  # measured: slower
    assert not resolve_compile("auto", CPU, "fp32")  # measured: no gain for a ViT-B on an AVX2 CPU
    assert resolve_compile("auto", CPU, "bf16") == native
    assert resolve_compile("auto", CPU, "bf16-weights") == native
    assert resolve_compile("on", CPU, "fp32") and resolve_compile("on", CUDA, "fp16")
    assert not resolve_compile("off", CUDA, "fp16")
    with pytest.raises(ConfigError, match="--compile must be one of auto, on, off. Got 'yes' instead."):
        resolve_compile("yes", CPU, "fp32")


def test_dtypes_of_each_precision():
    assert weights_dtype("bf16-weights") == torch.bfloat16
    assert all(weights_dtype(p) == torch.float32 for p in ("fp32", "bf16", "fp16"))
    assert autocast_dtype("bf16") == torch.bfloat16 and autocast_dtype("fp16") == torch.float16
    assert autocast_dtype("fp32") is None and autocast_dtype("bf16-weights") is None


def test_inference_context_autocasts_on_cpu_and_disables_gradients():
    layer = torch.nn.Linear(8, 4)
    x = torch.randn(2, 8)
    with inference_context(CPU, "bf16"):
        assert layer(x).dtype == torch.bfloat16 and torch.is_inference_mode_enabled()
    with inference_context(CPU, "fp32"):
        out = layer(x)
        assert out.dtype == torch.float32 and not out.requires_grad
    with inference_context(CPU, "bf16-weights"):  # the weights carry the dtype; no autocast
        assert layer(x).dtype == torch.float32


def test_fp32_on_cuda_turns_tf32_off_and_restores_it():
    # Only backend flags are touched, so the CUDA branch runs on a machine without a GPU.
    matmul, cudnn = torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32
    torch.backends.cuda.matmul.allow_tf32 = torch.backends.cudnn.allow_tf32 = True
    try:
        with inference_context(CUDA, "fp32"):
            assert not torch.backends.cuda.matmul.allow_tf32 and not torch.backends.cudnn.allow_tf32
        assert torch.backends.cuda.matmul.allow_tf32 and torch.backends.cudnn.allow_tf32
    finally:
        torch.backends.cuda.matmul.allow_tf32, torch.backends.cudnn.allow_tf32 = matmul, cudnn


def test_extraction_settings_check_the_compile_mode():
    from pipeline.extract.settings import ExtractionSettings

    assert ExtractionSettings().compile == "auto"
    with pytest.raises(ConfigError, match="--compile must be one of auto, on, off. Got 'maybe' instead."):
        ExtractionSettings(compile="maybe").validate()


def test_default_batch_size_depends_on_the_device():
    from pipeline.extract.settings import ExtractionSettings

    assert runtime.default_batch_size(CPU) == 16 and runtime.default_batch_size(CUDA) == 256
    assert ExtractionSettings().validate().batch_size is None  # resolved once the device is known
