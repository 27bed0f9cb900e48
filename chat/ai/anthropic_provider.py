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

from chat.ai import http
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
    """What the stream left besides its text: the final message and each tool's raw
    input JSON by content block index."""

    message: Any = None
    stopped: bool = False
    tool_json: dict[int, str] = field(default_factory=dict)


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
        message = outcome.message
        calls = [
            _tool_call(block, outcome.tool_json.get(index))
            for index, block in enumerate(message.content)
            if block.type == "tool_use"
        ]
        return TurnResult(
            text=text,
            tool_calls=calls,
            input_tokens=message.usage.input_tokens or 0,
            output_tokens=message.usage.output_tokens or 0,
            model=message.model or self.model,
            stop_reason=message.stop_reason or "",
        )

    async def _stream(
        self, params: dict[str, Any], outcome: _Outcome
    ) -> AsyncIterator[str]:
        """The text deltas of one call; the SDK's and the transport's failures come out
        as ProviderError, the caller's own (``on_text``) are left alone."""
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
                http_client=http.async_http_client(),
                max_retries=0,
                timeout=settings.AI_TIMEOUT_SECONDS,
            ),
        )
        try:
            async with client.messages.stream(**params) as stream:
                async for event in stream:
                    if event.type == "content_block_delta":
                        delta = event.delta
                        if delta.type == "text_delta" and delta.text:
                            yield delta.text
                        elif delta.type == "input_json_delta":
                            raw = outcome.tool_json.get(event.index, "")
                            outcome.tool_json[event.index] = raw + delta.partial_json
                    elif event.type == "message_stop":
                        outcome.stopped = True
                outcome.message = await stream.get_final_message()
        except Exception as exc:
            raise ProviderError(describe_error(exc)) from exc
        if outcome.message is None:
            raise ProviderError(f"{NAME}: the stream had no message_start")
        if not outcome.stopped:
            raise ProviderError(f"{NAME}: the stream ended before message_stop")


def request_params(request: TurnRequest, *, model: str) -> dict[str, Any]:
    """The keyword arguments of ``messages.stream`` for this turn."""
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


def _tool_call(block: Any, raw_json: str | None) -> ToolCall:
    """A ToolCall from a tool_use block, its input read strictly from the streamed JSON
    (the SDK's snapshot accepts truncated JSON)."""
    if raw_json is None:
        arguments: Any = block.input
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
        id=block.id, name=block.name, arguments=arguments, arguments_error=error
    )


def describe_error(exc: BaseException) -> str:
    """A short, safe description of a failed call: status and error type, no body."""
    if isinstance(exc, anthropic.APIStatusError):
        kind = _short(exc.type) or type(exc).__name__
        if exc.status_code < 400:
            return f"{NAME}: error event {kind} in the stream"
        return f"{NAME}: HTTP {exc.status_code} {kind}"
    if isinstance(exc, anthropic.APITimeoutError | httpx2.TimeoutException):
        return f"{NAME}: timed out"
    if isinstance(exc, anthropic.APIConnectionError | httpx2.TransportError):
        return f"{NAME}: connection failed"
    return f"{NAME}: unreadable response ({type(exc).__name__})"


def _short(value: object) -> str:
    return value[:60] if isinstance(value, str) else ""
