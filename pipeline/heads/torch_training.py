"""What the torch heads (MLP, ABMIL) share: the held-out split of whole groups, thread counts, the weighted loss."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator

import numpy as np
import torch
from torch import nn


def inner_split(y: np.ndarray, groups: np.ndarray, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Hold out about ``fraction`` of the groups of each class, whole groups only.

    A group counts towards its most frequent class. Each class keeps at least one group on each side; a class with
    fewer than two groups makes the split impossible, and then every row is returned as training.

    Args:
        y: Labels, shape (n,). groups: Group id per row (e.g. image id), shape (n,).
        fraction: Share of each class's groups to hold out, in (0, 1). seed: Seed for the numpy generator.

    Returns:
        ``(train_mask, val_mask)``, each bool of shape (n,), disjoint and covering every row.
    """
    _, y_idx = np.unique(np.asarray(y), return_inverse=True)
    group_ids, group_idx = np.unique(np.asarray(groups), return_inverse=True)
    counts = np.zeros((len(group_ids), y_idx.max() + 1), dtype=np.int64)
    np.add.at(counts, (group_idx, y_idx), 1)
    group_label = counts.argmax(axis=1)
    rng = np.random.default_rng(seed)
    val_groups = np.zeros(len(group_ids), dtype=bool)
    for label in range(counts.shape[1]):
        members = np.flatnonzero(group_label == label)
        if len(members) < 2:
            return np.ones(len(y_idx), dtype=bool), np.zeros(len(y_idx), dtype=bool)
        n_val = min(max(1, round(fraction * len(members))), len(members) - 1)
        val_groups[rng.choice(members, size=n_val, replace=False)] = True
    val_mask = val_groups[group_idx]
    return ~val_mask, val_mask


@contextlib.contextmanager
def torch_threads(n_jobs: int | None) -> Iterator[None]:
    """Use ``n_jobs`` torch threads inside the block and restore the process-wide setting after it."""
    if n_jobs is None or n_jobs < 1:
        yield
        return
    previous = torch.get_num_threads()
    torch.set_num_threads(n_jobs)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def weighted_loss(logits: torch.Tensor, target: torch.Tensor, weight: torch.Tensor) -> torch.Tensor:
    """Class- and sample-weighted cross-entropy: ``sum(weight * ce) / sum(weight)``."""
    losses = nn.functional.cross_entropy(logits, target, reduction="none")
    return (losses * weight).sum() / weight.sum().clamp_min(1e-12)
