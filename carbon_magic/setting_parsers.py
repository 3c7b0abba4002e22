"""Parsers of setting values: each takes what a user wrote (text from the environment or
the magics, or a Python value) and returns the value, or raises ``ValueError`` saying
what is valid. A parser with a fixed set of choices keeps them on ``.choices`` for help
texts."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from carbon_magic.vocabulary import GPU_VENDORS

TRUE_WORDS = {"1", "on", "true", "yes"}
FALSE_WORDS = {"0", "off", "false", "no"}


class ChoiceParser:
    """Parses one of ``choices`` (case-insensitive), kept on it for help texts."""

    def __init__(self, choices: tuple[str, ...]) -> None:
        self.choices: tuple[str, ...] | None = choices

    def __call__(self, value: Any) -> str:
        text = str(value).strip().lower()
        if self.choices is not None and text not in self.choices:
            raise ValueError(f"must be one of {', '.join(self.choices)} (got {value!r})")
        return text


def choice(*choices: str) -> ChoiceParser:
    return ChoiceParser(choices)


def number(low: float | None = None, high: float | None = None) -> Callable[[Any], float]:
    def parse(value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            raise ValueError(f"must be a number{range_text(low, high)} (got {value!r})") from None
        if (
            number != number
            or (low is not None and number < low)
            or (high is not None and number > high)
        ):
            raise ValueError(f"must be a number{range_text(low, high)} (got {value!r})")
        return number

    return parse


def positive_number(high: float) -> Callable[[Any], float]:
    """A number above 0 and up to ``high`` (NaN and infinities refused)."""

    def parse(value: Any) -> float:
        try:
            number = float(value)
        except (TypeError, ValueError):
            number = float("nan")
        if isinstance(value, bool) or not (0 < number <= high):
            raise ValueError(f"must be a number above 0 and up to {high:g} (got {value!r})")
        return number

    return parse


def range_text(low: float | None, high: float | None) -> str:
    if low is not None and high is not None:
        return f" from {low:g} to {high:g}"
    if low is not None:
        return f" of at least {low:g}"
    if high is not None:
        return f" of at most {high:g}"
    return ""


def boolean(value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in TRUE_WORDS:
        return True
    if text in FALSE_WORDS:
        return False
    raise ValueError(f"must be on or off (also true/false, yes/no, 1/0) (got {value!r})")


def text(value: Any) -> str:
    text = str(value).strip()
    if not text:
        raise ValueError("must not be empty")
    return text


class OptionalParser:
    """Lets ``None``, ``""``, ``auto`` or ``none`` mean "not set, work it out", else
    parses with ``parse``; keeps ``parse``'s choices, if it has any."""

    def __init__(self, parse: Callable[[Any], Any]) -> None:
        self.parse = parse
        self.choices: tuple[str, ...] | None = getattr(parse, "choices", None)

    def __call__(self, value: Any) -> Any:
        if value is None or (
            isinstance(value, str) and value.strip().lower() in {"", "auto", "none"}
        ):
            return None
        return self.parse(value)


def optional(parse: Callable[[Any], Any]) -> OptionalParser:
    return OptionalParser(parse)


def gpu_list(value: Any) -> str:
    """Validate a ``gpus`` setting: ``auto``, ``none`` or a comma list of vendors.

    Returns the normalised text (``"nvidia,amd"``). Raises ``ValueError`` naming the
    choices for anything else.
    """
    text = str(value).strip().lower()
    if text in ("auto", "none"):
        return text
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in GPU_VENDORS]
    if not names or unknown:
        raise ValueError(
            f"must be auto, none or a comma list of {', '.join(GPU_VENDORS)} (got {value!r})"
        )
    return ",".join(dict.fromkeys(names))
