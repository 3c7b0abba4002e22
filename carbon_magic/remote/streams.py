"""Following a streamed answer without changing it.

The SDK's own stream object is handed back to the caller: where it iterates over an
inner iterator (``_iterator`` in the OpenAI and Anthropic SDKs, ``generator`` in
Mistral's), only that inner iterator is replaced by one that yields the very same
items; a plain generator (Google GenAI) is replaced by one yielding its items; LiteLLM's
stream object gets a subclass of its own class whose ``__next__`` reads each item on
the way. Each item is read (tokens, model); the end of the stream finishes the call
(``ok``), an exception from it finishes it as ``error`` and is raised unchanged, and a
stream closed early (or collected) finishes it as ``abandoned`` with the tokens seen.
A stream manager (Anthropic's ``messages.stream()``) is followed through the request
it makes when its ``with`` block opens.
"""

from __future__ import annotations

import inspect
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

from carbon_magic.remote.calls import RemoteCall
from carbon_magic.remote.readers import Reader

__all__ = ["watch_manager", "watch_stream"]

_INNER_NAMES = ("_iterator", "generator")
_CALL_ATTRIBUTE = "_carbon_magic_call"
_watched_classes: dict[type, type] = {}


def _read(reader: Reader, call: RemoteCall, item: Any) -> None:
    try:
        reader(call, item)
    except Exception:
        pass  # a reader fault only loses that item's count, never the item
    call.touch()


def _follow(items: Iterator[Any], reader: Reader, call: RemoteCall) -> Iterator[Any]:
    status, error = "abandoned", None
    try:
        for item in items:
            _read(reader, call, item)
            yield item
        status = "ok"
    except GeneratorExit:
        close = getattr(items, "close", None)
        if close is not None:
            close()
        raise
    except BaseException as exc:
        status, error = "error", exc
        raise
    finally:
        call.finish(status, error)


async def _follow_async(
    items: AsyncIterator[Any], reader: Reader, call: RemoteCall
) -> AsyncIterator[Any]:
    status, error = "abandoned", None
    try:
        async for item in items:
            _read(reader, call, item)
            yield item
        status = "ok"
    except GeneratorExit:
        close = getattr(items, "aclose", None)
        if close is not None:
            await close()
        raise
    except BaseException as exc:
        status, error = "error", exc
        raise
    finally:
        call.finish(status, error)


def _watched_class(cls: type) -> type:
    """A subclass of ``cls`` (same name) whose items are read on the way."""
    watched = _watched_classes.get(cls)
    if watched is not None:
        return watched

    def __next__(self: Any) -> Any:
        call: RemoteCall = self.__dict__[_CALL_ATTRIBUTE]
        try:
            item = cls.__next__(self)  # type: ignore[attr-defined]
        except StopIteration:
            call.finish("ok")
            raise
        except BaseException as exc:
            call.finish("error", exc)
            raise
        _read(self.__dict__["_carbon_magic_reader"], call, item)
        return item

    async def __anext__(self: Any) -> Any:
        call: RemoteCall = self.__dict__[_CALL_ATTRIBUTE]
        try:
            item = await cls.__anext__(self)  # type: ignore[attr-defined]
        except StopAsyncIteration:
            call.finish("ok")
            raise
        except BaseException as exc:
            call.finish("error", exc)
            raise
        _read(self.__dict__["_carbon_magic_reader"], call, item)
        return item

    namespace: dict[str, Any] = {"__module__": cls.__module__, "__qualname__": cls.__qualname__}
    if hasattr(cls, "__next__"):
        namespace["__next__"] = __next__
    if hasattr(cls, "__anext__"):
        namespace["__anext__"] = __anext__
    watched = type(cls.__name__, (cls,), namespace)
    _watched_classes[cls] = watched
    return watched


def watch_stream(stream: Any, reader: Reader, call: RemoteCall) -> Any:
    """Follow ``stream`` (the SDK's answer to a streamed call) with ``reader``; returns
    the object to hand back: ``stream`` itself where it can be followed in place, else an
    iterator of the same kind yielding the same items. Unknown shapes are handed back
    unchanged (the call is then recorded with what is known when the cell ends)."""
    for name in _INNER_NAMES:
        inner = getattr(stream, name, None)
        if inner is None or isinstance(getattr(type(stream), name, None), property):
            continue
        if inspect.isasyncgen(inner) or hasattr(inner, "__anext__"):
            setattr(stream, name, _follow_async(inner, reader, call))
            return stream
        if hasattr(inner, "__next__"):
            setattr(stream, name, _follow(inner, reader, call))
            return stream
    if inspect.isgenerator(stream):
        return _follow(stream, reader, call)
    if inspect.isasyncgen(stream):
        return _follow_async(stream, reader, call)
    if hasattr(type(stream), "__next__") or hasattr(type(stream), "__anext__"):
        try:
            stream.__dict__[_CALL_ATTRIBUTE] = call
            stream.__dict__["_carbon_magic_reader"] = reader
            stream.__class__ = _watched_class(type(stream))
        except (AttributeError, TypeError):
            pass  # slots or a built-in type: handed back as it is
    return stream


def watch_manager(manager: Any, begin: Callable[[], RemoteCall], reader: Reader) -> Any:
    """Follow the stream a stream manager opens (Anthropic's ``messages.stream()``): its
    request, kept as ``…__api_request`` (a function, or an awaitable in the async SDK), is
    replaced by one that starts the call record (``begin``) when the ``with`` block opens
    the stream, and follows the raw stream it gets. Returns ``manager`` itself."""
    for name, request in list(vars(manager).items()):
        if not name.endswith("__api_request"):
            continue
        if inspect.isawaitable(request):

            async def opened_async(request: Any = request) -> Any:
                call = begin()
                try:
                    raw = await request
                except BaseException as exc:
                    call.finish("error", exc)
                    raise
                return watch_stream(raw, reader, call)

            setattr(manager, name, opened_async())
        elif callable(request):

            def opened(request: Any = request) -> Any:
                call = begin()
                try:
                    raw = request()
                except BaseException as exc:
                    call.finish("error", exc)
                    raise
                return watch_stream(raw, reader, call)

            setattr(manager, name, opened)
        break
    return manager
