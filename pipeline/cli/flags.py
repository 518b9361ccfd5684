"""Command-line flags generated from the settings dataclasses, and the dataclasses built back from parsed flags.

A field declared with :func:`pipeline.flags.setting` becomes one flag whose default, help text and choices are the
field's; a :func:`pipeline.flags.nested` field (tiling, hygiene thresholds) adds its own fields' flags. Fields
without a flag (library-only settings) keep their default.
"""

from __future__ import annotations

import argparse
import dataclasses
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from pipeline.flags import FLAG, Flag


def field_default(field: dataclasses.Field) -> Any:
    """The default of a dataclass field (its factory called when it has one)."""
    return field.default_factory() if field.default is dataclasses.MISSING else field.default


def flag_name(field: dataclasses.Field, flag: Flag) -> str:
    """``--data``, ``--tile-size``, ``--no-pictures``: the flag of ``field``."""
    if flag.name:
        return flag.name
    negated = field_default(field) is True and flag.parse is None
    return "--" + ("no-" if negated else "") + field.name.replace("_", "-")


def _dest(name: str) -> str:
    return name.lstrip("-").replace("-", "_")


def _show(flag: Flag, default: Any) -> str:
    if flag.show is not None:
        return flag.show(default)
    if isinstance(default, (list, tuple)):
        return " ".join(map(str, default))
    return str(default)


def _type_of(default: Any) -> Any:
    """The argparse ``type`` for a default: Path, int, float or str; None (strings) for None and sequences."""
    if default is None or isinstance(default, (tuple, list)):
        return None
    return Path if isinstance(default, Path) else type(default)


def add_arguments(parser: Any, cls: type, only: Iterable[str] | None = None, skip: Iterable[str] = ()) -> None:
    """Add the flags of ``cls``'s fields (and of its nested settings) to ``parser`` (a parser or an argument group).

    Args:
        parser: Where the flags go.
        cls: A settings dataclass whose fields carry :class:`~pipeline.flags.Flag` metadata.
        only: Add only these fields (None: every field with a flag). skip: Leave these fields out.
    """
    wanted = None if only is None else set(only)
    for field in dataclasses.fields(cls):
        if field.name in skip:
            continue
        if field.metadata.get("nested") and wanted is None:
            add_arguments(parser, type(field_default(field)), skip=skip)
            continue
        flag = field.metadata.get(FLAG)
        if flag is None or (wanted is not None and field.name not in wanted):
            continue
        default = field_default(field)
        name = flag_name(field, flag)
        unset = default is None or isinstance(default, bool) or default in ((), "")
        text = flag.help if "default" in flag.help or unset else (
            f"{flag.help} (default: {_show(flag, default)})"
        )
        if isinstance(default, bool) and flag.parse is None:
            parser.add_argument(name, action="store_true", help=flag.help.replace("%", "%%"))
            continue
        kwargs: dict[str, Any] = {"help": text.replace("%", "%%"), "metavar": flag.metavar, "choices": flag.choices}
        if flag.nargs:
            kwargs["nargs"] = flag.nargs
        if flag.parse is not None:
            kwargs["default"] = _show(flag, default) if default else None
        elif flag.optional:
            kwargs["default"], kwargs["type"] = None, flag.type or _type_of(default)
        else:
            if flag.nargs:  # argparse gives a list: so does the default
                default = list(default) if isinstance(default, (tuple, list)) else [default]
            kwargs["default"] = default
            kwargs["type"] = flag.type or _type_of(default)
        kwargs = {key: value for key, value in kwargs.items() if value is not None or key == "default"}
        parser.add_argument(name, **kwargs)


def settings_from(cls: type, args: argparse.Namespace, **given: Any) -> Any:
    """``cls`` built from parsed flags: each field with a flag from its flag, nested settings likewise.

    Args:
        cls: The settings dataclass. args: The parsed flags. given: Fields set by the caller instead (they win).
    """
    values: dict[str, Any] = {}
    for field in dataclasses.fields(cls):
        if field.name in given:
            continue
        if field.metadata.get("nested"):
            values[field.name] = settings_from(type(field_default(field)), args)
            continue
        flag = field.metadata.get(FLAG)
        if flag is None or not hasattr(args, _dest(flag_name(field, flag))):
            continue
        name = flag_name(field, flag)
        value = getattr(args, _dest(name))
        if isinstance(field_default(field), bool) and flag.parse is None:
            values[field.name] = not value if name.startswith("--no-") else value
        elif value is None and (flag.parse is not None or flag.optional):
            continue  # not given: the field's default
        elif flag.parse is not None:
            values[field.name] = flag.parse(value)
        else:
            values[field.name] = tuple(value) if isinstance(value, list) else value
    return cls(**values, **given)
