"""Settings fields that carry their command-line flag, so that a setting's default, help and choices live once.

Each stage's settings dataclass declares its fields with :func:`setting`; :mod:`pipeline.cli.flags` turns those
fields into argparse flags (default, help, choices from the field) and the parsed flags back into the dataclass.
Nothing here imports argparse's callers or a heavy package, so ``--help`` stays fast.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

FLAG = "flag"  # the key of a field's metadata that holds its :class:`Flag`


@dataclass(frozen=True)
class Flag:
    """How one settings field appears on the command line.

    Attributes:
        help: The flag's help text; the default is appended by the CLI unless the text already says it.
        name: The flag, e.g. ``--data``; None: ``--<field-name>``, and ``--no-<field-name>`` for a bool that defaults
            to True.
        choices: The values accepted, or None.
        metavar: The placeholder in ``--help``.
        nargs: argparse's ``nargs`` (``"+"``: one or more values, given to the dataclass as a tuple).
        type: Turns one command-line string into a value as argparse parses (argparse's ``type``); None: the
            default's type.
        parse: Turns the parsed string into the setting when the settings are built (so that its error is a
            :class:`~pipeline.errors.ConfigError`, e.g. a comma-separated list); the flag's own default is then
            ``show(default)``, or None for an empty default.
        show: Turns the default into the text ``--help`` shows; None: ``str``.
        optional: The flag's own default is None (so that the CLI sees whether it was given, e.g. ``--tile-size``
            beside ``--mpp``); not giving it means the field's default.
    """

    help: str
    name: str | None = None
    choices: tuple | None = None
    metavar: str | None = None
    nargs: str | None = None
    type: Callable[[str], Any] | None = None
    parse: Callable[[str], Any] | None = None
    show: Callable[[Any], str] | None = None
    optional: bool = False


def setting(default: Any = dataclasses.MISSING, *, factory: Any = dataclasses.MISSING, **flag: Any) -> Any:
    """A dataclass field with its default and its flag (the keywords of :class:`Flag`), declared in one place."""
    return dataclasses.field(default=default, default_factory=factory, metadata={FLAG: Flag(**flag)})


def nested(factory: Callable[[], Any]) -> Any:
    """A field holding another settings dataclass whose own fields are flags of the same command line."""
    return dataclasses.field(default_factory=factory, metadata={"nested": True})


def comma_separated(text: str) -> tuple[str, ...]:
    """``"a, b,,c"`` -> ``("a", "b", "c")``: a comma-separated flag value as a tuple of its non-empty items."""
    return tuple(value.strip() for value in text.split(",") if value.strip())
