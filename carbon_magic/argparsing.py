"""Argument parsing for the magics: errors are one-line ``UsageError``s, never exits."""

from __future__ import annotations

import argparse
import shlex

from IPython.core.error import UsageError


class ArgumentParser(argparse.ArgumentParser):
    """argparse that raises ``UsageError`` instead of exiting the kernel."""

    def error(self, message: str) -> None:  # type: ignore[override]
        raise UsageError(f"{self.prog}: {message}\n{self.format_usage().strip()}")

    def exit(self, status: int = 0, message: str | None = None) -> None:  # type: ignore[override]
        raise UsageError(message or self.format_usage())


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
