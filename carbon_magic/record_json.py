"""Frozen dataclass records to JSON values and back, generically, by their type hints.

:func:`to_json` is how the server serialises every document it sends
(:mod:`carbon_magic.records`); :func:`from_json` reads a record back from a JSON-like
mapping (a heartbeat's columns, a prediction stored as JSON, a dict another module
returns), checking each value against its field's type. A ground-floor module: it
imports nothing of the package.
"""

from __future__ import annotations

import functools
import types
from collections.abc import Callable, Mapping
from dataclasses import fields, is_dataclass
from typing import Any, Literal, TypeVar, Union, cast, get_args, get_origin, get_type_hints

__all__ = ["RecordError", "field_types", "from_json", "project", "to_json"]

R = TypeVar("R")


class RecordError(ValueError):
    """A value does not have the shape its record's field declares."""


@functools.cache
def field_types(cls: Any) -> tuple[tuple[str, Any], ...]:
    """``(name, type hint)`` of each field of the dataclass ``cls``, in order."""
    hints = get_type_hints(cls)
    return tuple((f.name, hints[f.name]) for f in fields(cls))


@functools.cache
def _names(cls: Any) -> tuple[str, ...]:
    return tuple(f.name for f in fields(cls))


Convert = Callable[[Any], Any]


def _converter(hint: Any) -> Convert | None:
    """How a field of type ``hint`` becomes JSON: None when its value is JSON as it is
    (numbers, strings, booleans, literals, None), else a function."""
    origin = get_origin(hint)
    if _is_union(hint) or origin is Literal:
        plain = origin is Literal or all(_converter(arg) is None for arg in get_args(hint))
        return None if plain else to_json
    if hint in (float, int, str, bool, type(None)):
        return None
    if origin in (tuple, list) and all(_converter(arg) is None for arg in get_args(hint)):
        return list
    if origin is dict and _converter(get_args(hint)[1]) is None:
        return dict
    return to_json


# Per record type, its serialiser, compiled on first use (as dataclasses compiles its
# __init__): one dict display reading each field, converting those that need it.
_serialisers: dict[type, Convert] = {}


def _serialiser(cls: type) -> Convert:
    converters: dict[str, Convert] = {}
    items = []
    for index, (name, hint) in enumerate(field_types(cls)):
        convert = _converter(hint)
        if convert is None:
            items.append(f"{name!r}: value.{name}")
        else:
            converters[f"convert_{index}"] = convert
            items.append(f"{name!r}: convert_{index}(value.{name})")
    namespace: dict[str, Any] = {}
    source = f"def serialise(value):\n    return {{{', '.join(items)}}}\n"
    exec(source, converters, namespace)  # the source holds only field names
    _serialisers[cls] = namespace["serialise"]
    return _serialisers[cls]


def to_json(value: Any) -> Any:
    """``value`` as JSON values: a record as an object of its fields (in order), tuples as
    lists, dicts and lists item by item; anything else as it is."""
    serialise = _serialisers.get(type(value))
    if serialise is not None:
        return serialise(value)
    if isinstance(value, (str, int, float)) or value is None:
        return value
    if is_dataclass(value) and not isinstance(value, type):
        return _serialiser(type(value))(value)
    if isinstance(value, Mapping):
        return {key: to_json(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [to_json(item) for item in value]
    return value


def project(cls: type[R], source: Any) -> R:
    """The record ``cls`` made of the attributes of ``source`` of its fields' names (as
    they are: ``source`` is a record that extends ``cls``, or has the same fields)."""
    return cls(**{name: getattr(source, name) for name in _names(cast(Any, cls))})


def from_json(cls: type[R], value: Any, *, lenient: bool = False) -> R:
    """The record ``cls`` from the JSON-like mapping ``value`` (keys it does not declare
    are ignored). Raises :class:`RecordError` naming the first field that is missing or
    not of its type; with ``lenient``, such a field that may be None reads None."""
    if not isinstance(value, Mapping):
        raise RecordError(f"{cls.__name__}: expected an object, got {type(value).__name__}")
    values: dict[str, Any] = {}
    for name, hint in field_types(cast(Any, cls)):
        try:
            if name not in value:
                raise RecordError("missing")
            values[name] = _convert(hint, value[name])
        except RecordError as error:
            if not (lenient and _nullable(hint)):
                raise RecordError(f"{cls.__name__}.{name}: {error}") from None
            values[name] = None
    return cls(**values)


def _nullable(hint: Any) -> bool:
    return _is_union(hint) and type(None) in get_args(hint)


def _is_union(hint: Any) -> bool:
    return get_origin(hint) in (Union, types.UnionType)


def _convert(hint: Any, value: Any) -> Any:
    """``value`` as the type ``hint`` says, or RecordError."""
    origin = get_origin(hint)
    if hint is Any:
        return value
    if _is_union(hint):
        if value is None and type(None) in get_args(hint):
            return None
        for option in get_args(hint):
            if option is type(None):
                continue
            try:
                return _convert(option, value)
            except RecordError:
                continue
        raise RecordError(f"expected {_describe(hint)}, got {_show(value)}")
    if origin is Literal:
        if value in get_args(hint) and type(value) in {type(a) for a in get_args(hint)}:
            return value
        raise RecordError(f"expected one of {list(get_args(hint))}, got {_show(value)}")
    if isinstance(hint, type) and is_dataclass(hint):
        return from_json(hint, value)
    if origin is tuple:
        items = get_args(hint)
        if not isinstance(value, (list, tuple)) or len(value) != len(items):
            raise RecordError(f"expected {len(items)} items, got {_show(value)}")
        return tuple(_convert(item, part) for item, part in zip(items, value, strict=True))
    if origin is list:
        if not isinstance(value, (list, tuple)):
            raise RecordError(f"expected a list, got {_show(value)}")
        return [_convert(get_args(hint)[0], item) for item in value]
    if origin is dict:
        if not isinstance(value, Mapping):
            raise RecordError(f"expected an object, got {_show(value)}")
        key_type, item_type = get_args(hint)
        return {_convert(key_type, k): _convert(item_type, v) for k, v in value.items()}
    return _convert_scalar(hint, value)


def _convert_scalar(hint: Any, value: Any) -> Any:
    if hint is float:
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            return value
    elif hint is int or hint is bool or hint is str:
        if type(value) is hint:
            return value
    else:
        raise RecordError(f"a record field may not be of type {hint!r}")
    raise RecordError(f"expected {_describe(hint)}, got {_show(value)}")


def _describe(hint: Any) -> str:
    return getattr(hint, "__name__", None) or str(hint).replace("typing.", "")


def _show(value: Any) -> str:
    return repr(value)[:60]
