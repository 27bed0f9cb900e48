"""Claude, through the official Anthropic SDK, with its answer streamed.

The neutral transcript becomes Messages API messages: Anthropic wants strictly
alternating roles starting with the user, so items of one role in a row are merged
into one message and the items before the first customer message are left out.
Every failure of the SDK, the transport or the stream becomes a ProviderError that
names the status and the error type only, so that no key or body reaches the logs.
"""

from __future__ import annotations

import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

import anthropic
import httpx2
from django.conf import settings

from chat.ai import http, sse
from chat.ai.base import (
    AssistantText,
    ConfiguredProvider,
    ProviderError,
    TextSink,
    ToolCall,
    ToolResult,
    ToolRound,
    TranscriptItem,
    TurnRequest,
    TurnResult,
    UserText,
    relay,
)

NAME = "anthropic"


@dataclass
class _Outcome:
    """What the stream left besides its text: the model, the usage, why it stopped,
    and each tool_use block with its raw input JSON, by content block index."""

    model: str = ""
    input_tokens: int = 0
    output_tokens: int = 0
    stop_reason: str = ""
    started: bool = False
    stopped: bool = False
    tool_blocks: dict[int, Any] = field(default_factory=dict)
    tool_json: dict[int, str] = field(default_factory=dict)

    def read(self, event: dict[str, Any]) -> str | None:
        """Take one stream event (its JSON data) in; returns the text it adds, if any."""
        kind = event.get("type")
        if kind == "content_block_delta":
            delta = event["delta"]
            if delta["type"] == "text_delta":
                return delta["text"] or None
            if delta["type"] == "input_json_delta":
                raw = self.tool_json.get(event["index"], "")
                self.tool_json[event["index"]] = raw + delta["partial_json"]
        elif kind == "content_block_start":
            if event["content_block"]["type"] == "tool_use":
                self.tool_blocks[event["index"]] = event["content_block"]
        elif kind == "message_start":
            message = event["message"]
            usage = message.get("usage") or {}
            self.started = True
            self.model = message.get("model") or ""
            self.input_tokens = usage.get("input_tokens") or 0
            self.output_tokens = usage.get("output_tokens") or 0
        elif kind == "message_delta":
            # Usage on a message_delta is the running total: it replaces.
            usage = event.get("usage") or {}
            self.stop_reason = event["delta"].get("stop_reason") or self.stop_reason
            self.output_tokens = usage.get("output_tokens") or self.output_tokens
            if usage.get("input_tokens") is not None:
                self.input_tokens = usage["input_tokens"]
        elif kind == "message_stop":
            self.stopped = True
        elif kind == "error":
            error = event.get("error")
            error_type = _short(error.get("type")) if isinstance(error, dict) else ""
            raise ProviderError(
                f"{NAME}: error event {error_type or 'error'} in the stream"
            )
        return None


class AnthropicProvider(ConfiguredProvider):
    """Anthropic's Messages API: streamed text, tool use and token usage."""

    name = NAME
    settings_prefix = "ANTHROPIC"

    async def turn(self, request: TurnRequest, on_text: TextSink) -> TurnResult:
        """One streamed Messages call; text goes to ``on_text`` as it arrives."""
        if not self.is_configured():
            raise ProviderError(f"{NAME}: no API key")
        params = request_params(request, model=self.model)
        outcome = _Outcome()
        text = await relay(self._stream(params, outcome), on_text)
        calls = [
            _tool_call(block, outcome.tool_json.get(index))
            for index, block in sorted(outcome.tool_blocks.items())
        ]
        return TurnResult(
            text=text,
            tool_calls=calls,
            input_tokens=outcome.input_tokens,
            output_tokens=outcome.output_tokens,
            model=outcome.model or self.model,
            stop_reason=outcome.stop_reason,
        )

    async def _stream(
        self, params: dict[str, Any], outcome: _Outcome
    ) -> AsyncIterator[str]:
        """The text deltas of one call; the SDK's and the transport's failures come out
        as ProviderError, the caller's own (``on_text``) are left alone.

        The SDK builds and sends the request and turns an HTTP error into its
        exception; the events are read here (``chat.ai.sse``), for about half the
        CPU of the SDK's typed event stream.
        """
        client = http.sdk_client(
            (
                "anthropic",
                settings.ANTHROPIC_API_KEY,
                settings.ANTHROPIC_BASE_URL,
                settings.AI_TIMEOUT_SECONDS,
            ),
            lambda: anthropic.AsyncAnthropic(
                api_key=settings.ANTHROPIC_API_KEY,
                base_url=settings.ANTHROPIC_BASE_URL or None,
                http_client=http.async_http_client(anthropic.DefaultAioHttpClient),
                max_retries=0,
                timeout=settings.AI_TIMEOUT_SECONDS,
            ),
        )
        try:
            async with client.messages.with_streaming_response.create(
                **params, stream=True
            ) as response:
                async for event in sse.json_events(response.iter_bytes()):
                    text = outcome.read(event)
                    if text:
                        yield text
        except ProviderError:
            raise
        except Exception as exc:
            raise ProviderError(describe_error(exc)) from exc
        if not outcome.started:
            raise ProviderError(f"{NAME}: the stream had no message_start")
        if not outcome.stopped:
            raise ProviderError(f"{NAME}: the stream ended before message_stop")
        if outcome.stop_reason != "max_tokens" and not all(
            _is_json(outcome.tool_json.get(index)) for index in outcome.tool_blocks
        ):
            # Only an answer cut at max_tokens may end inside a tool's input (the
            # call is then refused to the model); otherwise the stream is broken.
            raise ProviderError(f"{NAME}: unreadable response (a tool input not JSON)")


