"""A local stand-in for hosted LLM APIs (OpenAI chat completions and Responses,
Anthropic messages, Gemini's generateContent; Mistral's chat is OpenAI's shape),
answering as the real APIs do: usage fields, SSE streams, errors.

A real ``ThreadingHTTPServer`` on 127.0.0.1 with an ephemeral port. Point the SDKs at it
with ``base_url`` (OpenAI: ``api.url + "/v1"``; Anthropic and LiteLLM: ``api.url``).
What an answer holds is chosen by the request:

- ``max_tokens`` (or ``max_output_tokens``): the number of output tokens (default 7);
  streams send one content event per token;
- a model whose name contains ``error-<status>`` answers that HTTP status with the
  API's error body; ``slow`` holds the answer back ``slow_s`` seconds;
- ``stream_options.include_usage`` adds OpenAI's final usage chunk.

``requests`` lists the (path, body) of every request.
"""

from __future__ import annotations

import json
import re
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_TOKENS = 7
INPUT_TOKENS = 11


def _sse(event: str | None, data: Any) -> bytes:
    head = f"event: {event}\n" if event else ""
    return f"{head}data: {json.dumps(data)}\n\n".encode()


def openai_chat_answer(body: dict, n: int) -> dict:
    return {
        "id": "chatcmpl-1",
        "object": "chat.completion",
        "created": 1_700_000_000,
        "model": body["model"],
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": " ".join(["tok"] * n)},
                "finish_reason": "stop",
            }
        ],
        "usage": {
            "prompt_tokens": INPUT_TOKENS,
            "completion_tokens": n,
            "total_tokens": INPUT_TOKENS + n,
        },
    }


def openai_chat_events(body: dict, n: int) -> list[bytes]:
    def chunk(delta: dict, finish: str | None = None, usage: Any = None) -> bytes:
        data = {
            "id": "chatcmpl-1",
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": body["model"],
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
        }
        if usage is not None:
            data["choices"] = []
            data["usage"] = usage
        return _sse(None, data)

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": f"tok{i} "}) for i in range(n)]
    events.append(chunk({}, "stop"))
    if (body.get("stream_options") or {}).get("include_usage"):
        usage = {"prompt_tokens": INPUT_TOKENS, "completion_tokens": n, "total_tokens": 11 + n}
        events.append(chunk({}, usage=usage))
    events.append(b"data: [DONE]\n\n")
    return events


def _openai_response(body: dict, n: int) -> dict:
    return {
        "id": "resp_1",
        "object": "response",
        "created_at": 1_700_000_000,
        "status": "completed",
        "model": body["model"],
        "output": [
            {
                "type": "message",
                "id": "msg_1",
                "status": "completed",
                "role": "assistant",
                "content": [{"type": "output_text", "text": "tok " * n, "annotations": []}],
            }
        ],
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "usage": {
            "input_tokens": INPUT_TOKENS,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": n,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": INPUT_TOKENS + n,
        },
    }


def _openai_response_stream(body: dict, n: int) -> list[bytes]:
    done = _openai_response(body, n)
    created = {**done, "status": "in_progress", "usage": None, "output": []}
    events = [_sse("response.created", {"type": "response.created", "response": created})]
    for i in range(n):
        delta = {
            "type": "response.output_text.delta",
            "item_id": "msg_1",
            "output_index": 0,
            "content_index": 0,
            "delta": f"tok{i} ",
            "sequence_number": i + 1,
            "logprobs": [],
        }
        events.append(_sse("response.output_text.delta", delta))
    events.append(_sse("response.completed", {"type": "response.completed", "response": done}))
    return events


def _anthropic_message(body: dict, n: int) -> dict:
    return {
        "id": "msg_1",
        "type": "message",
        "role": "assistant",
        "model": body["model"],
        "content": [{"type": "text", "text": "tok " * n}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": INPUT_TOKENS, "output_tokens": n},
    }


def _anthropic_stream(body: dict, n: int) -> list[bytes]:
    start = {**_anthropic_message(body, 0), "content": [], "stop_reason": None}
    start["usage"] = {"input_tokens": INPUT_TOKENS, "output_tokens": 1}
    events = [
        _sse("message_start", {"type": "message_start", "message": start}),
        _sse(
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
    ]
    for i in range(n):
        delta = {
            "type": "content_block_delta",
            "index": 0,
            "delta": {"type": "text_delta", "text": f"tok{i} "},
        }
        events.append(_sse("content_block_delta", delta))
    events.append(_sse("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": n},
            },
        )
    )
    events.append(_sse("message_stop", {"type": "message_stop"}))
    return events


