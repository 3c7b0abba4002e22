"""The wrapper put in place of one SDK method: the capture's only code on a call's path.

It appends a :class:`~carbon_magic.remote.calls.RemoteCall` to the call log, calls the
SDK's own method with the same arguments, reads the answer (or follows the stream) and
hands back exactly what the method returned, or lets exactly what it raised go through.
Nothing is estimated here (that happens at the cell's edge), so a call costs the SDK a
few microseconds more. With no cell open, or inside another captured call (LiteLLM
calling the OpenAI SDK), it calls straight through.
"""

from __future__ import annotations

import functools
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from carbon_magic.remote.calls import CALL_LOG, RemoteCall, inside_capture
from carbon_magic.remote.readers import READERS
from carbon_magic.remote.streams import watch_manager, watch_stream
from carbon_magic.remote.targets import Target

__all__ = ["Patch", "make_wrapper"]


@dataclass
class Patch:
    """One wrapped method: where it lives, the SDK's own object and our wrapper.
    ``active`` False makes the wrapper call straight through (used when another wrapper
    sits on top of ours and ours cannot be taken out from under it)."""

    target: Target
    owner: Any  # the class, or the module of a module-level function
    original: Callable[..., Any]
    wrapper: Callable[..., Any] | None = None
    active: bool = True


def make_wrapper(patch: Patch) -> Callable[..., Any]:
    """The function to put in place of ``patch.original``."""
    target, original = patch.target, patch.original
    read_answer = READERS[target.answer_reader]
    read_item = READERS[target.item_reader]
    positional_model = not target.owner  # litellm.completion(model, messages)

    def begin(args: tuple[Any, ...], kwargs: dict[str, Any]) -> RemoteCall:
        model = kwargs.get("model")
        if model is None and positional_model and args:
            model = args[0]
        streamed = target.stream in ("always", "manager") or (
            target.stream == "kwarg" and kwargs.get("stream") is True
        )
        call = RemoteCall(
            target.sdk,
            target.api,
            model if isinstance(model, str) else None,
            streamed,
            time.time(),
            time.monotonic_ns(),
        )
        CALL_LOG.add(call)
        return call

    def answered(call: RemoteCall, result: Any) -> Any:
        if call.streamed:
            return watch_stream(result, read_item, call)
        try:
            read_answer(call, result)
        except Exception:
            pass  # recorded with what is known
        call.finish("ok")
        return result

    if target.is_async:

        @functools.wraps(original)
        async def async_wrapper(*args: Any, **kwargs: Any) -> Any:
            if not (patch.active and CALL_LOG.open_edges) or inside_capture.get():
                return await original(*args, **kwargs)
            call = begin(args, kwargs)
            token = inside_capture.set(True)
            try:
                result = await original(*args, **kwargs)
            except BaseException as exc:
                call.finish("error", exc)
                raise
            finally:
                inside_capture.reset(token)
            return answered(call, result)

        return async_wrapper

    @functools.wraps(original)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        if not (patch.active and CALL_LOG.open_edges) or inside_capture.get():
            return original(*args, **kwargs)
        if target.stream == "manager":  # the request is made when its with block opens
            return watch_manager(original(*args, **kwargs), lambda: begin(args, kwargs), read_item)
        call = begin(args, kwargs)
        token = inside_capture.set(True)
        try:
            result = original(*args, **kwargs)
        except BaseException as exc:
            call.finish("error", exc)
            raise
        finally:
            inside_capture.reset(token)
        return answered(call, result)

    return wrapper
