"""Values as the exports spell them, many at a time: the exports of a million cells
write some twenty million numbers, and Python's float ``repr`` (the spelling of both
``csv`` and ``json``) costs more than everything else they do per cell.

:func:`float_texts` spells a column of numbers as ``repr`` does, character for
character, with orjson's shortest round-trip formatting in one call for the whole
column (where orjson is installed; ``repr`` one by one otherwise); :func:`csv_texts`
writes a column of texts as ``csv.writer`` does, with one scan where none needs quotes.
"""

from __future__ import annotations

import csv
import io
import re
from collections.abc import Sequence
from functools import lru_cache
from typing import Any

try:
    import orjson
except ImportError:  # the exports are slower without it, and the same
    orjson = None  # type: ignore[assignment]

__all__ = ["csv_field", "csv_texts", "float_texts", "needs_quotes"]

# orjson writes what repr writes, except for exponents of one digit below zero (``e-6``
# where repr writes ``e-06``: mended in the text of the whole column, by a substitution
# without groups, which Python 3.11 would expand in Python one match at a time) and
# numbers in [1e-5, 1e-4), which it writes without an exponent (``0.000012`` where repr
# writes ``1.2e-05``: its digits moved; common, as kWh of a cell).
_SHORT_EXPONENT = re.compile(r"e-(?=\d[,\]])")


def float_texts(values: Sequence[Any]) -> list[str] | None:
    """``[repr(v) for v in values]`` for a column of floats (ints spelled as ``str``
    does), at a fraction of the cost; None when a value is anything else (None, text,
    NaN or an infinity): the caller then spells the column one value at a time."""
    if not values:
        return []
    if orjson is None:
        if all(type(value) is float and value - value == 0.0 for value in values):
            return list(map(repr, values))
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
    texts = text[1:-1].split(",")
    if "-0.0000" in text:  # negative, in (-1e-4, -1e-5]: not a figure of the ledger
        return list(map(repr, values))
    if "0.0000" in text:  # "0.0000" starts no other number: smaller ones have exponents
        texts = [
            (f"{t[6]}.{t[7:]}e-05" if len(t) > 7 else f"{t[6]}e-05") if t[:6] == "0.0000" else t
            for t in texts
        ]
    return texts


def _quoted_by_csv(character: str) -> bool:
    out = io.StringIO()
    csv.writer(out, lineterminator="\n").writerow((character, ""))
    return out.getvalue().startswith('"')


# What makes csv.writer quote a field: a comma, a quote, a line feed, and, from some
# Python versions on, a carriage return (asked of this Python's csv once).
_QUOTED_BY = tuple(character for character in ',"\n\r' if _quoted_by_csv(character))


_QUOTED = re.compile("[" + re.escape("".join(_QUOTED_BY)) + "]")


def needs_quotes(text: str) -> bool:
    """Whether ``csv.writer`` (minimal quoting) quotes a field of this text."""
    return _QUOTED.search(text) is not None


def csv_field(value: Any) -> str:
    """``value`` as ``csv.writer`` (minimal quoting) writes it in a row of more than one
    field: None as nothing, text quoted where it holds a comma, a quote or a line feed.
    One value at a time, for the few a column cannot spell in bulk."""
    if value is None:
        return ""
    text = value if isinstance(value, str) else str(value)
    if needs_quotes(text):
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
    if needs_quotes(joined):
        search = _QUOTED.search
        return [('"' + text.replace('"', '""') + '"') if search(text) else text for text in values]
    return values
