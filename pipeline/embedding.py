"""Run a loaded model on uint8 tiles: copy to the device, normalise there, forward, return float32 embeddings."""

from __future__ import annotations

import numpy as np
import torch

from pipeline.models import LoadedModel
from pipeline.preprocessing import TileTransform
from pipeline.runtime import inference_context


class Embedder:
    """Callable ``(B, T, T, 3) uint8 tiles -> (B, D) float32 numpy`` for one model, device and precision."""

    def __init__(self, model: LoadedModel, device: torch.device, precision: str) -> None:
        self.model = model
        self.device = device
        self.precision = precision
        self.module = model.module.to(device)
        self.transform = TileTransform(model.preprocessing).to(device)

    def __call__(self, tiles: torch.Tensor) -> np.ndarray:
        """Embed a batch of tiles.

        Args:
            tiles: (B, T, T, 3) uint8 (pinned when the device is CUDA, so the copy is asynchronous).

        Returns:
            (B, D) float32 embeddings on the CPU.
        """
        if len(tiles) == 0:
            return np.empty((0, self.model.dim), dtype=np.float32)
        tiles = tiles.to(self.device, non_blocking=True)
        with inference_context(self.device, self.precision):
            embeddings = self.module(self.transform(tiles))
        return embeddings.float().cpu().numpy()
