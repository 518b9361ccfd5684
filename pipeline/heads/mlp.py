"""A small torch MLP head with early stopping on held-out images (groups), never on held-out tiles.

Tiles of one image look alike, so a validation split of rows would put near-copies of training tiles in the
validation set and stop training far too late: :func:`~pipeline.heads.torch_training.inner_split` holds out whole
groups.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from scipy.special import softmax
from sklearn.utils._param_validation import StrOptions
from torch import nn

from pipeline.heads.base import N_JOBS, NON_NEGATIVE, POSITIVE, Head, PositiveInts, at_least, fraction
from pipeline.heads.torch_training import inner_split, torch_threads, weighted_loss

logger = logging.getLogger(__name__)

_ACTIVATIONS = {"gelu": nn.GELU, "relu": nn.ReLU}
_PREDICT_CHUNK = 8192  # rows per forward pass at predict time; bounds memory on large inputs
_MIN_STEPS_PER_EPOCH = 10  # small training sets get smaller batches, so max_epochs is enough for them too
_MIN_IMPROVEMENT = 1e-4  # smaller drops in validation loss count as stale epochs, so near-zero losses still stop


def build_network(
    n_features: int, hidden_dims: tuple[int, ...], n_classes: int, activation: str, dropout: float
) -> nn.Sequential:
    """Return Linear -> activation -> Dropout per hidden layer, then Linear to ``n_classes`` logits."""
    layers: list[nn.Module] = []
    width = n_features
    for hidden in hidden_dims:
        layers += [nn.Linear(width, hidden), _ACTIVATIONS[activation](), nn.Dropout(dropout)]
        width = hidden
    layers.append(nn.Linear(width, n_classes))
    return nn.Sequential(*layers)


class MLPHead(Head):
    """Standardised inputs -> MLP -> class logits, trained with AdamW and class-weighted cross-entropy.

    Args:
        hidden_dims: Width of each hidden layer; (256,) is enough capacity for 768-d embeddings of a few
            thousand images, and one layer overfits less than two.
        activation: "gelu" or "relu". dropout: After each hidden layer; 0.25 regularises without slowing learning.
        lr, weight_decay: AdamW settings.
        batch_size: Rows per step at most; below 10 x batch_size training rows, batches shrink to keep 10 steps
            per epoch.
        max_epochs: Epoch cap, also the fixed length when early stopping is impossible (too few groups). 50 bounds
            a fit on 10,000 x 768 rows to about 7 s on two cores even if the validation loss keeps falling; with
            ``patience=10`` training usually stops well before.
        patience: Epochs without a lower validation loss before stopping; the best epoch's weights are kept.
        validation_fraction: Share of groups (images) held out for early stopping.
        class_weight: "balanced" or None. seed: Drives the split, the initial weights, shuffling and dropout.
        n_jobs: Torch threads during fit/predict (restored afterwards); None or -1 keeps torch's setting. On a
            busy machine 1 is safer: OpenMP threads that spin-wait for a descheduled sibling can make a fit 10x
            slower, and a second thread gains only about 25% here.
    """

    kind = "mlp"
    _parameter_constraints = {
        **Head._parameter_constraints,
        "hidden_dims": [PositiveInts()],
        "activation": [StrOptions(set(_ACTIVATIONS))],
        "dropout": [fraction("left")],
        "lr": [POSITIVE],
        "weight_decay": [NON_NEGATIVE],
        "batch_size": [at_least(1)],
        "max_epochs": [at_least(1)],
        "patience": [at_least(1)],
        "validation_fraction": [fraction("neither")],
        "n_jobs": N_JOBS,
    }

    def __init__(
        self,
        hidden_dims: tuple[int, ...] = (256,),
        activation: str = "gelu",
        dropout: float = 0.25,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        batch_size: int = 256,
        max_epochs: int = 50,
        patience: int = 10,
        validation_fraction: float = 0.15,
        class_weight: str | None = "balanced",
        seed: int = 0,
        n_jobs: int | None = None,
    ):
        self.hidden_dims = hidden_dims
        self.activation = activation
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.class_weight = class_weight
        self.seed = seed
        self.n_jobs = n_jobs

    def fit(self, X: Any, y: Any, groups: Any = None, sample_weight: Any = None) -> MLPHead:
        """Fit on X (n, d) and labels y (n,); ``groups`` (n,) keeps each image on one side of the inner split."""
        X, y_idx, weights = self._prepare_fit(X, y, sample_weight, dtype=np.float32)
        groups = np.arange(len(X)) if groups is None else np.asarray(groups)
        if groups.shape != (len(X),):
            raise ValueError(f"groups must have shape ({len(X)},) to match X; got {groups.shape}.")
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.std_ = np.where(std > 1e-6, std, 1.0).astype(np.float32)  # constant features stay finite
        train_mask, val_mask = inner_split(y_idx, groups, self.validation_fraction, self.seed)
        if not val_mask.any():
            logger.warning(
                "MLPHead: too few groups per class for a validation split; training a fixed %d epochs "
                "without early stopping.",
                self.max_epochs,
            )
        inputs = torch.from_numpy((X - self.mean_) / self.std_)
        target = torch.from_numpy(y_idx)
        weight = torch.from_numpy(np.ones(len(X)) if weights is None else weights).float()
        with torch.random.fork_rng(devices=[]), torch_threads(self.n_jobs):
            # The CPU generator drives init and dropout; fork_rng puts the caller's state back afterwards.
            torch.default_generator.manual_seed(self.seed)
            self.network_ = build_network(
                X.shape[1], tuple(self.hidden_dims), len(self.classes_), self.activation, self.dropout
            )
            self._train(inputs, target, weight, train_mask, val_mask)
        self.network_.eval()
        return self

    def _train(
        self,
        inputs: torch.Tensor,
        target: torch.Tensor,
        weight: torch.Tensor,
        train_mask: np.ndarray,
        val_mask: np.ndarray,
    ) -> None:
        """Run AdamW epochs; with a validation set, stop after ``patience`` stale epochs and keep the best one.

        Args:
            inputs: Standardised X, (n, d) float32. target: Class indices, (n,) int64. weight: Row weights, (n,).
            train_mask, val_mask: Bool (n,) from :func:`inner_split`; an empty ``val_mask`` means no early stopping.
        """
        train_idx, val_idx = torch.from_numpy(np.flatnonzero(train_mask)), torch.from_numpy(np.flatnonzero(val_mask))
        network = self.network_
        optimizer = torch.optim.AdamW(network.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        shuffle = torch.Generator().manual_seed(self.seed)
        batch_size = max(1, min(self.batch_size, len(train_idx) // _MIN_STEPS_PER_EPOCH))
        best_loss, best_state, stale = float("inf"), None, 0
        self.best_epoch_ = self.max_epochs
        for epoch in range(1, self.max_epochs + 1):
            network.train()
            order = train_idx[torch.randperm(len(train_idx), generator=shuffle)]
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                loss = weighted_loss(network(inputs[batch]), target[batch], weight[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            self.n_epochs_ = epoch
            if len(val_idx) == 0:
                continue
            network.eval()
            with torch.no_grad():
                val_loss = weighted_loss(network(inputs[val_idx]), target[val_idx], weight[val_idx]).item()
            if val_loss < best_loss - _MIN_IMPROVEMENT:
                best_loss, self.best_epoch_, stale = val_loss, epoch, 0
                best_state = {key: value.clone() for key, value in network.state_dict().items()}
            else:
                stale += 1
                if stale >= self.patience:
                    break
        if best_state is not None:
            network.load_state_dict(best_state)
        logger.debug("MLPHead: %d epochs run, best epoch %d", self.n_epochs_, self.best_epoch_)

    def predict_proba(self, X: Any) -> np.ndarray:
        """Return class probabilities, shape (n, n_classes), float64, columns in ``classes_`` order."""
        X = (self._check_X(X, dtype=np.float32) - self.mean_) / self.std_
        logits = []
        with torch.no_grad(), torch_threads(self.n_jobs):
            for start in range(0, len(X), _PREDICT_CHUNK):
                logits.append(self.network_(torch.from_numpy(X[start : start + _PREDICT_CHUNK])).numpy())
        # float64 softmax so that rows sum to 1 to double precision
        return softmax(np.concatenate(logits).astype(np.float64), axis=1).reshape(len(X), len(self.classes_))

    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Return JSON-ready metadata and named arrays (weights as ``net.<name>``, input mean and std)."""
        meta, arrays = self._base_state()
        meta.update(n_epochs=self.n_epochs_, best_epoch=self.best_epoch_)
        arrays.update(mean=self.mean_, std=self.std_)
        arrays.update({f"net.{key}": value.numpy().copy() for key, value in self.network_.state_dict().items()})
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict, arrays: dict[str, np.ndarray]) -> MLPHead:
        """Rebuild a fitted head from :meth:`to_state` output."""
        meta = {**meta, "params": {**meta["params"], "hidden_dims": tuple(meta["params"]["hidden_dims"])}}
        head = cls._restore(meta, arrays)
        head.mean_, head.std_ = arrays["mean"], arrays["std"]
        head.n_epochs_, head.best_epoch_ = int(meta["n_epochs"]), int(meta["best_epoch"])
        head._check_params()
        with torch.random.fork_rng(devices=[]):  # the random init is overwritten; keep the caller's RNG untouched
            head.network_ = build_network(
                head.n_features_in_, head.hidden_dims, len(head.classes_), head.activation, head.dropout
            )
        state = {key[len("net.") :]: torch.from_numpy(value) for key, value in arrays.items() if key.startswith("net.")}
        head.network_.load_state_dict(state)  # strict: a missing or misshapen tensor raises
        head.network_.eval()
        return head
