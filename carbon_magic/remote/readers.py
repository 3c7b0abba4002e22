"""What each SDK's answer says about a call: the model that answered and the tokens it
generated, read from whole answers and from stream items.

The fields read are the ones EcoLogits' own tracers read (``usage.completion_tokens``,
``usage.output_tokens``, ``usage_metadata.candidates_token_count``...). Where a stream
carries no usage, every item with generated content counts one token, as EcoLogits
counts them. A reader never raises: an answer of a shape it does not know leaves the
call's fields as they were (recorded with what is known).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from carbon_magic.remote.calls import RemoteCall

__all__ = ["READERS", "Reader"]

Reader = Callable[[RemoteCall, Any], None]


def _get(obj: Any, *path: str) -> Any:
    """``obj.a.b`` (or ``obj["a"]["b"]``), None where any step is missing."""
    for name in path:
        if obj is None:
            return None
        obj = obj.get(name) if isinstance(obj, dict) else getattr(obj, name, None)
    return obj


def _whole(call: RemoteCall, answer: Any, *token_path: str) -> None:
    call.model = _get(answer, "model") or call.model
    tokens = _get(answer, *token_path)
    if isinstance(tokens, int):
        call.output_tokens = tokens
    _take_impacts(call, answer)


def _usage_or_count(call: RemoteCall, tokens: Any, generated: bool) -> None:
    """A stream item: a usage figure wins (it is cumulative); else count generated items
    until a usage figure arrives."""
    if isinstance(tokens, int):
        call.output_tokens = tokens
        call.tokens_counted = False
    elif generated and (call.output_tokens is None or call.tokens_counted):
        call.output_tokens = (call.output_tokens or 0) + 1
        call.tokens_counted = True


def _openai_chat(call: RemoteCall, answer: Any) -> None:
    _whole(call, answer, "usage", "completion_tokens")


def _openai_chat_chunk(call: RemoteCall, chunk: Any) -> None:
    call.model = _get(chunk, "model") or call.model
    _litellm_chunk(call, chunk)


def _litellm_chunk(call: RemoteCall, chunk: Any) -> None:
    """A chat completion chunk (OpenAI's shape) without reading its model: LiteLLM's
    names the provider's model, the call keeps the one asked for."""
    choices = _get(chunk, "choices") or []
    delta = _get(choices[0], "delta") if choices else None
    generated = bool(_get(delta, "content") or _get(delta, "tool_calls"))
    _usage_or_count(call, _get(chunk, "usage", "completion_tokens"), generated)
    _take_impacts(call, chunk)


def _openai_response(call: RemoteCall, answer: Any) -> None:
    _whole(call, answer, "usage", "output_tokens")


def _openai_response_event(call: RemoteCall, event: Any) -> None:
    kind = _get(event, "type")
    if kind in ("response.created", "response.completed", "response.incomplete"):
        response = _get(event, "response")
        call.model = _get(response, "model") or call.model
        _usage_or_count(call, _get(response, "usage", "output_tokens"), False)
        _take_impacts(call, response)
    elif kind == "response.output_text.delta":
        _usage_or_count(call, None, True)
    _take_impacts(call, event)


def _anthropic_message(call: RemoteCall, answer: Any) -> None:
    _whole(call, answer, "usage", "output_tokens")


def _anthropic_event(call: RemoteCall, event: Any) -> None:
    kind = _get(event, "type")
    if kind == "message_start":
        call.model = _get(event, "message", "model") or call.model
    elif kind == "content_block_delta":
        _usage_or_count(call, None, True)
    elif kind == "message_delta":  # its usage is the message's total so far
        _usage_or_count(call, _get(event, "usage", "output_tokens"), False)


def _mistral_chat(call: RemoteCall, answer: Any) -> None:
    _whole(call, answer, "usage", "completion_tokens")


def _mistral_event(call: RemoteCall, event: Any) -> None:
    _openai_chat_chunk(call, _get(event, "data"))


def _gemini_tokens(answer: Any) -> int | None:
    candidates = _get(answer, "usage_metadata", "candidates_token_count")
    if not isinstance(candidates, int):
        return None
    thoughts = _get(answer, "usage_metadata", "thoughts_token_count")
    return candidates + (thoughts if isinstance(thoughts, int) else 0)


def _gemini_content(call: RemoteCall, answer: Any) -> None:
    # The model is the one asked for (set from the call's arguments), as EcoLogits does.
    tokens = _gemini_tokens(answer)
    if tokens is not None:
        call.output_tokens = tokens
    _take_impacts(call, answer)


def _gemini_chunk(call: RemoteCall, chunk: Any) -> None:
    _usage_or_count(call, _gemini_tokens(chunk), bool(_get(chunk, "candidates")))
    _take_impacts(call, chunk)


def _litellm_response(call: RemoteCall, answer: Any) -> None:
    # The model stays the one asked for ("provider/name"): EcoLogits matches that name.
    tokens = _get(answer, "usage", "completion_tokens")
    if isinstance(tokens, int):
        call.output_tokens = tokens
    _take_impacts(call, answer)


def _take_impacts(call: RemoteCall, item: Any) -> None:
    # EcoLogits' answers are pydantic models with an ``impacts`` field. Asked of a model
    # without one, getattr raises inside pydantic (microseconds per stream item): look
    # at the class's fields first.
    fields = getattr(type(item), "model_fields", None)
    if isinstance(fields, dict) and "impacts" not in fields:
        extra = getattr(item, "__pydantic_extra__", None)  # set on an answer afterwards
        if not extra or "impacts" not in extra:
            return
    impacts = getattr(item, "impacts", None)
    if impacts is not None:
        call.impacts = impacts  # EcoLogits' streams carry the running total: keep the last


READERS: dict[str, Reader] = {
    "openai_chat": _openai_chat,
    "openai_chat_chunk": _openai_chat_chunk,
    "openai_response": _openai_response,
    "openai_response_event": _openai_response_event,
    "anthropic_message": _anthropic_message,
    "anthropic_event": _anthropic_event,
    "mistral_chat": _mistral_chat,
    "mistral_event": _mistral_event,
    "gemini_content": _gemini_content,
    "gemini_chunk": _gemini_chunk,
    "litellm_response": _litellm_response,
    "litellm_chunk": _litellm_chunk,
}