def request_params(request: TurnRequest, *, model: str) -> dict[str, Any]:
    """The keyword arguments of ``messages.create`` for this turn (streamed)."""
    params: dict[str, Any] = {
        "model": model,
        "max_tokens": request.max_tokens,
        "system": request.system,
        "messages": transcript_messages(request.transcript),
    }
    if request.tools:
        params["tools"] = [
            {
                "name": tool.name,
                "description": tool.description,
                "input_schema": tool.parameters,
            }
            for tool in request.tools
        ]
    return params


def transcript_messages(
    transcript: tuple[TranscriptItem, ...],
) -> list[dict[str, Any]]:
    """Anthropic messages for the neutral transcript: alternating roles, user first."""
    first_user = next(
        (i for i, item in enumerate(transcript) if isinstance(item, UserText)),
        len(transcript),
    )
    messages: list[dict[str, Any]] = []

    def add(role: str, blocks: list[dict[str, Any]]) -> None:
        if not blocks:
            return
        if messages and messages[-1]["role"] == role:
            messages[-1]["content"].extend(blocks)
        else:
            messages.append({"role": role, "content": blocks})

    for item in transcript[first_user:]:
        if isinstance(item, UserText):
            add("user", _text_blocks(item.text))
        elif isinstance(item, AssistantText):
            add("assistant", _text_blocks(item.text))
        else:
            add(
                "assistant",
                _text_blocks(item.text)
                + [
                    {
                        "type": "tool_use",
                        "id": call.id,
                        "name": call.name,
                        "input": call.arguments,
                    }
                    for call in item.calls
                ],
            )
            add("user", [_tool_result_block(result) for result in _results(item)])
    return messages


def _text_blocks(text: str) -> list[dict[str, Any]]:
    """A text block, or none for empty text (the API refuses empty text blocks)."""
    return [{"type": "text", "text": text}] if text.strip() else []


def _tool_result_block(result: ToolResult) -> dict[str, Any]:
    return {
        "type": "tool_result",
        "tool_use_id": result.call_id,
        "content": result.content,
        "is_error": result.is_error,
    }


def _results(item: ToolRound) -> list[ToolResult]:
    """One result per call, in the order of the calls; a call without one gets an
    error result, since the API refuses a tool_use left unanswered."""
    by_id = {result.call_id: result for result in item.results}
    return [
        by_id.get(call.id)
        or ToolResult(call_id=call.id, content="No result.", is_error=True)
        for call in item.calls
    ]


def _is_json(raw: str | None) -> bool:
    if raw is None or not raw.strip():
        return True
    try:
        json.loads(raw)
    except ValueError:
        return False
    return True


def _tool_call(block: dict[str, Any], raw_json: str | None) -> ToolCall:
    """A ToolCall from a tool_use block, its input read strictly from the streamed JSON
    (the SDK's snapshot accepts truncated JSON)."""
    if raw_json is None:
        arguments: Any = block.get("input", {})
        error = ""
    else:
        try:
            arguments = json.loads(raw_json) if raw_json.strip() else {}
            error = ""
        except ValueError as exc:
            arguments, error = {}, f"invalid JSON: {exc}"
    if not isinstance(arguments, dict):
        arguments, error = {}, "the input is not a JSON object"
    return ToolCall(
        id=str(block.get("id", "")),
        name=str(block.get("name", "")),
        arguments=arguments,
        arguments_error=error,
    )


def describe_error(exc: BaseException) -> str:
    """A short, safe description of a failed call: status and error type, no body."""
    if isinstance(exc, anthropic.APIStatusError):
        kind = _short(exc.type) or type(exc).__name__
        return f"{NAME}: HTTP {exc.status_code} {kind}"
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return f"{NAME}: timed out"
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        return f"{NAME}: connection failed"
    return f"{NAME}: unreadable response ({type(exc).__name__})"


def _short(value: object) -> str:
    return value[:60] if isinstance(value, str) else ""
