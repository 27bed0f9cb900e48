"""The providers through the SDKs' own HTTP clients, against an API on loopback.

The other provider tests swap the transport for a scripted one; these keep the
client the web server uses (each SDK's ``DefaultAioHttpClient``) and answer over a
real socket on 127.0.0.1, served from the test's own event loop.
"""

from __future__ import annotations

import asyncio
import gc
import json
import time
import weakref
from dataclasses import dataclass, field
from typing import Any

import pytest

import chat.ai.http
from chat.ai.anthropic_provider import AnthropicProvider
from chat.ai.base import Provider, ProviderError, TurnRequest, UserText
from chat.ai.openai_provider import OpenAIProvider
from tests.chat.ai_transport import (
    StreamText,
    anthropic_events,
    anthropic_sse,
    openai_chunks,
    openai_sse,
)

# After the headers and the first event, a stalled answer sends nothing more.
STALL = object()


@dataclass
class LoopbackAPI:
    """An HTTP/1.1 server on 127.0.0.1 that answers each request with the next of
    ``answers`` (an SSE body, or STALL), keeping connections alive."""

    answers: list[Any]
    requests: list[dict[str, Any]] = field(default_factory=list)
    connections: int = 0
    handlers: list[asyncio.Task[None]] = field(default_factory=list)
    writers: list[asyncio.StreamWriter] = field(default_factory=list)
    closing: asyncio.Event = field(default_factory=asyncio.Event)

    async def __aenter__(self) -> LoopbackAPI:
        self.server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        port = self.server.sockets[0].getsockname()[1]
        self.url = f"http://127.0.0.1:{port}"
        return self

    async def __aexit__(self, *exc: object) -> None:
        # Every connection ends: a stalled answer stops waiting, a kept-alive
        # connection reads its end.
        self.closing.set()
        self.server.close()
        for writer in self.writers:
            writer.close()
        await asyncio.gather(*self.handlers)

    async def _serve(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        self.connections += 1
        self.handlers.append(asyncio.current_task())
        self.writers.append(writer)
        try:
            while True:
                try:
                    head = await reader.readuntil(b"\r\n\r\n")
                except (asyncio.IncompleteReadError, ConnectionError):
                    return
                request_line, *header_lines = head.decode("latin-1").split("\r\n")
                headers = {
                    name.lower(): value
                    for name, value in (
                        line.split(": ", 1) for line in header_lines if line
                    )
                }
                body = await reader.readexactly(int(headers.get("content-length", 0)))
                self.requests.append(
                    {
                        "line": request_line,
                        "headers": headers,
                        "body": json.loads(body),
                    }
                )
                answer = self.answers.pop(0)
                if answer is STALL:
                    writer.write(
                        b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                        b"transfer-encoding: chunked\r\n\r\n"
                    )
                    first = anthropic_sse(
                        anthropic_events([StreamText("Let me")])[:1], ping=False
                    )
                    writer.write(b"%x\r\n%s\r\n" % (len(first), first))
                    await writer.drain()
                    await self.closing.wait()
                    return
                writer.write(
                    b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\n"
                    b"content-length: %d\r\n\r\n%s" % (len(answer), answer)
                )
                await writer.drain()
        finally:
            writer.close()


def request(text: str = "How much is the windshield strip?") -> TurnRequest:
    return TurnRequest(
        system="You answer for a tint shop.",
        transcript=(UserText(text),),
        tools=(),
        max_tokens=200,
    )


async def turns(provider: Provider, count: int) -> list[Any]:
    results = []
    for _ in range(count):
        pieces: list[str] = []

        async def on_text(piece: str, pieces: list[str] = pieces) -> None:
            pieces.append(piece)

        result = await provider.turn(request(), on_text)
        results.append((result, "".join(pieces)))
    return results


@pytest.fixture
def api_settings(settings):
    settings.AI_TIMEOUT_SECONDS = 5.0
    settings.ANTHROPIC_API_KEY = "anthropic-test-key"
    settings.ANTHROPIC_MODEL = "claude-test-1"
    settings.OPENAI_API_KEY = "openai-test-key"
    settings.OPENAI_MODEL = "gpt-test-1"
    assert chat.ai.http.transport is None
    return settings


ANSWER = "Windshield strip is $79.00."


@pytest.mark.parametrize("name", ["anthropic", "openai"])
def test_answers_stream_over_one_kept_alive_connection(api_settings, name):
    if name == "anthropic":
        body = anthropic_sse(
            anthropic_events([StreamText(ANSWER)], input_tokens=321, output_tokens=12)
        )
    else:
        body = openai_sse(
            openai_chunks([StreamText(ANSWER)], prompt_tokens=321, completion_tokens=12)
        )

    async def scenario() -> tuple[LoopbackAPI, list[Any]]:
        async with LoopbackAPI([body, body]) as api:
            if name == "anthropic":
                api_settings.ANTHROPIC_BASE_URL = api.url
                provider: Provider = AnthropicProvider()
            else:
                api_settings.OPENAI_BASE_URL = f"{api.url}/v1"
                provider = OpenAIProvider()
            return api, await turns(provider, 2)

    api, results = asyncio.run(scenario())

    for result, streamed in results:
        assert streamed == result.text == ANSWER
        assert (result.input_tokens, result.output_tokens) == (321, 12)
    assert api.connections == 1
    first = api.requests[0]
    if name == "anthropic":
        assert first["line"] == "POST /v1/messages HTTP/1.1"
        assert first["headers"]["authorization"] == "Bearer anthropic-test-key"
        assert first["body"]["model"] == "claude-test-1"
    else:
        assert first["line"] == "POST /v1/chat/completions HTTP/1.1"
        assert first["headers"]["authorization"] == "Bearer openai-test-key"
        assert first["body"]["model"] == "gpt-test-1"
    assert first["body"]["stream"] is True


def test_a_stalled_stream_fails_within_the_read_timeout(api_settings):
    api_settings.AI_TIMEOUT_SECONDS = 0.5

    async def scenario() -> tuple[ProviderError | None, float]:
        async with LoopbackAPI([STALL]) as api:
            api_settings.ANTHROPIC_BASE_URL = api.url
            started = time.monotonic()
            try:
                await turns(AnthropicProvider(), 1)
            except ProviderError as error:
                return error, time.monotonic() - started
            return None, time.monotonic() - started

    error, elapsed = asyncio.run(scenario())

    assert error is not None
    assert "timed out" in str(error)
    assert elapsed < 3


def test_a_loop_closes_its_clients_when_it_shuts_down_and_is_freed(api_settings):
    body = anthropic_sse(anthropic_events([StreamText(ANSWER)]))

    async def scenario() -> tuple[list[Any], weakref.ref[Any]]:
        async with LoopbackAPI([body]) as api:
            api_settings.ANTHROPIC_BASE_URL = api.url
            await turns(AnthropicProvider(), 1)
            loop = asyncio.get_running_loop()
            clients = list(chat.ai.http._clients[loop].values())
            assert clients
            assert not any(client.is_closed for client in clients)
            return clients, weakref.ref(loop)

    clients, loop = asyncio.run(scenario())

    assert all(client.is_closed for client in clients)
    del clients
    gc.collect()
    assert loop() is None
