"""Gated attention multiple-instance learning over each image's tiles: a head that sees images as bags of tiles.

Each image is a bag of tile embeddings with one label. The network projects every tile, scores it with a gated
attention branch, turns the scores into weights with a softmax within the bag and classifies the weighted sum
(:class:`pipeline.heads.bags.GatedAttentionMIL`). When the class lives in one or two tiles of many, attention picks
them out, where votes over tiles that all inherit the image's label average the signal away. The weights double as a
map of which tiles decided the prediction (:meth:`ABMILHead.predict_bags`).

Bags of any size, bounded memory: a training step takes at most ``max_train_tiles`` tiles of each bag (a slide's
thousands are sampled afresh every epoch by a seeded generator; smaller bags give all theirs, so images of the
challenge's size train exactly as before); validation and prediction use every tile, in passes of at most
``_PREDICT_TILES`` padded tiles, and a bag larger than that is scored chunk by chunk (:func:`pool_in_chunks`).

Bag interface: X holds all tiles, (n_tiles, D); ``bag_index`` (n_tiles,) says which bag (image) each tile belongs
to; y, ``groups`` and ``sample_weight`` have one entry per bag. Without ``bag_index`` every row is a bag of one tile,
so the head also works as a plain scikit-learn classifier.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np
import torch
from scipy.special import softmax
from sklearn.utils.validation import check_array

from pipeline.errors import ConfigError
from pipeline.heads.bags import BagPrediction, Bags, GatedAttentionMIL, check_bag_index, pool_in_chunks
from pipeline.heads.base import N_JOBS, NON_NEGATIVE, POSITIVE, Head, at_least, fraction
from pipeline.heads.torch_training import inner_split, torch_threads, weighted_loss

logger = logging.getLogger(__name__)

_PREDICT_TILES = 65_536  # padded tiles per forward pass at predict time; bounds memory whatever the bag sizes
_MIN_STEPS_PER_EPOCH = 10  # small training sets get smaller batches, as in MLPHead
_MIN_IMPROVEMENT = 1e-4  # smaller drops in validation loss count as stale epochs


class ABMILHead(Head):
    """Gated attention MIL, trained with AdamW and class-weighted cross-entropy over bags; an average of members.

    Args:
        hidden_dim: Tile projection width. 128 holds the signal of 768-1280-d embeddings and keeps a fit on 1,000
            bags x 12 tiles x 768-d to about 2-3 s of CPU on one thread (projecting every tile is most of the cost).
        attention_dim: Width of the gated attention branches; half the projection.
        dropout: After the projection; 0.25 as in MLPHead.
        lr, weight_decay: AdamW settings; 1e-3 and 1e-2 as in MLPHead.
        batch_size: Bags per step at most (padded to the longest bag of the batch); below 10 x batch_size training
            bags, batches shrink to keep 10 steps per epoch.
        max_train_tiles: Tiles of one bag per training step at most: a larger bag (a slide) gives a sample of this
            many, drawn without replacement afresh each epoch (generator seeded by the member's seed), so a step
            holds at most batch_size x max_train_tiles tiles whatever the slides' sizes and an epoch costs at most
            max_train_tiles per bag; over the epochs every tile is seen. 512 is about 40x fewer than a 20,000-tile
            slide (docs/slides.md has the measured memory and time) and far more than any challenge image's tiles
            (12-100), whose training is unchanged. None: every tile (memory grows with the largest bags).
        max_epochs: Epoch cap, also the fixed length when early stopping is impossible (too few groups); small sets
            need more epochs than MLPHead's 50, while early stopping ends real fits after 10-20.
        patience: Epochs without a lower validation loss before stopping; the best epoch's weights are kept.
        validation_fraction: Share of groups (images) held out for early stopping.
        n_models: Members averaged (probabilities, tile probabilities and attention). Each member has its own
            seed, so its own initial weights, batches and early-stopping split. One network's cross-validated
            weighted F1 varied by 0.014 (sd) over seeds on the 360-image MIL benchmark, which an average damps; 3
            members is what fits the time budget (5-fold CV + final fit on 1,000 images x 12 tiles x 768-d in about
            45 s of one core). The number was fixed from that budget before the benchmark was run with it.
        class_weight: "balanced" or None. seed: Drives the members' seeds (member m uses ``seed * n_models + m``).
        n_jobs: Torch threads during fit/predict (restored afterwards); None or -1 keeps torch's setting. 1 by
            default: on a shared 2-core machine two threads made the 5-fold benchmark 1.5-5x slower (OpenMP threads
            spin while the other process holds the cores), and one thread is enough for these small matrices.
    """

    kind = "abmil"
    bags = True  # fit/predict take bag_index: evaluation hands this head whole images as bags of tiles
    _parameter_constraints = {
        **Head._parameter_constraints,
        "hidden_dim": [at_least(1)],
        "attention_dim": [at_least(1)],
        "dropout": [fraction("left")],
        "lr": [POSITIVE],
        "weight_decay": [NON_NEGATIVE],
        "batch_size": [at_least(1)],
        "max_train_tiles": [at_least(1), None],
        "max_epochs": [at_least(1)],
        "patience": [at_least(1)],
        "validation_fraction": [fraction("neither")],
        "n_models": [at_least(1)],
        "n_jobs": N_JOBS,
    }

    def __init__(
        self,
        hidden_dim: int = 128,
        attention_dim: int = 64,
        dropout: float = 0.25,
        lr: float = 1e-3,
        weight_decay: float = 1e-2,
        batch_size: int = 16,
        max_train_tiles: int | None = 512,
        max_epochs: int = 100,
        patience: int = 10,
        validation_fraction: float = 0.15,
        n_models: int = 3,
        class_weight: str | None = "balanced",
        seed: int = 0,
        n_jobs: int | None = 1,
    ):
        self.hidden_dim = hidden_dim
        self.attention_dim = attention_dim
        self.dropout = dropout
        self.lr = lr
        self.weight_decay = weight_decay
        self.batch_size = batch_size
        self.max_train_tiles = max_train_tiles
        self.max_epochs = max_epochs
        self.patience = patience
        self.validation_fraction = validation_fraction
        self.n_models = n_models
        self.class_weight = class_weight
        self.seed = seed
        self.n_jobs = n_jobs

    def fit(self, X: Any, y: Any, bag_index: Any = None, groups: Any = None, sample_weight: Any = None) -> ABMILHead:
        """Fit on bags.

        Args:
            X: (n_tiles, D) tile embeddings. y: (n_bags,) bag labels.
            bag_index: (n_tiles,) int bag of each tile, in [0, n_bags), every bag with a tile; None: one row per bag.
            groups: (n_bags,) duplicate-group ids; a group stays on one side of the early-stopping split.
            sample_weight: (n_bags,) non-negative weights, multiplied with the class weights.
        """
        self._check_params()
        if y is None:
            raise ValueError(f"{type(self).__name__} requires y to be passed, but the target y is None.")
        X = check_array(X, dtype=np.float32)
        n_bags = None if bag_index is None else len(np.asarray(y).reshape(-1))
        bag_index, n_bags = check_bag_index(len(X), bag_index, n_bags)
        y_idx, weights = self._prepare_targets(y, n_bags, sample_weight, rows="the bags")
        self.n_features_in_ = X.shape[1]
        groups = np.arange(n_bags) if groups is None else np.asarray(groups)
        if groups.shape != (n_bags,):
            raise ValueError(f"groups must have one id per bag, shape ({n_bags},); got {groups.shape}.")
        # Standardised over all training tiles (a constant feature stays finite), as MLPHead does.
        self.mean_ = X.mean(axis=0)
        std = X.std(axis=0)
        self.std_ = np.where(std > 1e-6, std, 1.0).astype(np.float32)
        bags = Bags(self._standardised(X), bag_index, n_bags)
        target = torch.from_numpy(y_idx)
        weight = torch.from_numpy(np.ones(n_bags) if weights is None else weights).float()
        self.networks_, self.n_epochs_, self.best_epoch_ = [], [], []
        for member in range(self.n_models):
            seed = self.seed * self.n_models + member
            train_mask, val_mask = inner_split(y_idx, groups, self.validation_fraction, seed)
            if not val_mask.any() and member == 0:
                logger.warning("ABMILHead: too few groups per class for a validation split; training a fixed %d "
                               "epochs without early stopping.", self.max_epochs)
            with torch.random.fork_rng(devices=[]), torch_threads(self.n_jobs):
                # The CPU generator drives init and dropout; fork_rng puts the caller's state back afterwards.
                torch.default_generator.manual_seed(seed)
                network = self._build()
                epochs, best = self._train(network, bags, target, weight, np.flatnonzero(train_mask),
                                           np.flatnonzero(val_mask), seed)
            network.eval()
            self.networks_.append(network)
            self.n_epochs_.append(epochs)
            self.best_epoch_.append(best)
        return self

    def _standardised(self, X: np.ndarray) -> np.ndarray:
        """(n_tiles, D) float32 ``(X - mean_) / std_`` in one new array: a slide cohort's tiles are copied only once."""
        standardised = X - self.mean_
        standardised /= self.std_
        return standardised

    def _build(self) -> GatedAttentionMIL:
        return GatedAttentionMIL(self.n_features_in_, self.hidden_dim, self.attention_dim, len(self.classes_),
                                 self.dropout)

    def _train(self, network: GatedAttentionMIL, bags: Bags, target: torch.Tensor, weight: torch.Tensor,
               train: np.ndarray, val: np.ndarray, seed: int) -> tuple[int, int]:
        """Run AdamW epochs over minibatches of bags; with validation bags, stop after ``patience`` stale epochs.

        Args:
            network: The member to train, in place. bags: Standardised tiles.
            target: (n_bags,) int64 class indices. weight: (n_bags,) float32 bag weights.
            train, val: Bag indices from :func:`inner_split`; an empty ``val`` means no early stopping.
            seed: Seed of the batch order and, on its own stream, of the tiles sampled from large bags.

        Returns:
            Epochs run and the epoch whose weights are kept.
        """
        optimizer = torch.optim.AdamW(network.parameters(), lr=self.lr, weight_decay=self.weight_decay)
        shuffle = np.random.default_rng(seed)
        # its own stream: drawn only for bags over max_train_tiles, so the batch order of small bags is as before
        sampler = np.random.default_rng([seed, 1])
        batch_size = max(1, min(self.batch_size, len(train) // _MIN_STEPS_PER_EPOCH))
        val_chunks = bags.chunks(val, _PREDICT_TILES) if len(val) else []  # every tile, bounded passes
        best_loss, best_state, best_epoch, stale, epoch = float("inf"), None, self.max_epochs, 0, 0
        for epoch in range(1, self.max_epochs + 1):
            network.train()
            order = shuffle.permutation(train)
            for start in range(0, len(order), batch_size):
                batch = order[start : start + batch_size]
                logits = network(*bags.batch(batch, self.max_train_tiles, sampler))[0]
                loss = weighted_loss(logits, target[batch], weight[batch])
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
            if not val_chunks:
                continue
            network.eval()
            with torch.no_grad():
                logits = torch.cat([_pooled(network, bags, chunk)[0] for chunk in val_chunks])
                rows = np.concatenate(val_chunks)
                val_loss = weighted_loss(logits, target[rows], weight[rows]).item()
            if val_loss < best_loss - _MIN_IMPROVEMENT:
                best_loss, best_epoch, stale = val_loss, epoch, 0
                best_state = {key: value.clone() for key, value in network.state_dict().items()}
            else:
                stale += 1
                if stale >= self.patience:
                    break
        if best_state is not None:
            network.load_state_dict(best_state)
        logger.debug("ABMILHead: %d epochs run, best epoch %d", epoch, best_epoch)
        return epoch, best_epoch

    def predict_bags(self, X: Any, bag_index: Any = None, n_bags: int | None = None) -> BagPrediction:
        """Bag probabilities, each tile's own probabilities and attention, averaged over the members.

        Args:
            X: (n_tiles, D). bag_index: (n_tiles,) int bag of each tile (None: one row per bag).
            n_bags: Number of bags (default ``bag_index.max() + 1``); every bag needs a tile.
        """
        X = self._standardised(self._check_X(X, dtype=np.float32))
        bag_index, n_bags = check_bag_index(len(X), bag_index, n_bags)
        bags = Bags(X, bag_index, n_bags)
        n_classes = len(self.classes_)
        proba, tile_proba, attention = np.zeros((n_bags, n_classes)), np.zeros((len(X), n_classes)), np.zeros(len(X))
        chunks = bags.chunks(np.arange(n_bags), _PREDICT_TILES)
        with torch.no_grad(), torch_threads(self.n_jobs):
            for network in self.networks_:
                for chunk in chunks:
                    logits, weights, tile_logits, mask = _pooled(network, bags, chunk)
                    rows = bags.rows(chunk, mask)
                    # float64 softmax so that rows sum to 1 to double precision
                    proba[chunk] += softmax(logits.numpy().astype(np.float64), axis=1)
                    tile_proba[rows] += softmax(tile_logits[mask].astype(np.float64), axis=1)
                    attention[rows] += weights[mask]
        n = len(self.networks_)
        inverse = np.empty_like(bags.order)
        inverse[bags.order] = np.arange(len(X))  # sorted row -> X row
        return BagPrediction(proba / n, tile_proba[inverse] / n, attention[inverse] / n)

    def predict_proba(self, X: Any, bag_index: Any = None, n_bags: int | None = None) -> np.ndarray:
        """Class probabilities per bag, shape (n_bags, C), float64, columns in ``classes_`` order."""
        return self.predict_bags(X, bag_index, n_bags).proba

    def predict(self, X: Any, bag_index: Any = None, n_bags: int | None = None) -> np.ndarray:
        """The most probable class per bag, shape (n_bags,), drawn from ``classes_``."""
        proba = self.predict_proba(X, bag_index, n_bags)  # first: it raises NotFittedError on an unfitted head
        return self.classes_[np.argmax(proba, axis=1)]

    def to_state(self) -> tuple[dict, dict[str, np.ndarray]]:
        """Return JSON-ready metadata and named arrays (member m's weights as ``net<m>.<name>``, input mean, std)."""
        meta, arrays = self._base_state()
        meta.update(n_epochs=self.n_epochs_, best_epoch=self.best_epoch_)
        arrays.update(mean=self.mean_, std=self.std_)
        for m, network in enumerate(self.networks_):
            arrays.update({f"net{m}.{key}": value.numpy().copy() for key, value in network.state_dict().items()})
        return meta, arrays

    @classmethod
    def from_state(cls, meta: dict, arrays: dict[str, np.ndarray]) -> ABMILHead:
        """Rebuild a fitted head from :meth:`to_state` output."""
        head = cls._restore(meta, arrays)
        head._check_params()
        head.mean_, head.std_ = arrays["mean"], arrays["std"]
        head.n_epochs_, head.best_epoch_ = [int(e) for e in meta["n_epochs"]], [int(e) for e in meta["best_epoch"]]
        if len(head.n_epochs_) != head.n_models:
            raise ConfigError(f"The state holds {len(head.n_epochs_)} members for n_models={head.n_models}.")
        head.networks_ = []
        for m in range(head.n_models):
            with torch.random.fork_rng(devices=[]):  # the random init is overwritten; keep the caller's RNG as is
                network = head._build()
            prefix = f"net{m}."
            state = {key[len(prefix):]: torch.from_numpy(value) for key, value in arrays.items()
                     if key.startswith(prefix)}
            network.load_state_dict(state)  # strict: a missing or misshapen tensor raises
            network.eval()
            head.networks_.append(network)
        return head


def _pooled(
    network: GatedAttentionMIL, bags: Bags, chunk: np.ndarray
) -> tuple[torch.Tensor, np.ndarray, np.ndarray, np.ndarray]:
    """Score a chunk of bags from :meth:`Bags.chunks` (no gradient needed) in passes of at most _PREDICT_TILES tiles.

    One padded pass, or, for a lone bag of more tiles, :func:`pool_in_chunks`.

    Returns:
        Logits (B, C), attention (B, L) and tile logits (B, L, C) as numpy, mask (B, L) bool.
    """
    if len(chunk) == 1 and bags.counts[chunk[0]] > _PREDICT_TILES:
        start = int(bags.starts[chunk[0]])
        logits, weights, tile_logits = pool_in_chunks(
            network, bags.tiles[start : start + int(bags.counts[chunk[0]])], _PREDICT_TILES)
        return logits[None], weights.numpy()[None], tile_logits.numpy()[None], np.ones((1, len(weights)), bool)
    tiles, mask = bags.batch(chunk)
    logits, weights, tile_logits = network(tiles, mask, with_tiles=True)
    return logits, weights.numpy(), tile_logits.numpy(), mask.numpy()
