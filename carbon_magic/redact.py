"""Redaction of secret settings in text a user typed (a cell's source, a command line).

Only the value given to a secret setting is replaced, e.g. ``electricitymaps_token=abc``
becomes ``electricitymaps_token=***``; other text is kept as it is, so a short token
never turns its characters elsewhere in the cell into ``***``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import cache

from carbon_magic.settings import ENV_PREFIX, SPECS

MASK = "***"
# Other names under which a secret setting's value is commonly given.
ALIASES = {"electricitymaps_token": ("ELECTRICITYMAPS_API_TOKEN",)}


@cache
def _pattern() -> re.Pattern[str]:
    names: list[str] = []
    for name, spec in SPECS.items():
        if spec.secret:
            names += [name, ENV_PREFIX + name.upper(), *ALIASES.get(name, ())]
    alternatives = "|".join(re.escape(name) for name in sorted(names, key=len, reverse=True))
    return re.compile(
        rf"(?P<key>\b(?:{alternatives})\b['\"]?\]?\s*(?:=|:|\s)\s*)"  # name, then = : or a space
        r"(?P<value>(?P<quote>['\"])(?:\\.|(?!(?P=quote)).)*(?P=quote)|[^\s,;)\]}'\"]+)",
        re.IGNORECASE,
    )


def _mask(match: re.Match[str]) -> str:
    quote = match.group("quote") or ""
    return f"{match.group('key')}{quote}{MASK}{quote}"


def redact_secrets(source: str) -> str:
    """``source`` with the value of every secret setting replaced by ``***``.

    Recognises ``name=value`` (``%carbon config``), ``name="value"`` (``configure()``,
    ``%config CarbonMagics.name = …``), ``CARBON_MAGIC_<NAME>=…`` / ``%env`` and
    ``os.environ["…"] = …``; quoted values keep their quotes. Text without a secret
    setting's name is returned unchanged.
    """
    if not source:
        return source
    return _pattern().sub(_mask, source)


def mask_values(text: str, secrets: Iterable[str]) -> str:
    """``text`` with each whole occurrence of a secret value replaced by ``***``.

    An occurrence counts only where it is not part of a longer word (letters, digits,
    ``_``, ``-`` on either side), so the token ``t`` masks ``token=t`` but leaves "not"
    alone. Empty secrets are ignored.
    """
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        pattern = rf"(?<![\w-]){re.escape(secret)}(?![\w-])"
        text = re.sub(pattern, MASK, text)
    return text
