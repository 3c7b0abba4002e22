"""The SDK methods the capture wraps, and the SDK versions it knows.

Each :class:`Target` names one method (the same narrow points EcoLogits' own tracers
wrap: the resources' ``create`` methods and their kin), the module that defines it, how
to tell a streamed call, and the readers for its answer and its stream items (see
:mod:`carbon_magic.remote.readers`). An SDK whose installed version is outside
``SDK_VERSIONS`` is not wrapped at all (``doctor`` says so).
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SDK_DISTRIBUTIONS", "SDK_VERSIONS", "TARGETS", "Target", "targets_in"]

# SDK → (its distribution on PyPI, lowest known version, first unknown major version).
SDK_VERSIONS: dict[str, tuple[str, tuple[int, ...], tuple[int, ...]]] = {
    "openai": ("openai", (1, 0), (4,)),
    "anthropic": ("anthropic", (0, 30), (3,)),
    "mistralai": ("mistralai", (1, 0), (4,)),
    "google_genai": ("google-genai", (1, 0), (4,)),
    "litellm": ("litellm", (1, 40), (2,)),
}
SDK_DISTRIBUTIONS = {sdk: spec[0] for sdk, spec in SDK_VERSIONS.items()}


@dataclass(frozen=True)
class Target:
    """One wrapped method: ``owner`` (a class in ``module``, or "" for a module-level
    function) and ``name``; ``is_async`` when it is a coroutine function; ``stream``:
    ``"kwarg"`` when ``stream=True`` asks for a stream, ``"always"`` when the method
    always streams, ``"manager"`` when it returns a stream manager that makes the request
    when its ``with`` block opens, ``"never"`` otherwise."""

    sdk: str
    api: str
    module: str
    owner: str
    name: str
    is_async: bool
    stream: str
    answer_reader: str
    item_reader: str
    model_from_arguments: bool = False  # the answer does not name the model

    @property
    def label(self) -> str:
        """``module:Owner.name``, for messages."""
        where = f"{self.owner}.{self.name}" if self.owner else self.name
        return f"{self.module}:{where}"


def _both(sdk: str, api: str, module: str, owner: str, name: str, **kw: str | bool) -> list:
    """The sync method on ``owner`` and its twin on ``Async<owner>``."""
    return [
        Target(sdk, api, module, owner, name, False, **kw),  # type: ignore[arg-type]
        Target(sdk, api, module, "Async" + owner, name, True, **kw),  # type: ignore[arg-type]
    ]


TARGETS: list[Target] = [
    *_both(
        "openai",
        "chat.completions",
        "openai.resources.chat.completions.completions",
        "Completions",
        "create",
        stream="kwarg",
        answer_reader="openai_chat",
        item_reader="openai_chat_chunk",
    ),
    *_both(
        "openai",
        "responses",
        "openai.resources.responses.responses",
        "Responses",
        "create",
        stream="kwarg",
        answer_reader="openai_response",
        item_reader="openai_response_event",
    ),
    *_both(
        "anthropic",
        "messages",
        "anthropic.resources.messages.messages",
        "Messages",
        "create",
        stream="kwarg",
        answer_reader="anthropic_message",
        item_reader="anthropic_event",
    ),
    # messages.stream(): a stream manager (a plain method in both clients) whose with
    # block makes the request, not through create().
    *[
        Target(
            "anthropic",
            "messages",
            "anthropic.resources.messages.messages",
            owner,
            "stream",
            False,
            "manager",
            "anthropic_message",
            "anthropic_event",
        )
        for owner in ("Messages", "AsyncMessages")
    ],
    # Mistral: mistralai 1.x defines Chat in mistralai.chat, 2.x and later in
    # mistralai.client.chat; the async twins are methods of the same class.
    *[
        Target("mistralai", "chat", module, "Chat", name, is_async, stream, reader, item)
        for module in ("mistralai.chat", "mistralai.client.chat")
        for name, is_async, stream in (
            ("complete", False, "never"),
            ("complete_async", True, "never"),
            ("stream", False, "always"),
            ("stream_async", True, "always"),
        )
        for reader, item in [("mistral_chat", "mistral_event")]
    ],
    *[
        Target(
            "google_genai",
            "models.generate_content",
            "google.genai.models",
            owner,
            name,
            owner.startswith("Async"),
            stream,
            "gemini_content",
            "gemini_chunk",
            model_from_arguments=True,
        )
        for owner in ("Models", "AsyncModels")
        for name, stream in (
            ("generate_content", "never"),
            ("generate_content_stream", "always"),
        )
    ],
    Target(
        "litellm",
        "completion",
        "litellm",
        "",
        "completion",
        False,
        "kwarg",
        "litellm_response",
        "litellm_chunk",
        model_from_arguments=True,
    ),
    Target(
        "litellm",
        "completion",
        "litellm",
        "",
        "acompletion",
        True,
        "kwarg",
        "litellm_response",
        "litellm_chunk",
        model_from_arguments=True,
    ),
]


def targets_in(module: str) -> list[Target]:
    """The targets defined in ``module``."""
    return [target for target in TARGETS if target.module == module]
