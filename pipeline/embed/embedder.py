"""Run a loaded model on uint8 tiles: copy to the device, normalise there, forward, return float32 embeddings.

Tiles stay uint8 until here (a quarter of the bytes of float32 to copy). On CUDA a batch leaves from pinned host
memory with a non-blocking copy and is normalised on the GPU, and :meth:`Embedder.submit` returns before the GPU is
done, so the caller prepares the next batch while this one runs (:meth:`Embedder.collect` waits for it). When the
model is compiled, every batch has the same shape (a short last batch is padded, the padding rows are dropped) so the
graph is compiled once; a compiler that fails (no C++ compiler, an unsupported platform or operator) is logged and
the model runs eagerly instead.
"""

from __future__ import annotations

import copy
import logging
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np
import torch
from torch import nn

from pipeline.embed.model import LoadedModel
from pipeline.embed.preprocessing import TileTransform
from pipeline.embed.runtime import inference_context, weights_dtype

logger = logging.getLogger(__name__)

Tag = TypeVar("Tag")


@dataclass
class InFlight:
    """A submitted batch.

    Attributes:
        embeddings: (n, D) float32: a pinned host tensor still being filled on CUDA, numpy on a CPU.
        done: The CUDA event that marks them complete (None on a CPU).
    """

    embeddings: torch.Tensor | np.ndarray
    done: torch.cuda.Event | None


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
        model_seconds: Time spent in or waiting for the model (submitting and collecting batches).
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
        self.model_seconds = 0.0
        self._forward = self.network
        self._compile_pending = compile
        self._staging: list[torch.Tensor | None] = [None, None]
        self._turn = 0
        if compile:
            # Freezing folds the weights into the graph as constants, so they are pre-packed (and pre-cast under
            # autocast) once instead of at every call. Compiling itself happens at the first call (see _run).
            options = {"freezing": True}
            if device.type == "cpu":  # generated kernels read the thread count at run time: see ThreadShare
                options["cpp.dynamic_threads"] = True
            try:
                self._forward = torch.compile(self.network, dynamic=False, options=options)
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
        batches = ((tiles[start : start + step], None) for start in range(0, len(tiles), step))
        parts = [embeddings for _, embeddings in self.embed_batches(batches)]
        return parts[0] if len(parts) == 1 else np.concatenate(parts)

    def embed_batches(self, batches: Iterable[tuple[torch.Tensor, Tag]]) -> Iterator[tuple[Tag, np.ndarray]]:
        """Embed batches in order, each submitted before the one before it is collected: the one submit-ahead loop.

        Args:
            batches: ``(tiles, tag)`` pairs: (n_i, T, T, 3) uint8 tiles, n_i >= 1, and anything the caller needs
                back with their embeddings (which images the rows belong to).

        Yields:
            ``(tag, embeddings)``: the batch's tag and its (n_i, D) float32 embeddings, in order.

        When ``batches`` itself fails (a bad image under ``--strict``, Ctrl-C while waiting for tiles), the batch
        already submitted is still yielded, so its images are kept, and then the error goes on.
        """
        in_flight: tuple[InFlight, Tag] | None = None
        try:
            for tiles, tag in batches:
                launched = (self.submit(tiles), tag)
                if in_flight is not None:
                    yield in_flight[1], self.collect(in_flight[0])
                in_flight = launched
        except GeneratorExit:
            raise
        except BaseException:
            if in_flight is not None:
                yield in_flight[1], self.collect(in_flight[0])
            raise
        if in_flight is not None:
            yield in_flight[1], self.collect(in_flight[0])

    def submit(self, tiles: torch.Tensor) -> InFlight:
        """Start embedding one batch and return at once on CUDA (on a CPU the work is done on return).

        Submitting batch k+1 before collecting batch k keeps the GPU busy while the host prepares the next batch.
        At most one batch may be in flight when the next is submitted: the host staging buffers are a ring of two.

        Args:
            tiles: (n, T, T, 3) uint8, n >= 1 (n <= ``batch_size`` when the shape is fixed).
        """
        started = time.perf_counter()
        n = len(tiles)
        self._turn = 1 - self._turn
        # The copy is queued on the stream before the forward pass, and this buffer is rewritten two submits later,
        # after the batch that used it was collected (synchronised), so reusing it is safe.
        batch = self.host_batch(tiles, self._turn).to(self.device, non_blocking=True)
        with inference_context(self.device, self.precision):
            embeddings = self._run(batch)[:n].float()
        if self.device.type != "cuda":
            launched = InFlight(embeddings.numpy().copy(), None)  # copied: a compiled graph may reuse its output
        else:
            host = torch.empty(embeddings.shape, dtype=torch.float32, pin_memory=True)
            host.copy_(embeddings, non_blocking=True)
            done = torch.cuda.Event()
            done.record()
            launched = InFlight(host, done)
        self.model_seconds += time.perf_counter() - started
        return launched

    def collect(self, launched: InFlight) -> np.ndarray:
        """Wait for a submitted batch and return its (n, D) float32 embeddings."""
        if launched.done is None:
            return launched.embeddings
        started = time.perf_counter()
        launched.done.synchronize()
        self.model_seconds += time.perf_counter() - started
        return launched.embeddings.numpy()

    def next_host_buffer(self, tile_shape: tuple[int, ...]) -> torch.Tensor | None:
        """The buffer to fill in place for the next :meth:`submit` (saves a copy of every batch).

        Returns:
            On CUDA, the pinned (batch_size, *tile_shape) uint8 staging buffer that submit sends from; None on a CPU
            or without a batch size.
        """
        if self.device.type != "cuda" or self.batch_size is None:
            return None
        return self._staging_buffer(1 - self._turn, (self.batch_size, *tile_shape), torch.uint8)

    def _staging_buffer(self, slot: int, shape: tuple[int, ...], dtype: torch.dtype) -> torch.Tensor:
        staging = self._staging[slot]
        if staging is None or staging.shape != shape or staging.dtype != dtype:
            staging = self._staging[slot] = torch.empty(shape, dtype=dtype, pin_memory=self.device.type == "cuda")
        return staging

    def host_batch(self, tiles: torch.Tensor, slot: int = 0) -> torch.Tensor:
        """The batch as it leaves the host: padded to ``batch_size`` rows when the shape is fixed, pinned on CUDA.

        Args:
            tiles: (n, T, T, 3) uint8 with n <= ``batch_size`` when the shape is fixed.
            slot: Which of the two staging buffers to use.

        Returns:
            ``tiles`` itself when nothing is needed, else a reused staging buffer (k, T, T, 3) whose first n rows are
            ``tiles`` and whose other rows are zero.
        """
        rows = self.batch_size if self.fixed_shape else len(tiles)
        pin = self.device.type == "cuda"
        if rows == len(tiles) and not (pin and not tiles.is_pinned()):
            return tiles
        staging = self._staging_buffer(slot, (rows, *tiles.shape[1:]), tiles.dtype)
        if tiles.data_ptr() != staging.data_ptr():  # already in place when filled through next_host_buffer
            staging[: len(tiles)].copy_(tiles)
        staging[len(tiles) :].zero_()
        return staging

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
