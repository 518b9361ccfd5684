"""The table of classification heads: ``make_head(name)`` gives an unfitted scikit-learn style classifier.

Every head follows one contract (:class:`pipeline.heads.base.Head`): ``fit(X, y, groups=None, sample_weight=None)``;
``predict_proba`` with one float64 column per class in ``classes_`` order; ``class_weight="balanced"`` with
scikit-learn's meaning; and pickle-free persistence (:mod:`pipeline.heads.persistence`). Each head's module is
imported only when the head is used, so the linear head does not pay for importing torch or LightGBM, and
``--help`` stays fast. The table also writes the ``--head`` help text and its error message.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import TYPE_CHECKING

from pipeline.errors import ConfigError

if TYPE_CHECKING:  # base imports scikit-learn: the table itself (--help) must not
    from pipeline.heads.base import Head


@dataclass(frozen=True)
class HeadEntry:
    """One row of the table.

    Attributes:
        name: The ``--head`` value.
        module: Module that defines the head class, imported on first use.
        class_name: The :class:`Head` subclass.
        summary: One line for ``--help``.
        threads: Whether the head takes ``n_jobs`` (torch or OpenMP threads).
        bags: Whether the head takes whole images as bags of tiles (``fit(X, y, bag_index, groups)``), whatever
            ``--level`` says; the others take one row per tile or per image.
    """

    name: str
    module: str
    class_name: str
    summary: str
    threads: bool = True
    bags: bool = False


HEADS = (
    HeadEntry("logreg", "pipeline.heads.logreg", "LogRegHead", "multinomial logistic regression on standardised "
              "inputs", threads=False),
    HeadEntry("lgbm", "pipeline.heads.lgbm", "LGBMHead", "LightGBM gradient-boosted trees"),
    HeadEntry("mlp", "pipeline.heads.mlp", "MLPHead", "one-hidden-layer torch MLP, early stopping on held-out images"),
    HeadEntry("abmil", "pipeline.heads.abmil", "ABMILHead", "gated attention multiple-instance learning: each "
              "image's tiles as one bag, whatever --level says", bags=True),
)
HEAD_NAMES = tuple(entry.name for entry in HEADS)


def head_entry(name: str) -> HeadEntry:
    """The table row of a head.

    Raises:
        ConfigError: Unknown name.
    """
    for entry in HEADS:
        if entry.name == name:
            return entry
    raise ConfigError(f"The 'head' parameter must be one of {', '.join(HEAD_NAMES)}. Got {name!r} instead.")


def head_class(name: str) -> type[Head]:
    """The class of a head, its module imported now."""
    entry = head_entry(name)
    return getattr(importlib.import_module(entry.module), entry.class_name)


def heads_help() -> str:
    """``--head`` help text: every head with its one-line summary."""
    return "; ".join(f"{entry.name}: {entry.summary}" for entry in HEADS)


def make_head(name: str, *, class_weight: str | None = "balanced", seed: int = 0, n_jobs: int | None = None) -> Head:
    """Return an unfitted head by name (``n_jobs``, unless None, applies to heads that use threads).

    Raises:
        ConfigError: Unknown name.
    """
    entry = head_entry(name)
    extra = {"n_jobs": n_jobs} if entry.threads and n_jobs is not None else {}  # None: the head's own default
    return head_class(name)(class_weight=class_weight, seed=seed, **extra)
