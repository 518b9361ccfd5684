"""Bags of tiles for multiple-instance heads: the gated-attention network, padded minibatches, checks and outputs.

A bag is one image's tiles, with one label; ``bag_index`` (n_tiles,) says which bag each tile belongs to
(:func:`check_bag_index`). :class:`Bags` sorts the tiles by bag once, so any set of bags becomes a padded (B, L, D)
batch plus a (B, L) mask with one numpy gather, padded only to the longest bag of that batch. A slide's bag holds
thousands of tiles: training batches sample at most ``max_tiles`` of a larger bag (:meth:`Bags.batch`), and a bag too
large for one pass is scored chunk by chunk (:func:`pool_in_chunks`), so memory is bounded whatever a bag's size.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import numpy as np
import torch
from torch import nn


class GatedAttentionMIL(nn.Module):
    """Tile projection -> gated attention pooling within each bag -> linear classifier (Ilse et al., ICML 2018).

    The classifier is linear, so a bag's logits are the attention-weighted mean of its tiles' own logits
    (``classifier(projection of the tile)``): each tile's class and weight together say how it moved the prediction.

    Args:
        n_features: D. hidden_dim: Width of the tile projection (and of the bag embedding).
        attention_dim: Width of the tanh and sigmoid branches. n_classes: C. dropout: After the projection.
    """

    def __init__(self, n_features: int, hidden_dim: int, attention_dim: int, n_classes: int, dropout: float):
        super().__init__()
        self.project = nn.Sequential(nn.Linear(n_features, hidden_dim), nn.GELU(), nn.Dropout(dropout))
        # The tanh (V) and sigmoid (U) branches of the gate share one matrix product; their halves are split after.
        self.gate = nn.Linear(hidden_dim, 2 * attention_dim)
        self.score = nn.Linear(attention_dim, 1)
        self.classifier = nn.Linear(hidden_dim, n_classes)

    def forward(
        self, tiles: torch.Tensor, mask: torch.Tensor, with_tiles: bool = False
    ) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor | None]:
        """Classify padded bags.

        Args:
            tiles: (B, L, D) float32, bags padded to L tiles. mask: (B, L) bool, True for real tiles (>= 1 per bag).
            with_tiles: Also return each tile's own logits.

        Returns:
            Logits (B, C); attention weights (B, L), zero on padding and summing to 1 over each bag; and the tiles'
            logits (B, L, C) or None.
        """
        hidden = self.project(tiles)  # (B, L, H)
        scores = self.attention_scores(hidden)  # (B, L)
        attention = torch.softmax(scores.masked_fill(~mask, float("-inf")), dim=1)  # padding gets exp(-inf) = 0
        bag = torch.bmm(attention.unsqueeze(1), hidden).squeeze(1)  # (B, H) attention-weighted sum
        return self.classifier(bag), attention, self.classifier(hidden) if with_tiles else None

    def attention_scores(self, hidden: torch.Tensor) -> torch.Tensor:
        """Unnormalised attention scores (...,) of projected tiles (..., H): the gated branch's output."""
        values, gates = self.gate(hidden).chunk(2, dim=-1)  # (..., A) each
        return self.score(torch.tanh(values) * torch.sigmoid(gates)).squeeze(-1)


