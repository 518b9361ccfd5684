"""Package attributes imported on first use (PEP 562), so that importing one light module stays cheap.

``--help`` reads flag choices from packages whose other modules pull in torch, scikit-learn or h5py; a package whose
``__init__`` imported everything would make every ``--help`` pay for them.
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from typing import Any


def lazy_exports(package: str, api: dict[str, str], namespace: dict[str, Any]) -> tuple[Callable, Callable]:
    """The ``__getattr__`` and ``__dir__`` of a package whose public names are imported on first use.

    Args:
        package: The package's ``__name__``, e.g. ``pipeline.cache``.
        api: Public name -> the module that defines it, relative to the package (``"folder"``, ``"extract.run"``).
        namespace: The package's ``globals()``: a name, once imported, is kept there and not looked up again.

    Returns:
        ``(__getattr__, __dir__)``. A name outside ``api`` is tried as a submodule (``pipeline.cache.store`` used as
        an attribute before anyone imported it), else raises :class:`AttributeError`.
    """

    def __getattr__(name: str) -> Any:
        if name in api:
            value = getattr(importlib.import_module(f"{package}.{api[name]}"), name)
            namespace[name] = value
            return value
        try:
            return importlib.import_module(f"{package}.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"{package}.{name}":  # the submodule exists but a package it imports is missing
                raise
            raise AttributeError(f"module {package!r} has no attribute {name!r}") from None

    def __dir__() -> list[str]:
        return sorted({*namespace, *api})

    return __getattr__, __dir__
