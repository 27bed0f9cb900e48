"""The Anthropic and OpenAI APIs mocked at the HTTP transport, for the real SDKs.

Both SDKs send through ``chat.ai.http.async_http_client(...)``, whose transport is
``chat.ai.http.transport``. Set it to a ``ScriptedTransport`` that answers each
request with the next scripted response::

    transport = ScriptedTransport([anthropic_text_stream("Hello there")])
    monkeypatch.setattr(chat.ai.http, "transport", transport)

The stream builders write Server-Sent Events the way the APIs do, so the SDKs
parse them for real: Anthropic's named events (``event: message_start`` ...
``event: message_stop``; the SDK skips events without an ``event:`` line) and
OpenAI's ``chat.completion.chunk`` data lines, a final usage chunk with no
choices, and ``data: [DONE]``.
"""

from __future__ import annotations

import inspect
import json
import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import httpx2
import pytest

ANTHROPIC_TEST_MODEL = "claude-test-1"
OPENAI_TEST_MODEL = "gpt-test-1"

SSE_HEADERS = {"content-type": "text/event-stream; charset=utf-8"}


# --- Stream content shared by both APIs ---------------------------------------------


@dataclass(frozen=True)
class StreamText:
    """Text of a streamed answer; a string is sent word by word, a sequence piece by
    piece."""

    text: str | Sequence[str]

    def pieces(self) -> list[str]:
        if isinstance(self.text, str):
            return re.findall(r"\S+\s*|\s+", self.text) or [self.text]
        return list(self.text)