def pool_in_chunks(
    network: GatedAttentionMIL, tiles: torch.Tensor, max_tiles: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Score one bag too large for one pass, ``max_tiles`` tiles at a time (no padding, no gradient needed).

    Each chunk gives its tiles' attention scores and own logits; the softmax over the whole bag comes after. The
    classifier is linear and the weights sum to 1, so the bag's logits are the attention-weighted mean of the tiles'
    logits: what :meth:`GatedAttentionMIL.forward` gives, to float rounding, holding (max_tiles, H) activations
    instead of (L, H) (plus (L,) scores and (L, C) logits).

    Args:
        network: The network, in eval mode. tiles: (L, D) float32, one bag's standardised tiles.
        max_tiles: Tiles per pass.

    Returns:
        Logits (C,), attention weights (L,) summing to 1, and the tiles' own logits (L, C).
    """
    scores, tile_logits = [], []
    for start in range(0, len(tiles), max_tiles):
        hidden = network.project(tiles[start : start + max_tiles])  # (<= max_tiles, H)
        scores.append(network.attention_scores(hidden))
        tile_logits.append(network.classifier(hidden))
    attention = torch.softmax(torch.cat(scores), dim=0)  # (L,)
    tile_logits = torch.cat(tile_logits)  # (L, C)
    return attention @ tile_logits, attention, tile_logits


class Bags:
    """Tiles sorted by bag, so that any set of bags can be gathered into a padded batch without a Python loop.

    Args:
        X: (n_tiles, D) float32 tiles. bag_index: (n_tiles,) int bag of each tile, in [0, n_bags).
        n_bags: Number of bags; every bag needs at least one tile.
    """

    def __init__(self, X: np.ndarray, bag_index: np.ndarray, n_bags: int):
        self.order = np.argsort(bag_index, kind="stable")  # (n_tiles,) tile rows in bag order
        # A cache's tiles come sorted by image already: then X itself is used, not a copy of the whole data set.
        in_order = bool(np.all(self.order == np.arange(len(self.order))))
        self.tiles = torch.from_numpy(np.ascontiguousarray(X if in_order else X[self.order]))  # (n_tiles, D)
        self.counts = np.bincount(bag_index, minlength=n_bags)  # (n_bags,)
        self.starts = np.concatenate([[0], np.cumsum(self.counts)[:-1]]).astype(np.int64)  # (n_bags,) first rows

    def batch(
        self, bags: np.ndarray, max_tiles: int | None = None, rng: np.random.Generator | None = None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """Pad some bags to their longest one: tiles (B, L, D) and mask (B, L) bool.

        Args:
            bags: (B,) bag indices.
            max_tiles: A bag with more tiles gives ``max_tiles`` of them, drawn without replacement by ``rng``
                (needed then), so L <= max_tiles; smaller bags give all theirs. None: every tile of every bag.
            rng: Draws the sampled tiles; untouched when no bag of the batch exceeds ``max_tiles``.
        """
        counts = self.counts[bags]
        length = int(counts.max())
        offsets = np.broadcast_to(np.arange(length), (len(bags), length))
        if max_tiles is not None and length > max_tiles:
            length = max_tiles
            offsets = np.tile(np.arange(length), (len(bags), 1))  # (B, L) tile offsets within each bag
            for i in np.flatnonzero(counts > max_tiles):
                offsets[i] = rng.choice(int(counts[i]), size=max_tiles, replace=False)
        mask = offsets < counts[:, None]  # (B, L)
        rows = np.where(mask, self.starts[bags, None] + offsets, 0)  # padding repeats row 0, masked out
        return self.tiles[torch.from_numpy(rows)], torch.from_numpy(mask)

    def rows(self, bags: np.ndarray, mask: np.ndarray) -> np.ndarray:
        """Sorted-tile rows of the real (unmasked) cells of a batch of ``bags``, in the batch's row-major order."""
        return (self.starts[bags, None] + np.arange(mask.shape[1])[None, :])[mask]

    def chunks(self, bags: np.ndarray, max_tiles: int) -> list[np.ndarray]:
        """Split bags into batches of at most ``max_tiles`` padded tiles (bags sorted by size, so padding is small).

        A bag larger than ``max_tiles`` gets a batch of its own.
        """
        bags = bags[np.argsort(self.counts[bags], kind="stable")]
        chunks, start = [], 0
        while start < len(bags):
            # sorted by size, so a chunk's padded size is (its number of bags) x (its last bag's size)
            end = start + 1
            while end < len(bags) and (end + 1 - start) * self.counts[bags[end]] <= max_tiles:
                end += 1
            chunks.append(bags[start:end])
            start = end
        return chunks


def check_bag_index(n_tiles: int, bag_index: Any, n_bags: int | None) -> tuple[np.ndarray, int]:
    """Validate ``bag_index`` for ``n_tiles`` rows (None: one bag per row); return it as int64 and the bag count.

    Raises:
        ValueError: Not ints of shape (n_tiles,), out of [0, n_bags), or a bag without tiles.
    """
    if bag_index is None:
        return np.arange(n_tiles, dtype=np.int64), n_tiles if n_bags is None else int(n_bags)
    bag_index = np.asarray(bag_index)
    if bag_index.shape != (n_tiles,) or (bag_index.size and bag_index.dtype.kind not in "iu"):
        raise ValueError(f"bag_index must be ints of shape ({n_tiles},) to match X; got {bag_index.shape}.")
    bag_index = bag_index.astype(np.int64)
    n_bags = (int(bag_index.max()) + 1 if n_tiles else 0) if n_bags is None else int(n_bags)
    if n_tiles and (bag_index.min() < 0 or bag_index.max() >= n_bags):
        raise ValueError(f"bag_index must lie in [0, {n_bags}).")
    empty = np.flatnonzero(np.bincount(bag_index, minlength=n_bags) == 0)
    if len(empty):
        raise ValueError(f"every bag needs at least one tile; bags without tiles: {empty[:10].tolist()}")
    return bag_index, n_bags


class BagPrediction(NamedTuple):
    """What the head says about some bags.

    Attributes:
        proba: (n_bags, C) float64 class probabilities, columns in ``classes_`` order.
        tile_proba: (n_tiles, C) float64 each tile's own class probabilities (the classifier applied to the tile
            alone; a bag's logits are the attention-weighted mean of its tiles' logits), in X's row order.
        attention: (n_tiles,) float64 attention weight of each tile, summing to 1 within each bag, in X's row order.
    """

    proba: np.ndarray
    tile_proba: np.ndarray
    attention: np.ndarray
