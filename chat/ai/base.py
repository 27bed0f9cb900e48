"""What every assistant provider speaks: a neutral transcript in, one turn out.

A turn is one call to a model. The service (``chat.ai.service``) runs the loop:
it asks a provider for a turn, runs the tools the turn asks for, appends the
calls and their results to the transcript and asks again, until a turn has no
tool calls. Providers translate the neutral transcript to their API's shapes
and back; they never run tools and never touch the database.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from django.conf import settings


@dataclass(frozen=True)
class ToolSpec:
    """A tool the model may call: its name, what it does, its arguments as JSON Schema."""

    name: str
    description: str
    parameters: dict[str, Any]


@dataclass(frozen=True)
class ToolCall:
    """A call the model asked for. ``arguments`` is what the model sent, unvalidated;
    ``arguments_error`` says why they could not be read (invalid JSON)."""

    id: str
    name: str
    arguments: dict[str, Any]
    arguments_error: str = ""


@dataclass(frozen=True)
class UserText:
    """A customer's message."""

    text: str


@dataclass(frozen=True)
class AssistantText:
    """An earlier answer of the assistant (or a staff member's, shown to the model as the
    assistant's side of the conversation)."""

    text: str


@dataclass(frozen=True)
class ToolRound:
    """One turn that called tools: the text before the calls, the calls and their results,
    in the order of the calls."""

    text: str
    calls: tuple[ToolCall, ...]
    results: tuple[ToolResult, ...]


@dataclass(frozen=True)
class ToolResult:
    call_id: str
    content: str
    is_error: bool = False


TranscriptItem = UserText | AssistantText | ToolRound


@dataclass(frozen=True)
class TurnRequest:
    system: str
    transcript: tuple[TranscriptItem, ...]
    tools: tuple[ToolSpec, ...]
    max_tokens: int


@dataclass
class TurnResult:
    text: str
    tool_calls: list[ToolCall] = field(default_factory=list)
    input_tokens: int = 0
    output_tokens: int = 0
    model: str = ""
    stop_reason: str = ""


# Called with each piece of text as the model produces it.
TextSink = Callable[[str], Awaitable[None]]


class ProviderError(Exception):
    """A provider could not answer (HTTP error, bad response, refused request)."""


class Provider(Protocol):
    name: str
    model: str

    def is_configured(self) -> bool:
        """Whether this provider can be called (its API key is set)."""

    def cost(self, *, input_tokens: int, output_tokens: int) -> Decimal:
        """What these tokens cost in USD at the configured prices."""

    async def turn(self, request: TurnRequest, on_text: TextSink) -> TurnResult:
        """One model call, streaming its text to ``on_text``.

        Raises ProviderError (or any exception) when it cannot answer; the
        service then tries the next provider.
        """


def price(
    *, input_tokens: int, output_tokens: int, input_per_mtok: str, output_per_mtok: str
) -> Decimal:
    """USD for a call at prices given per million tokens."""
    return (
        Decimal(input_tokens) * Decimal(input_per_mtok)
        + Decimal(output_tokens) * Decimal(output_per_mtok)
    ) / Decimal(1_000_000)


class ConfiguredProvider:
    """A remote provider set up by settings named after it: <PREFIX>_API_KEY,
    <PREFIX>_MODEL, <PREFIX>_INPUT_USD_PER_MTOK and <PREFIX>_OUTPUT_USD_PER_MTOK."""

    settings_prefix: str

    def _setting(self, name: str) -> Any:
        return getattr(settings, f"{self.settings_prefix}_{name}")

    @property
    def model(self) -> str:
        return self._setting("MODEL")

    def is_configured(self) -> bool:
        return bool(self._setting("API_KEY"))

    def cost(self, *, input_tokens: int, output_tokens: int) -> Decimal:
        return price(
            input_tokens=input_tokens,
            output_tokens=output_tokens,
            input_per_mtok=self._setting("INPUT_USD_PER_MTOK"),
            output_per_mtok=self._setting("OUTPUT_USD_PER_MTOK"),
        )


async def relay(deltas: AsyncIterator[str], on_text: TextSink) -> str:
    """Pass each piece of a stream's text to ``on_text``; return the whole text."""
    pieces: list[str] = []
    async with aclosing(deltas) as stream:
        async for delta in stream:
            pieces.append(delta)
            await on_text(delta)
    return "".join(pieces)