@dataclass(frozen=True)
class StreamToolUse:
    """A tool call of a streamed answer. ``arguments`` is a dict (sent as JSON) or a
    raw string sent as is, for invalid JSON; it is sent in ``fragments`` pieces."""

    id: str
    name: str
    arguments: dict[str, Any] | str
    fragments: int = 2

    def argument_pieces(self) -> list[str]:
        raw = (
            self.arguments
            if isinstance(self.arguments, str)
            else json.dumps(self.arguments)
        )
        if not raw:
            return []
        size = max(1, -(-len(raw) // max(1, self.fragments)))
        return [raw[i : i + size] for i in range(0, len(raw), size)]


StreamPart = StreamText | StreamToolUse


def sse_body(events: Iterable[tuple[str | None, Any]]) -> bytes:
    """Server-Sent Events from (event name or None, data) pairs; data that is not a
    string is written as JSON."""
    lines: list[str] = []
    for name, data in events:
        if name is not None:
            lines.append(f"event: {name}")
        payload = data if isinstance(data, str) else json.dumps(data)
        lines.extend(f"data: {line}" for line in payload.split("\n"))
        lines.append("")
    return ("\n".join(lines) + "\n").encode()


def sse_response(body: bytes | str, *, status: int = 200) -> httpx2.Response:
    """A ``text/event-stream`` response with this exact body (for malformed streams)."""
    content = body.encode() if isinstance(body, str) else body
    return httpx2.Response(status, headers=SSE_HEADERS, content=content)


class _BrokenStream(httpx2.AsyncByteStream):
    def __init__(self, body: bytes, error: Exception) -> None:
        self.body = body
        self.error = error

    async def __aiter__(self) -> AsyncIterator[bytes]:
        if self.body:
            yield self.body
        raise self.error


def stream_then_raise(body: bytes, error: Exception) -> httpx2.Response:
    """A 200 event stream that sends ``body`` and then fails with ``error`` (such as
    ``httpx2.ReadTimeout("read timed out")``) while the SDK reads it."""
    return httpx2.Response(200, headers=SSE_HEADERS, stream=_BrokenStream(body, error))


# --- Anthropic ------------------------------------------------------------------------


def anthropic_events(
    parts: Sequence[StreamPart],
    *,
    input_tokens: int = 10,
    output_tokens: int = 5,
    stop_reason: str | None = None,
    model: str = ANTHROPIC_TEST_MODEL,
    message_id: str = "msg_test_1",
) -> list[dict[str, Any]]:
    """The events of one streamed Messages answer, each a dict with its ``type``.
    ``stop_reason`` defaults to tool_use when a part is a tool call, else end_turn."""
    if stop_reason is None:
        has_tool = any(isinstance(part, StreamToolUse) for part in parts)
        stop_reason = "tool_use" if has_tool else "end_turn"
    events: list[dict[str, Any]] = [
        {
            "type": "message_start",
            "message": {
                "id": message_id,
                "type": "message",
                "role": "assistant",
                "model": model,
                "content": [],
                "stop_reason": None,
                "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1},
            },
        }
    ]
    for index, part in enumerate(parts):
        if isinstance(part, StreamText):
            start = {"type": "text", "text": ""}
            deltas = [{"type": "text_delta", "text": p} for p in part.pieces()]
        else:
            start = {"type": "tool_use", "id": part.id, "name": part.name, "input": {}}
            deltas = [
                {"type": "input_json_delta", "partial_json": p}
                for p in part.argument_pieces()
            ]
        events.append(
            {"type": "content_block_start", "index": index, "content_block": start}
        )
        events.extend(
            {"type": "content_block_delta", "index": index, "delta": delta}
            for delta in deltas
        )
        events.append({"type": "content_block_stop", "index": index})
    events.append(
        {
            "type": "message_delta",
            "delta": {"stop_reason": stop_reason, "stop_sequence": None},
            "usage": {"output_tokens": output_tokens},
        }
    )
    events.append({"type": "message_stop"})
    return events


def anthropic_sse(events: Iterable[dict[str, Any]], *, ping: bool = True) -> bytes:
    """The SSE body of Anthropic events, named by their type, with a ping after the
    first as the API sends."""
    pairs: list[tuple[str | None, Any]] = []
    for position, event in enumerate(events):
        pairs.append((event["type"], event))
        if ping and position == 0:
            pairs.append(("ping", {"type": "ping"}))
    return sse_body(pairs)


def anthropic_stream(
    parts: Sequence[StreamPart],
    *,
    input_tokens: int = 10,
    output_tokens: int = 5,
    stop_reason: str | None = None,
    model: str = ANTHROPIC_TEST_MODEL,
) -> httpx2.Response:
    """A streamed Messages answer made of these text and tool parts."""
    events = anthropic_events(
        parts,
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        stop_reason=stop_reason,
        model=model,
    )
    return sse_response(anthropic_sse(events))


def anthropic_text_stream(
    text: str | Sequence[str],
    input_tokens: int = 10,
    output_tokens: int = 5,
    *,
    model: str = ANTHROPIC_TEST_MODEL,
) -> httpx2.Response:
    """A streamed text answer (end_turn)."""
    return anthropic_stream(
        [StreamText(text)],
        input_tokens=input_tokens,
        output_tokens=output_tokens,
        model=model,
    )


def anthropic_tool_stream(
    tool_id: str,
    name: str,
    input_dict: dict[str, Any] | str,
    *,
    text: str = "",
    input_tokens: int = 10,
    output_tokens: int = 5,
    model: str = ANTHROPIC_TEST_MODEL,
) -> httpx2.Response:
    """A streamed answer calling one tool (tool_use), after ``text`` if given."""
    parts: list[StreamPart] = [StreamText(text)] if text else []
    parts.append(StreamToolUse(tool_id, name, input_dict))
    return anthropic_stream(
        parts, input_tokens=input_tokens, output_tokens=output_tokens, model=model
    )


def anthropic_error(
    status: int, error_type: str = "api_error", message: str = "Internal server error"
) -> httpx2.Response:
    """An error answer as the API sends it, e.g. (529, "overloaded_error")."""
    return httpx2.Response(
        status,
        json={
            "type": "error",
            "error": {"type": error_type, "message": message},
            "request_id": "req_test",
        },
    )


# --- OpenAI ---------------------------------------------------------------------------


def openai_chunks(
    parts: Sequence[StreamPart],
    *,
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    finish_reason: str | None = None,
    model: str = OPENAI_TEST_MODEL,
    usage: bool = True,
    completion_id: str = "chatcmpl-test1",
) -> list[dict[str, Any]]:
    """The ``chat.completion.chunk`` objects of one streamed answer: a role chunk,
    content and tool-call deltas (tool calls numbered by index in order), the chunk
    with ``finish_reason`` (tool_calls when a part is a tool call, else stop) and, with
    ``usage``, the usage chunk whose ``choices`` is empty."""
    if finish_reason is None:
        has_tool = any(isinstance(part, StreamToolUse) for part in parts)
        finish_reason = "tool_calls" if has_tool else "stop"

    def chunk(
        delta: dict[str, Any] | None, finish: str | None = None
    ) -> dict[str, Any]:
        choices = (
            []
            if delta is None
            else [
                {"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish}
            ]
        )
        return {
            "id": completion_id,
            "object": "chat.completion.chunk",
            "created": 1_700_000_000,
            "model": model,
            "system_fingerprint": "fp_test",
            "choices": choices,
            "usage": None,
        }

    chunks = [chunk({"role": "assistant", "content": "", "refusal": None})]
    tool_index = 0
    for part in parts:
        if isinstance(part, StreamText):
            chunks.extend(chunk({"content": piece}) for piece in part.pieces())
            continue
        chunks.append(
            chunk(
                {
                    "tool_calls": [
                        {
                            "index": tool_index,
                            "id": part.id,
                            "type": "function",
                            "function": {"name": part.name, "arguments": ""},
                        }
                    ]
                }
            )
        )
        chunks.extend(
            chunk(
                {
                    "tool_calls": [
                        {"index": tool_index, "function": {"arguments": piece}}
                    ]
                }
            )
            for piece in part.argument_pieces()
        )
        tool_index += 1
    chunks.append(chunk({}, finish_reason))
    if usage:
        last = chunk(None)
        last["usage"] = {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
        }
        chunks.append(last)
    return chunks


def openai_sse(chunks: Iterable[dict[str, Any]], *, done: bool = True) -> bytes:
    """The SSE body of these chunks (data lines only), ending with ``data: [DONE]``."""
    pairs: list[tuple[str | None, Any]] = [(None, chunk) for chunk in chunks]
    if done:
        pairs.append((None, "[DONE]"))
    return sse_body(pairs)


def openai_stream(
    parts: Sequence[StreamPart],
    *,
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    finish_reason: str | None = None,
    model: str = OPENAI_TEST_MODEL,
) -> httpx2.Response:
    """A streamed Chat Completions answer made of these text and tool parts."""
    chunks = openai_chunks(
        parts,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        finish_reason=finish_reason,
        model=model,
    )
    return sse_response(openai_sse(chunks))


def openai_text_stream(
    text: str | Sequence[str],
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    *,
    model: str = OPENAI_TEST_MODEL,
) -> httpx2.Response:
    """A streamed text answer (stop)."""
    return openai_stream(
        [StreamText(text)],
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        model=model,
    )


def openai_tool_stream(
    call_id: str,
    name: str,
    arguments: dict[str, Any] | str,
    *,
    text: str = "",
    prompt_tokens: int = 10,
    completion_tokens: int = 5,
    model: str = OPENAI_TEST_MODEL,
) -> httpx2.Response:
    """A streamed answer calling one tool (tool_calls); ``arguments`` as a string is
    sent as is, e.g. invalid JSON."""
    parts: list[StreamPart] = [StreamText(text)] if text else []
    parts.append(StreamToolUse(call_id, name, arguments))
    return openai_stream(
        parts,
        prompt_tokens=prompt_tokens,
        completion_tokens=completion_tokens,
        model=model,
    )


def openai_error(
    status: int,
    error_type: str = "server_error",
    message: str = "The server had an error",
    code: str | None = None,
) -> httpx2.Response:
    """An error answer as the API sends it, e.g. (429, "rate_limit_exceeded")."""
    return httpx2.Response(
        status,
        json={
            "error": {
                "message": message,
                "type": error_type,
                "param": None,
                "code": code,
            }
        },
    )


# --- The transport --------------------------------------------------------------------

ScriptedAnswer = (
    httpx2.Response
    | BaseException
    | type[BaseException]
    | Callable[[httpx2.Request], httpx2.Response | Awaitable[httpx2.Response]]
)


@dataclass(frozen=True)
class RecordedRequest:
    """A request the transport received; ``json`` is the parsed body (None if empty
    or not JSON)."""

    method: str
    url: str
    json: Any
    headers: httpx2.Headers

    @property
    def path(self) -> str:
        return httpx2.URL(self.url).path


class ScriptedTransport(httpx2.MockTransport):
    """Answers requests in order from a script and records every request.

    Each answer is an ``httpx2.Response``, an exception (instance or class, e.g.
    ``httpx2.ReadTimeout``) to raise, or a callable taking the request and returning
    a response (or an awaitable of one). A request beyond the script fails the test
    at once, through any ``except Exception`` on the way.
    """

    def __init__(self, answers: Iterable[ScriptedAnswer]) -> None:
        super().__init__(self._answer)
        self.answers: list[ScriptedAnswer] = list(answers)
        self.requests: list[RecordedRequest] = []

    @property
    def remaining(self) -> int:
        return len(self.answers) - len(self.requests)

    @property
    def last(self) -> RecordedRequest:
        assert self.requests, "no request was made"
        return self.requests[-1]

    def assert_done(self) -> None:
        """Every scripted answer was asked for."""
        assert self.remaining == 0, (
            f"{self.remaining} scripted answer(s) never asked for"
        )

    async def _answer(self, request: httpx2.Request) -> httpx2.Response:
        position = len(self.requests)
        self.requests.append(_record(request))
        if position >= len(self.answers):
            pytest.fail(
                f"ScriptedTransport: request {position + 1} ({request.method} "
                f"{request.url}) beyond the {len(self.answers)} scripted",
                pytrace=False,
            )
        answer = self.answers[position]
        if isinstance(answer, type) and issubclass(answer, BaseException):
            if issubclass(answer, httpx2.RequestError):
                raise answer("scripted failure", request=request)
            raise answer("scripted failure")
        if isinstance(answer, BaseException):
            if isinstance(answer, httpx2.HTTPError) and answer._request is None:
                answer.request = request
            raise answer
        if isinstance(answer, httpx2.Response):
            return answer
        response = answer(request)
        if inspect.isawaitable(response):
            response = await response
        return response


def _record(request: httpx2.Request) -> RecordedRequest:
    body: Any = None
    if request.content:
        try:
            body = json.loads(request.content)
        except ValueError:
            body = None
    return RecordedRequest(
        method=request.method,
        url=str(request.url),
        json=body,
        headers=httpx2.Headers(request.headers),
    )
