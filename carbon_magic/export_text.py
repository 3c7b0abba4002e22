"""Values as the exports spell them, many at a time: the exports of a million cells
write some twenty million numbers, and Python's float ``repr`` (the spelling of both
``csv`` and ``json``) costs more than everything else they do per cell.

:func:`float_texts` spells a column of numbers as ``repr`` does, character for
character, with orjson's shortest round-trip formatting in one call for the whole
column (where orjson is installed; ``repr`` one by one otherwise); :func:`csv_texts`
writes a column of texts as ``csv.writer`` does, with one scan where none needs quotes.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

try:
    import orjson
except ImportError:  # the exports are slower without it, and the same
    orjson = None  # type: ignore[assignment]

__all__ = ["csv_field", "csv_texts", "float_row_texts", "float_texts"]

# orjson writes what repr writes, except for exponents of one digit below zero (``e-6``
# where repr writes ``e-06``) and numbers in [1e-5, 1e-4), which it writes without an
# exponent (``0.000012`` where repr writes ``1.2e-05``). Both are mended in the text of
# the whole column, by substitutions without groups (whose templates Python 3.11 expands
# in Python, one match at a time).
_SHORT_EXPONENT = re.compile(r"e-(?=\d[,\]])")
# "0.0000" starting a number (not the end of "10.0000..."); split keeps its first digit
# and the rest of its digits.
_E5 = re.compile(r"0\.0000(?<!\d0\.0000)([1-9])(\d*)")


def _mend_e5(text: str) -> str:
    """``text`` with each number in [1e-5, 1e-4) spelled as repr spells it."""
    pieces = _E5.split(text)  # text, first digit, other digits, text, ...
    numbers = map("{}.{}e-05".format, pieces[1::3], pieces[2::3])
    out = pieces[0::3]
    joined = [""] * (2 * len(out) - 1)
    joined[0::2], joined[1::2] = out, list(numbers)
    return "".join(joined).replace(".e-05", "e-05")  # 1e-05, not 1.e-05


def _json_numbers(values: Sequence[Any]) -> str | None:
    """The JSON text of ``values`` (numbers, or rows of numbers), each number spelled as
    repr spells it; None where a value is anything else or orjson is missing."""
    if orjson is None:
        return None
    try:
        raw = orjson.dumps(values)
    except TypeError:  # bytes, or an int beyond 64 bits
        return None
    if b'"' in raw or b"null" in raw:  # text, None, NaN and infinities
        return None
    text = raw.decode("ascii")
    if "e-" in text:
        text = _SHORT_EXPONENT.sub("e-0", text)
    if "0.0000" in text:
        text = _mend_e5(text)
    return text


def _finite_floats(values: Sequence[Any]) -> bool:
    return all(type(value) is float and value - value == 0.0 for value in values)


def float_texts(values: Sequence[Any]) -> list[str] | None:
    """``[repr(v) for v in values]`` for a column of floats (ints spelled as ``str``
    does), at a fraction of the cost; None when a value is anything else (None, text,
    NaN or an infinity): the caller then spells the column one value at a time."""
    if not values:
        return []
    text = _json_numbers(values)
    if text is not None:
        return text[1:-1].split(",")
    if orjson is None and _finite_floats(values):
        return list(map(repr, values))
    return None


def float_row_texts(rows: Sequence[Sequence[Any]]) -> list[str] | None:
    """``[",".join(map(repr, row)) for row in rows]`` for rows of floats (of at least one
    each), as :func:`float_texts` spells them; None as it."""
    if not rows:
        return []
    text = _json_numbers(rows)
    if text is not None:
        return text[2:-2].split("],[")
    if orjson is None and all(map(_finite_floats, rows)):
        return [",".join(map(repr, row)) for row in rows]
    return None


def csv_field(value: Any) -> str:
    """``value`` as ``csv.writer`` (minimal quoting) writes it in a row of more than one
    field: None as nothing, text quoted where it holds a comma, a quote or a line break.
    One value at a time, for the few a column cannot spell in bulk."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if "," in text or '"' in text or "\n" in text or "\r" in text:
        return '"' + text.replace('"', '""') + '"'
    return text


_cached_csv_field = lru_cache(maxsize=4096)(csv_field)


def csv_texts(values: Sequence[Any]) -> Sequence[str]:
    """``[csv_field(v) for v in values]`` for a column of texts: ``values`` themselves
    where none needs quotes (one scan of them all), else one value at a time (cached:
    text columns repeat from cell to cell)."""
    try:
        joined = "\x1f".join(values)
    except TypeError:  # None, a number: spelled one at a time
        return list(map(_cached_csv_field, values))
    if "," in joined or '"' in joined or "\n" in joined or "\r" in joined:
        return list(map(_cached_csv_field, values))
    return values
