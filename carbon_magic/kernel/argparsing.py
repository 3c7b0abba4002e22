"""Argument parsing for the magics, on IPython's ``magic_arguments``: errors are one-line
``UsageError``s naming the magic, ``--help`` prints the help, nothing exits the kernel."""

from __future__ import annotations

import argparse
import shlex
from collections.abc import Sequence
from typing import Any, NoReturn

from IPython.core.error import UsageError
from IPython.core.magic_arguments import MagicArgumentParser


class HelpShown(Exception):
    """``--help`` printed a parser's help: the magic returns without doing anything."""


class CarbonArgumentParser(MagicArgumentParser):
    """IPython's magic parser whose errors name the magic (``%carbon report: ...``) and
    end with its usage, and whose ``--help`` prints the help instead of exiting."""

    def error(self, message: str) -> NoReturn:
        prog = self.prog if self.prog.startswith("%") else f"%{self.prog}"
        usage = self.format_usage().replace("::\n\n  %", "usage: %").strip()
        raise UsageError(f"{prog}: {message}\n{usage}")

    def exit(self, status: int = 0, message: str | None = None) -> NoReturn:
        if status == 0:
            raise HelpShown()
        raise UsageError(message or self.format_usage())


def parse_words(parser: argparse.ArgumentParser, words: Sequence[str], prog: str) -> Any:
    """``parser.parse_args(words)``, where every error is a one-line ``UsageError`` that
    starts with ``prog`` (IPython's own parser says only what is wrong)."""
    try:
        options, extra = parser.parse_known_args(list(words))
    except UsageError as error:
        text = str(error)
        raise UsageError(text if text.startswith(prog) else f"{prog}: {text}") from None
    if extra:  # named by the subcommand they were given to, when there is one
        subcommand = getattr(options, "subcommand", None)
        where = f"{prog} {subcommand}" if subcommand else prog
        joined = unit_given_apart(list(words), extra[0])
        if joined is not None:
            raise UsageError(f"{where}: attach the unit to the number: {joined}")
        raise UsageError(f"{where}: unrecognized arguments: {' '.join(extra)}")
    return options


# Unit words people type after a number, and the symbol the option takes.
_UNIT_WORDS = {
    "gram": "g",
    "grams": "g",
    "milligram": "mg",
    "milligrams": "mg",
    "kilogram": "kg",
    "kilograms": "kg",
    "joule": "J",
    "joules": "J",
}


def unit_given_apart(words: list[str], stray: str) -> str | None:
    """``--budget 5 grams``: an option's number and its unit given as two words, the
    unit left over. The joined form to suggest (``--budget 5g``), else None."""
    for at in range(2, len(words)):
        option, number = words[at - 2], words[at - 1]
        if words[at] == stray and option.startswith("-") and _is_number(number):
            unit = _UNIT_WORDS.get(stray.lower(), stray)
            return f"{option} {number}{unit}"
    return None


def _is_number(word: str) -> bool:
    try:
        float(word)
    except ValueError:
        return False
    return True


def split_words(line: str, prog: str) -> list[str]:
    """Split a magic's line like a shell does; an unclosed quote is a ``UsageError``."""
    try:
        return shlex.split(line)
    except ValueError as error:  # "No closing quotation", "No escaped character"
        raise UsageError(
            f"{prog}: cannot split the options ({str(error).lower()}): close every quote, "
            'e.g. --name "my cell"'
        ) from None


def join_value_options(words: list[str], options: tuple[str, ...]) -> list[str]:
    """``--budget -5g`` → ``--budget=-5g``: argparse takes a value that starts with ``-``
    for an option name ("expected one argument"); joined, the value reaches its parser."""
    joined: list[str] = []
    index = 0
    while index < len(words):
        word = words[index]
        if word in options and index + 1 < len(words) and words[index + 1].startswith("-"):
            following = words[index + 1]
            if not following.startswith("--") and not _is_short_option(following):
                joined.append(f"{word}={following}")
                index += 2
                continue
        joined.append(word)
        index += 1
    return joined


def _is_short_option(word: str) -> bool:
    """``-n``, ``-q``, ``-b`` (letters only): an option, not a negative value."""
    return len(word) == 2 and word[1].isalpha()
