"""The options ``%carbon`` and the ``carbon-magic`` command share, declared once.

``%carbon report``/``export``/``plot`` and ``carbon-magic report``/``export``/``plot`` do
the same things over the same ledger, so the options they have in common are the same
objects here: one spelling, one help text, one check of the value (a bad value is
refused with the same message in a notebook and on a command line). Each side adds them
to its own parser: the CLI with ``Option.add_to``, the magic as IPython ``argument``s
built from ``Option.flags`` and ``Option.settings``.
"""

from __future__ import annotations

import argparse
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from carbon_magic.reports.export import DEFAULT_FORMAT, FORMATS
from carbon_magic.reports.report import parse_since


@dataclass(frozen=True)
class Option:
    """One command-line option: its flags (or positional name) and the keywords of
    ``argparse.ArgumentParser.add_argument``."""

    flags: tuple[str, ...]
    settings: Mapping[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "settings", MappingProxyType(dict(self.settings)))

    def but(self, **changes: Any) -> Option:
        """The same option with some keywords changed (e.g. ``required=True``)."""
        return Option(self.flags, {**self.settings, **changes})

    def add_to(self, parser: argparse.ArgumentParser | Any) -> None:
        """Add the option to ``parser`` (a parser or an argument group)."""
        parser.add_argument(*self.flags, **self.settings)


def positive_count(text: str) -> int:
    """A whole number of at least 1, as typed; raises ``argparse.ArgumentTypeError``."""
    try:
        value = int(text)
    except ValueError:
        value = 0
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive whole number (got {text!r})")
    return value


def moment(text: str) -> float:
    """A point in time as typed (``2024-05-01``, ``today``, ``30m``...), as UTC epoch
    seconds; raises ``argparse.ArgumentTypeError`` naming the accepted forms."""
    try:
        return parse_since(text)
    except ValueError as error:
        raise argparse.ArgumentTypeError(str(error)) from None


WHEN_FORMS = "2024-05-01, 2024-05-01T14:30, today, yesterday, 30m, 1h, 7d"

TOP = Option(
    ("--top",), {"type": positive_count, "metavar": "N", "help": "only the N heaviest cells"}
)
SINCE = Option(
    ("--since",),
    {
        "type": moment,
        "metavar": "WHEN",
        "help": f"only cells started at or after WHEN: {WHEN_FORMS}",
    },
)
UNTIL = Option(
    ("--until",),
    {**SINCE.settings, "help": "only cells started before WHEN (same forms)"},
)
EXPORT_PATH = Option(
    ("path",),
    {
        "metavar": "PATH",
        "help": "file to write (a folder gets a default name; - is standard output; a "
        "character device or FIFO is written through, never replaced)",
    },
)
EXPORT_FORMAT = Option(
    ("--format",), {"choices": FORMATS, "default": DEFAULT_FORMAT, "help": "default: %(default)s"}
)
FORCE = Option(("--force",), {"action": "store_true", "help": "overwrite an existing file"})
SAVE = Option(
    ("--save",), {"metavar": "PATH", "help": "write the figure to PATH (.png, .svg, .pdf)"}
)
