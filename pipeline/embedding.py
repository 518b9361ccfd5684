"""Run a loaded model on uint8 tiles: copy to the device, normalise there, forward, return float32 embeddings.

Tiles stay uint8 until here (a quarter of the bytes of float32 to copy). On CUDA a batch leaves from pinned host
memory with a non-blocking copy and is normalised on the GPU. When the model is compiled, every batch has the same
shape (a short last batch is padded, the padding rows are dropped) so the graph is compiled once; a compiler that
fails (no C++ compiler, an unsupported platform or operator) is logged and the model runs eagerly instead.
"""

from __future__ import annotations

import copy
import logging
import time

import numpy as np
import torch
from torch import nn

from pipeline.models import LoadedModel
from pipeline.preprocessing import TileTransform
from pipeline.runtime import inference_context, weights_dtype

logger = logging.getLogger(__name__)


class Network(nn.Module):
    """uint8 tiles (B, T, T, 3) -> embeddings (B, D): the model's own normalisation, then the model, as one module.

    Pixels reach the model channels-last (the layout tiles are cut in, and the fast one for convolutions on CPU
    and on tensor cores) and in the weights' dtype.
    """

    def __init__(self, transform: TileTransform, module: nn.Module, dtype: torch.dtype) -> None:
        super().__init__()
        self.transform = transform
        self.module = module
        self.dtype = dtype

    def forward(self, tiles: torch.Tensor) -> torch.Tensor:
        """Embed (B, T, T, 3) uint8 tiles into (B, D)."""
        pixels = self.transform(tiles).to(self.dtype).contiguous(memory_format=torch.channels_last)
        return self.module(pixels)


class Embedder:
    """Callable ``(B, T, T, 3) uint8 tiles -> (B, D) float32 numpy`` for one model, device and precision.

    Args:
        model: The loaded model. Its module is moved to ``device`` in place; ``bf16-weights`` works on a copy, so
            the caller's module keeps its fp32 weights.
        device: Where the model runs.
        precision: A resolved precision (fp32, bf16, fp16, bf16-weights).
        batch_size: The batch size the caller uses; with ``compile`` every forward pass has exactly this many rows.
        compile: Run the model through ``torch.compile`` (falls back to eager when compiling fails).

    Attributes:
        compiled: True once a compiled forward pass has run.
        compile_seconds: Time of the first (compiling) forward pass, 0 when not compiled.
    """

    def __init__(
        self,
        model: LoadedModel,
        device: torch.device,
        precision: str,
        batch_size: int | None = None,
        compile: bool = False,
    ) -> None:
        self.model = model
        self.device = device
        self.precision = precision
        dtype = weights_dtype(precision)
        module = model.module if dtype == torch.float32 else copy.deepcopy(model.module)
        module = module.to(device=device, dtype=dtype, memory_format=torch.channels_last)
        self.network = Network(TileTransform(model.preprocessing), module, dtype).to(device).eval()
        self.batch_size = batch_size
        self.fixed_shape = compile and batch_size is not None
        self.compiled = False
        self.compile_seconds = 0.0
        self._forward = self.network
        self._compile_pending = compile
        self._staging: torch.Tensor | None = None
        if compile:
            # Freezing folds the weights into the graph as constants, so they are pre-packed (and pre-cast under
            # autocast) once instead of at every call. Compiling itself happens at the first call (see _run).
            try:
                self._forward = torch.compile(self.network, dynamic=False, options={"freezing": True})
            except Exception as exc:  # noqa: BLE001 - e.g. a Python version torch.compile does not support
                self._compile_failed(exc)

    def __call__(self, tiles: torch.Tensor) -> np.ndarray:
        """Embed a batch of tiles.

        Args:
            tiles: (B, T, T, 3) uint8; on CUDA, pinned tiles skip one copy into the staging buffer.

        Returns:
            (B, D) float32 embeddings on the CPU.
        """
        if len(tiles) == 0:
            return np.empty((0, self.model.dim), dtype=np.float32)
        step = self.batch_size if self.fixed_shape else len(tiles)
        parts = [self._embed(tiles[start : start + step]) for start in range(0, len(tiles), step)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def host_batch(self, tiles: torch.Tensor) -> torch.Tensor:
        """The batch as it leaves the host: padded to ``batch_size`` rows when the shape is fixed, pinned on CUDA.

        Args:
            tiles: (n, T, T, 3) uint8 with n <= ``batch_size`` when the shape is fixed.

        Returns:
            ``tiles`` itself when nothing is needed, else a reused staging buffer (k, T, T, 3) whose first n rows are
            ``tiles`` and whose other rows are zero.
        """
        rows = self.batch_size if self.fixed_shape else len(tiles)
        pin = self.device.type == "cuda"
        if rows == len(tiles) and not (pin and not tiles.is_pinned()):
            return tiles
        shape = (rows, *tiles.shape[1:])
        if self._staging is None or self._staging.shape != shape or self._staging.dtype != tiles.dtype:
            self._staging = torch.empty(shape, dtype=tiles.dtype, pin_memory=pin)
        self._staging[: len(tiles)].copy_(tiles)
        self._staging[len(tiles) :].zero_()
        return self._staging

    def _embed(self, tiles: torch.Tensor) -> np.ndarray:
        n = len(tiles)
        # The staging buffer is reused by the next call; the .cpu() below waits for the copy, so that is safe.
        batch = self.host_batch(tiles).to(self.device, non_blocking=True)
        with inference_context(self.device, self.precision):
            embeddings = self._run(batch)
        return embeddings[:n].float().cpu().numpy().copy()  # a compiled graph may reuse its output buffer

    def _run(self, batch: torch.Tensor) -> torch.Tensor:
        if not self._compile_pending:
            return self._forward(batch)
        self._compile_pending = False
        started = time.perf_counter()
        try:
            embeddings = self._forward(batch)
        except Exception as exc:  # noqa: BLE001 - compilers fail in many ways (no C++ compiler, platform, operator)
            self._compile_failed(exc)
            return self.network(batch)
        self.compiled = True
        self.compile_seconds = time.perf_counter() - started
        logger.info("compiled %s (%s) in %.1f s", self.model.name, self.precision, self.compile_seconds)
        return embeddings

    def _compile_failed(self, exc: Exception) -> None:
        logger.warning(
            "torch.compile failed for %s (%s: %s); running it without compiling. --compile off skips the attempt.",
            self.model.name,
            type(exc).__name__,
            (str(exc).splitlines() or [""])[0][:200],
        )
        self._forward = self.network
        self._compile_pending = False
        self.fixed_shape = False
