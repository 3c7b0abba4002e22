"""Redaction of secret settings in text that is stored or shown (cell sources, commands).

Only the *value* given to a secret setting is replaced, wherever the setting is named:
``%carbon config electricitymaps_token=abc`` → ``%carbon config electricitymaps_token=***``,
``configure(electricitymaps_token="abc")``, ``%config CarbonMagics.electricitymaps_token =
'abc'``, ``{"electricitymaps_token": "abc"}``, ``CARBON_MAGIC_ELECTRICITYMAPS_TOKEN=abc``
and ``os.environ["ELECTRICITYMAPS_API_TOKEN"] = "abc"``. The rest of the text is left
as it is: a one-letter token does not turn every occurrence of that letter into ``***``.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from functools import lru_cache

from carbon_magic.setting_specs import ENV_PREFIX, SPECS

__all__ = ["MASK", "MIN_KNOWN_VALUE_CHARS", "mask_values", "redact_secrets", "secret_names"]

MASK = "***"
# Known secret values (e.g. the token in use) are also replaced where they appear without
# their name, but only when this long: a short value would hit ordinary text.
MIN_KNOWN_VALUE_CHARS = 8
# Other spellings of secret settings (environment variables read as fallbacks).
_ALIASES = ("ELECTRICITYMAPS_API_TOKEN",)


def secret_names() -> list[str]:
    """Every name under which a secret setting can be given (settings, environment)."""
    names: list[str] = []
    for name, spec in SPECS.items():
        if spec.secret:
            names += [name, f"{ENV_PREFIX}{name.upper()}"]
    return [*names, *_ALIASES]


@lru_cache(maxsize=1)
def _pattern() -> re.Pattern[str]:
    names = "|".join(re.escape(name) for name in sorted(secret_names(), key=len, reverse=True))
    return re.compile(
        rf"(?<![A-Za-z0-9_])(?P<name>{names})(?![A-Za-z0-9_])"
        # name=value, name: value, name = "value"; or a space alone (``%env NAME value``)
        r"(?P<between>[\"']?\s*\]?\s*[:=]\s*|[ \t]+)"
        r"(?P<value>\"[^\"\n]*\"?|'[^'\n]*'?|[^\s,;)}\]]+)",
        re.IGNORECASE,
    )


def _mask(match: re.Match[str]) -> str:
    value = match.group("value")
    quote = value[0] if value[:1] in ("'", '"') else ""
    closing = quote if quote and len(value) > 1 and value.endswith(quote) else ""
    return f"{match.group('name')}{match.group('between')}{quote}{MASK}{closing}"


def redact_secrets(text: str, known_values: Iterable[str | None] = ()) -> str:
    """``text`` with the values of secret settings replaced by ``***``.

    ``known_values`` (e.g. the token in use) are replaced wherever they appear, when at
    least MIN_KNOWN_VALUE_CHARS long. Never raises for text; non-text is returned as is.
    """
    if not isinstance(text, str) or not text:
        return text
    redacted = _pattern().sub(_mask, text)
    for value in known_values:
        if isinstance(value, str) and len(value) >= MIN_KNOWN_VALUE_CHARS:
            redacted = redacted.replace(value, MASK)
    return redacted


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