def _gemini_chunk(model: str, text: str, tokens: int) -> dict:
    return {
        "candidates": [{"content": {"parts": [{"text": text}], "role": "model"}, "index": 0}],
        "usageMetadata": {
            "promptTokenCount": INPUT_TOKENS,
            "candidatesTokenCount": tokens,
            "totalTokenCount": INPUT_TOKENS + tokens,
        },
        "modelVersion": model,
    }


def _gemini_content(body: dict, n: int) -> dict:
    answer = _gemini_chunk(body["model"], "tok " * n, n)
    answer["candidates"][0]["finishReason"] = "STOP"
    return answer


def _gemini_stream(body: dict, n: int) -> list[bytes]:
    # Each chunk carries the usage so far, as Gemini's streams do.
    return [_sse(None, _gemini_chunk(body["model"], f"tok{i} ", i + 1)) for i in range(n)]


# Gemini names the model in the path: /v1[beta]/models/<model>:generateContent
GEMINI_PATH = re.compile(r"^/v1(?:beta)?/models/([^:/]+):(generateContent|streamGenerateContent)$")


ROUTES = {  # path → (whole answer, stream events)
    "/v1/chat/completions": (openai_chat_answer, openai_chat_events),
    "/chat/completions": (openai_chat_answer, openai_chat_events),
    "/v1/responses": (_openai_response, _openai_response_stream),
    "/v1/messages": (_anthropic_message, _anthropic_stream),
    "gemini": (_gemini_content, _gemini_stream),
}


class _QuietServer(ThreadingHTTPServer):
    """A client that stops reading a stream half-way is expected, not an error."""

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass


class FakeLLMServer:
    """The stand-in API; a context manager. ``slow_s``: how long ``slow`` models wait;
    ``event_gap_s``: pause between stream events."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, dict]] = []
        self.slow_s = 0.3
        self.event_gap_s = 0.0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}"

    def __enter__(self) -> FakeLLMServer:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *args: Any) -> None:
                pass

            def do_POST(self) -> None:  # noqa: N802 - http.server's name
                length = int(self.headers.get("content-length") or 0)
                body = json.loads(self.rfile.read(length) or b"{}")
                path = self.path.split("?")[0]
                fake.requests.append((path, body))
                fake.answer(self, path, body)

        self._server = _QuietServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: Any) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def answer(self, handler: BaseHTTPRequestHandler, path: str, body: dict) -> None:
        gemini = GEMINI_PATH.match(path)
        if gemini:  # the model is in the path, the length in generationConfig
            config = body.get("generationConfig") or {}
            body = {**body, "model": gemini.group(1), "max_tokens": config.get("maxOutputTokens")}
            body["stream"] = gemini.group(2) == "streamGenerateContent"
            path = "gemini"
        model = str(body.get("model", ""))
        if "slow" in model:
            time.sleep(self.slow_s)
        failure = re.search(r"error-(\d{3})", model)
        route = ROUTES.get(path)
        if failure or route is None:
            status = int(failure.group(1)) if failure else 404
            kind = "api_error" if status >= 500 else "invalid_request_error"
            error = {"type": "error", "error": {"type": kind, "message": f"stand-in {status}"}}
            self._send(handler, status, "application/json", [json.dumps(error).encode()])
            return
        n = int(body.get("max_tokens") or body.get("max_output_tokens") or DEFAULT_TOKENS)
        whole, stream = route
        if body.get("stream"):
            self._send(handler, 200, "text/event-stream", stream(body, n))
        else:
            self._send(handler, 200, "application/json", [json.dumps(whole(body, n)).encode()])

    def _send(
        self, handler: BaseHTTPRequestHandler, status: int, kind: str, parts: list[bytes]
    ) -> None:
        handler.send_response(status)
        handler.send_header("content-type", kind)
        handler.send_header("x-request-id", "req_1")
        if kind == "text/event-stream":
            handler.send_header("transfer-encoding", "chunked")
            handler.end_headers()
            for part in parts:
                handler.wfile.write(f"{len(part):x}\r\n".encode() + part + b"\r\n")
                handler.wfile.flush()
                if self.event_gap_s:
                    time.sleep(self.event_gap_s)
            handler.wfile.write(b"0\r\n\r\n")
        else:
            data = b"".join(parts)
            handler.send_header("content-length", str(len(data)))
            handler.end_headers()
            handler.wfile.write(data)
        handler.wfile.flush()
