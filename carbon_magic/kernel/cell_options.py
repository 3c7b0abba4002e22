"""``%%carbon``'s options: declared once, here, for both the magic's help (``%%carbon?``)
and the parser that reads a cell's line."""

from __future__ import annotations

import argparse
from dataclasses import dataclass
from typing import Any

from IPython.core.error import UsageError
from IPython.core.magic_arguments import ArgDecorator, MagicArgumentParser, argument

from carbon_magic.kernel.argparsing import join_value_options, parse_words, split_words
from carbon_magic.kernel.budget import Budget, parse_budget

ON_EXCEED = ("warn", "stop")  # what a budget does when exceeded; the first is the default

CELL_ARGUMENTS: tuple[argument, ...] = (
    argument("--name", "-n", help="a name for the cell in reports"),
    argument(
        "--budget",
        "-b",
        metavar="LIMIT",
        help="a limit: grams CO2e (µg, mg, g, kg, Mg, t) or energy (J, kJ, µWh, mWh, Wh, "
        "kWh, MWh), e.g. 5g; mWh and MWh, mg and Mg differ by case",
    ),
    argument(
        "--on-exceed",
        choices=ON_EXCEED,
        default=ON_EXCEED[0],
        help="warn (default): mark the panel and print once; stop: interrupt the cell (a "
        "SIGINT, as a kernel interrupt: sleeps and I/O end too; a native call ends first) "
        'and record "stopped by budget" and how far over it ran',
    ),
    argument(
        "--predict",
        "-p",
        action="store_true",
        help="act on the budget as soon as the low end of the predicted total is over it "
        '(after 10 %% of the work or 30 s); a stop is recorded as "stopped by budget '
        '(predicted)". Needs --budget.',
    ),
    argument("--quiet", "-q", action="store_true", help="no panel; one summary line at the end"),
)


class cell_arguments(ArgDecorator):  # noqa: N801 - named like IPython's decorators
    """A ``magic_arguments`` decorator adding ``%%carbon``'s options to the magic."""

    def add_to_parser(self, parser: argparse.ArgumentParser, group: Any) -> None:
        for option in CELL_ARGUMENTS:
            option.add_to_parser(parser, group)


def cell_parser() -> argparse.ArgumentParser:
    """A parser of ``%%carbon``'s line, as the magic's own (``magic_arguments``) is."""
    parser = MagicArgumentParser("%carbon")
    cell_arguments().add_to_parser(parser, None)
    return parser


_PARSER = cell_parser()


@dataclass
class CellOptions:
    """``%%carbon``'s parsed options."""

    name: str | None
    budget: Budget | None
    on_exceed: str
    quiet: bool
    predict: bool = False  # act on the predicted total (needs a budget)


def parse_options(line: str) -> CellOptions:
    """Parse ``%%carbon``'s line with the options declared here; every bad option is a
    one-line ``UsageError``."""
    words = join_value_options(split_words(line, "%%carbon"), ("--budget", "-b"))
    args = parse_words(_PARSER, words, "%%carbon")
    budget = None
    if args.budget is not None:
        try:
            budget = parse_budget(args.budget)
        except ValueError as error:
            raise UsageError(f"%%carbon: {error}") from None
    if args.predict and budget is None:
        raise UsageError(
            "%%carbon: --predict acts on a budget: give --budget too, e.g. "
            "--budget 5g --predict (the prediction itself is shown without any option)"
        )
    return CellOptions(args.name, budget, args.on_exceed, args.quiet, args.predict)
