"""The Anthropic and OpenAI providers through the real SDKs, HTTP mocked at the transport."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Callable
from decimal import Decimal

import anthropic
import httpx2
import openai
import pytest

import chat.ai.http
from chat.ai import sse
from chat.ai.anthropic_provider import AnthropicProvider
from chat.ai.anthropic_provider import transcript_messages as anthropic_messages
from chat.ai.base import (
    AssistantText,
    Provider,
    ProviderError,
    ToolCall,
    ToolResult,
    ToolRound,
    ToolSpec,
    TurnRequest,
    TurnResult,
    UserText,
)
from chat.ai.openai_provider import OpenAIProvider
from tests.chat.ai_transport import (
    ANTHROPIC_TEST_MODEL,
    OPENAI_TEST_MODEL,
    ScriptedTransport,
    StreamText,
    StreamToolUse,
    anthropic_error,
    anthropic_events,
    anthropic_sse,
    anthropic_stream,
    anthropic_text_stream,
    anthropic_tool_stream,
    openai_chunks,
    openai_error,
    openai_sse,
    openai_stream,
    openai_text_stream,
    openai_tool_stream,
    sse_body,
    sse_response,
    stream_then_raise,
)
from tests.processes import application_env, run_python

Script = Callable[[list], ScriptedTransport]

BOOK_SLOT = ToolSpec(
    name="book_slot",
    description="Book an appointment slot.",
    parameters={
        "type": "object",
        "properties": {"slot": {"type": "string"}, "service": {"type": "string"}},
        "required": ["slot"],
    },
)
FIND_SLOTS = ToolSpec(
    name="find_slots",
    description="Free slots on a day.",
    parameters={"type": "object", "properties": {"day": {"type": "string"}}},
)

CALL_FIND = ToolCall(id="call_find", name="find_slots", arguments={"day": "2026-03-02"})
CALL_BOOK = ToolCall(id="call_book", name="book_slot", arguments={"slot": "09:00"})
ROUND = ToolRound(
    text="Let me check.",
    calls=(CALL_FIND, CALL_BOOK),
    results=(
        ToolResult(call_id="call_find", content='{"slots": ["09:00"]}'),
        ToolResult(call_id="call_book", content="slot taken", is_error=True),
    ),
)


def turn_request(
    *items: UserText | AssistantText | ToolRound,
    tools: tuple[ToolSpec, ...] = (BOOK_SLOT,),
    max_tokens: int = 321,
) -> TurnRequest:
    return TurnRequest(
        system="You are the booking assistant of Alpha Tint.",
        transcript=items or (UserText("Can I book a tint on Monday?"),),
        tools=tools,
        max_tokens=max_tokens,
    )


def run_turn(provider: Provider, request: TurnRequest) -> tuple[TurnResult, list[str]]:
    """One turn on a fresh event loop; returns the result and the pieces streamed."""
    pieces: list[str] = []

    async def on_text(piece: str) -> None:
        pieces.append(piece)

    result = asyncio.run(provider.turn(request, on_text))
    return result, pieces


def turn_error(provider: Provider, request: TurnRequest) -> ProviderError:
    with pytest.raises(ProviderError) as caught:
        run_turn(provider, request)
    return caught.value


@pytest.fixture
def script(monkeypatch: pytest.MonkeyPatch) -> Script:
    """Installs a ScriptedTransport with these answers as the providers' transport."""

    def install(answers: list) -> ScriptedTransport:
        transport = ScriptedTransport(answers)
        monkeypatch.setattr(chat.ai.http, "transport", transport)
        return transport

    return install


@pytest.fixture
def claude(settings) -> AnthropicProvider:
    settings.ANTHROPIC_API_KEY = "test-key"
    settings.ANTHROPIC_MODEL = ANTHROPIC_TEST_MODEL
    settings.ANTHROPIC_INPUT_USD_PER_MTOK = "3.00"
    settings.ANTHROPIC_OUTPUT_USD_PER_MTOK = "15.00"
    settings.AI_TIMEOUT_SECONDS = 5.0
    return AnthropicProvider()


@pytest.fixture
def gpt(settings) -> OpenAIProvider:
    settings.OPENAI_API_KEY = "test-key"
    settings.OPENAI_MODEL = OPENAI_TEST_MODEL
    settings.OPENAI_INPUT_USD_PER_MTOK = "0.40"
    settings.OPENAI_OUTPUT_USD_PER_MTOK = "1.60"
    settings.AI_TIMEOUT_SECONDS = 5.0
    return OpenAIProvider()


def assert_safe(error: ProviderError, *secrets: str) -> None:
    """The message is short and holds neither the key nor the body."""
    message = str(error)
    assert len(message) < 120
    for secret in ("test-key", *secrets):
        assert secret not in message


# --- Anthropic ------------------------------------------------------------------------


def test_anthropic_streams_text_in_pieces_and_reports_usage_and_cost(claude, script):
    transport = script([anthropic_text_stream("Monday at nine works well.", 1234, 567)])

    result, pieces = run_turn(claude, turn_request())

    assert len(pieces) > 1
    assert "".join(pieces) == result.text == "Monday at nine works well."
    assert result.tool_calls == []
    assert (result.input_tokens, result.output_tokens) == (1234, 567)
    assert result.model == ANTHROPIC_TEST_MODEL
    assert result.stop_reason == "end_turn"
    cost = claude.cost(input_tokens=1234, output_tokens=567)
    assert cost == Decimal("0.012207")
    assert claude.name == "anthropic"
    assert claude.model == ANTHROPIC_TEST_MODEL
    assert claude.is_configured()
    sent = transport.last
    assert (sent.method, sent.path) == ("POST", "/v1/messages")
    # anthropic 2.x sends the API key as a bearer token, not as x-api-key
    assert sent.headers["authorization"] == "Bearer test-key"
    assert sent.headers["anthropic-version"]
    transport.assert_done()


def test_anthropic_tool_use_turn_returns_the_calls(claude, script):
    script(
        [
            anthropic_stream(
                [
                    StreamText("Booking it now."),
                    StreamToolUse(
                        "toolu_01",
                        "book_slot",
                        {"slot": "09:00", "extras": {"tint": "ceramic", "doors": 4}},
                        fragments=3,
                    ),
                    StreamToolUse("toolu_02", "find_slots", {"day": "2026-03-03"}),
                ],
                input_tokens=50,
                output_tokens=40,
            )
        ]
    )

    result, pieces = run_turn(claude, turn_request())

    assert result.text == "".join(pieces) == "Booking it now."
    assert result.stop_reason == "tool_use"
    assert result.tool_calls == [
        ToolCall(
            id="toolu_01",
            name="book_slot",
            arguments={"slot": "09:00", "extras": {"tint": "ceramic", "doors": 4}},
        ),
        ToolCall(id="toolu_02", name="find_slots", arguments={"day": "2026-03-03"}),
    ]
    assert (result.input_tokens, result.output_tokens) == (50, 40)


def test_anthropic_tool_call_without_input_deltas_has_empty_arguments(claude, script):
    script([anthropic_tool_stream("toolu_01", "find_slots", {})])

    result, _ = run_turn(claude, turn_request())

    assert result.tool_calls == [
        ToolCall(id="toolu_01", name="find_slots", arguments={})
    ]


def test_anthropic_truncated_tool_input_is_reported_not_raised(claude, script):
    script(
        [
            anthropic_stream(
                [StreamToolUse("toolu_01", "book_slot", '{"slot": "09:')],
                stop_reason="max_tokens",
            )
        ]
    )

    result, _ = run_turn(claude, turn_request())

    (call,) = result.tool_calls
    assert (call.id, call.name, call.arguments) == ("toolu_01", "book_slot", {})
    assert call.arguments_error
    assert result.stop_reason == "max_tokens"


def test_anthropic_request_body_translates_the_transcript(claude, script):
    transport = script([anthropic_text_stream("Done.")])
    request = turn_request(
        AssistantText("Hello! How can I help?"),
        UserText("Hi"),
        UserText("I need a tint on Monday"),
        AssistantText("Sure, one moment."),
        ROUND,
        UserText("Thanks!"),
        tools=(BOOK_SLOT, FIND_SLOTS),
        max_tokens=321,
    )

    run_turn(claude, request)

    body = transport.last.json
    assert body["model"] == ANTHROPIC_TEST_MODEL
    assert body["max_tokens"] == 321
    assert body["stream"] is True
    assert body["system"] == "You are the booking assistant of Alpha Tint."
    assert "temperature" not in body
    assert body["tools"] == [
        {
            "name": "book_slot",
            "description": "Book an appointment slot.",
            "input_schema": BOOK_SLOT.parameters,
        },
        {
            "name": "find_slots",
            "description": "Free slots on a day.",
            "input_schema": FIND_SLOTS.parameters,
        },
    ]
    assert body["messages"] == [
        {
            "role": "user",
            "content": [
                {"type": "text", "text": "Hi"},
                {"type": "text", "text": "I need a tint on Monday"},
            ],
        },
        {
            "role": "assistant",
            "content": [
                {"type": "text", "text": "Sure, one moment."},
                {"type": "text", "text": "Let me check."},
                {
                    "type": "tool_use",
                    "id": "call_find",
                    "name": "find_slots",
                    "input": {"day": "2026-03-02"},
                },
                {
                    "type": "tool_use",
                    "id": "call_book",
                    "name": "book_slot",
                    "input": {"slot": "09:00"},
                },
            ],
        },
        {
            "role": "user",
            "content": [
                {
                    "type": "tool_result",
                    "tool_use_id": "call_find",
                    "content": '{"slots": ["09:00"]}',
                    "is_error": False,
                },
                {
                    "type": "tool_result",
                    "tool_use_id": "call_book",
                    "content": "slot taken",
                    "is_error": True,
                },
                {"type": "text", "text": "Thanks!"},
            ],
        },
    ]


def test_anthropic_request_without_tools_omits_them(claude, script):
    transport = script([anthropic_text_stream("Hello.")])

    run_turn(claude, turn_request(UserText("Hi"), tools=()))

    body = transport.last.json
    assert "tools" not in body
    assert body["messages"] == [
        {"role": "user", "content": [{"type": "text", "text": "Hi"}]}
    ]


def test_anthropic_messages_alternate_and_start_with_the_user():
    first = ToolRound(
        text="",
        calls=(CALL_FIND,),
        results=(ToolResult(call_id="call_find", content="[]"),),
    )
    second = ToolRound(
        text="  ",
        calls=(CALL_BOOK,),
        results=(),
    )

    messages = anthropic_messages(
        (
            ROUND,
            AssistantText("Earlier answer"),
            UserText("Monday?"),
            first,
            second,
            AssistantText("Booked."),
            AssistantText(""),
            AssistantText("Anything else?"),
        )
    )

    assert [m["role"] for m in messages] == [
        "user",
        "assistant",
        "user",
        "assistant",
        "user",
        "assistant",
    ]
    assert messages[0]["content"] == [{"type": "text", "text": "Monday?"}]
    assert messages[1]["content"] == [
        {
            "type": "tool_use",
            "id": "call_find",
            "name": "find_slots",
            "input": {"day": "2026-03-02"},
        }
    ]
    assert messages[3]["content"] == [
        {
            "type": "tool_use",
            "id": "call_book",
            "name": "book_slot",
            "input": {"slot": "09:00"},
        }
    ]
    # a call without a result is answered with an error, as the API requires
    assert messages[4]["content"] == [
        {
            "type": "tool_result",
            "tool_use_id": "call_book",
            "content": "No result.",
            "is_error": True,
        }
    ]
    assert messages[5]["content"] == [
        {"type": "text", "text": "Booked."},
        {"type": "text", "text": "Anything else?"},
    ]


def test_anthropic_server_error_becomes_provider_error(claude, script):
    transport = script([anthropic_error(500, "api_error", "secret internal detail")])

    error = turn_error(claude, turn_request())

    assert "500" in str(error)
    assert "api_error" in str(error)
    assert isinstance(error.__cause__, anthropic.InternalServerError)
    assert_safe(error, "secret internal detail")
    assert len(transport.requests) == 1


def test_anthropic_overloaded_and_auth_errors_name_status_and_type(claude, script):
    script(
        [
            anthropic_error(529, "overloaded_error", "Overloaded"),
            anthropic_error(401, "authentication_error", "invalid x-api-key"),
        ]
    )

    overloaded = turn_error(claude, turn_request())
    refused = turn_error(claude, turn_request())

    assert "529" in str(overloaded)
    assert "overloaded_error" in str(overloaded)
    assert "401" in str(refused)
    assert "authentication_error" in str(refused)
    assert isinstance(refused.__cause__, anthropic.AuthenticationError)
    assert_safe(refused, "invalid x-api-key")


def test_anthropic_timeout_becomes_provider_error(claude, script):
    transport = script([httpx2.ReadTimeout])

    error = turn_error(claude, turn_request())

    assert "timed out" in str(error)
    assert isinstance(error.__cause__, anthropic.APITimeoutError)
    assert len(transport.requests) == 1


def test_anthropic_connection_error_becomes_provider_error(claude, script):
    script([httpx2.ConnectError("connection refused")])

    error = turn_error(claude, turn_request())

    assert "connection" in str(error)
    assert isinstance(error.__cause__, anthropic.APIConnectionError)


def test_anthropic_timeout_in_the_middle_of_the_stream(claude, script):
    events = anthropic_events([StreamText(["Monday ", "at ", "nine"])])
    partial = anthropic_sse(events[:4])
    script([stream_then_raise(partial, httpx2.ReadTimeout("read timed out"))])
    pieces: list[str] = []

    async def on_text(piece: str) -> None:
        pieces.append(piece)

    with pytest.raises(ProviderError, match="timed out"):
        asyncio.run(claude.turn(turn_request(), on_text))
    assert pieces == ["Monday ", "at "]


def test_anthropic_error_event_in_the_stream(claude, script):
    events = anthropic_events([StreamText("Monday")])
    error_event = {
        "type": "error",
        "error": {"type": "overloaded_error", "message": "Overloaded"},
    }
    body = anthropic_sse(events[:3]) + sse_body([("error", error_event)])
    script([sse_response(body)])

    error = turn_error(claude, turn_request())

    assert str(error) == "anthropic: error event overloaded_error in the stream"


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(
            sse_body([("message_start", "{not json")]),
            id="invalid-json",
        ),
        pytest.param(
            anthropic_sse(anthropic_events([StreamText("Hi")])[1:]),
            id="no-message-start",
        ),
        pytest.param(
            anthropic_sse(anthropic_events([StreamText("Hi there")])[:-2]),
            id="cut-before-message-stop",
        ),
        pytest.param(
            anthropic_sse(
                anthropic_events([StreamToolUse("toolu_1", "book_slot", '{"slot": x}')])
            ),
            id="invalid-tool-json",
        ),
        pytest.param(b"", id="empty"),
    ],
)
def test_anthropic_malformed_stream_becomes_provider_error(claude, script, body):
    script([sse_response(body)])

    error = turn_error(claude, turn_request())

    assert str(error).startswith("anthropic: ")
    assert_safe(error)


SSE_BODY = (
    b": a comment\r\n"
    b"event: message_start\r\n"
    b'data: {"type": "message_start",\r\n'
    b'data: "text": "two lines"}\r\n'
    b"\r\n"
    b"event: ping\n"
    b"\n"
    b'data:{"type":"ping"}\n'
    b"id: 7\n"
    b"\n"
)


def _read_sse(chunks: list[bytes]) -> list:
    async def feed():
        for chunk in chunks:
            yield chunk

    async def read():
        return [event async for event in sse.json_events(feed())]

    return asyncio.run(read())


def test_sse_events_come_out_whole_however_the_body_is_cut():
    expected = [
        {"type": "message_start", "text": "two lines"},
        {"type": "ping"},
    ]
    assert _read_sse([SSE_BODY]) == expected
    for cut in range(1, len(SSE_BODY)):
        assert _read_sse([SSE_BODY[:cut], SSE_BODY[cut:]]) == expected, cut
    assert _read_sse([bytes([b]) for b in SSE_BODY]) == expected


def test_the_done_event_ends_the_events_and_the_rest_is_still_read():
    """OpenAI's ``data: [DONE]``: nothing after it is parsed (not even junk), and the
    body is read to its end, so the connection can go back to the pool."""
    sent: list[bytes] = []
    body = [b'data: {"n": 1}\n\n', b"data: [DONE]\n\ndata: {not json", b"\n\n", b"tail"]

    async def feed():
        for chunk in body:
            sent.append(chunk)
            yield chunk

    async def read():
        return [event async for event in sse.json_events(feed(), done=b"[DONE]")]

    assert asyncio.run(read()) == [{"n": 1}]
    assert sent == body


def test_an_sse_event_that_is_not_an_object_is_unreadable():
    with pytest.raises(ValueError, match="not a JSON object"):
        _read_sse([b"data: [1, 2]\n\n"])


def test_anthropic_errors_of_on_text_are_not_provider_errors(claude, script):
    script([anthropic_text_stream("Monday at nine.")])

    async def on_text(piece: str) -> None:
        raise ConnectionResetError("the customer left")

    with pytest.raises(ConnectionResetError):
        asyncio.run(claude.turn(turn_request(), on_text))


def test_anthropic_without_a_key_is_not_configured_and_sends_nothing(
    claude, script, settings
):
    settings.ANTHROPIC_API_KEY = ""
    transport = script([])

    assert not claude.is_configured()
    error = turn_error(claude, turn_request())

    assert "no API key" in str(error)
    assert transport.requests == []


# --- OpenAI ---------------------------------------------------------------------------


def test_openai_streams_text_in_pieces_and_reports_usage_and_cost(gpt, script):
    transport = script([openai_text_stream("Monday at nine works well.", 1234, 567)])

    result, pieces = run_turn(gpt, turn_request())

    assert len(pieces) > 1
    assert "".join(pieces) == result.text == "Monday at nine works well."
    assert result.tool_calls == []
    assert (result.input_tokens, result.output_tokens) == (1234, 567)
    assert result.model == OPENAI_TEST_MODEL
    assert result.stop_reason == "stop"
    assert gpt.cost(input_tokens=1234, output_tokens=567) == Decimal("0.0014008")
    assert gpt.name == "openai"
    assert gpt.model == OPENAI_TEST_MODEL
    assert gpt.is_configured()
    sent = transport.last
    assert (sent.method, sent.path) == ("POST", "/v1/chat/completions")
    assert sent.headers["authorization"] == "Bearer test-key"
    assert "x-api-key" not in sent.headers
    transport.assert_done()


def test_openai_tool_calls_are_put_together_by_index(gpt, script):
    script(
        [
            openai_stream(
                [
                    StreamText("Booking it now."),
                    StreamToolUse(
                        "call_1",
                        "book_slot",
                        {"slot": "09:00", "extras": {"tint": "ceramic", "doors": 4}},
                        fragments=4,
                    ),
                    StreamToolUse("call_2", "find_slots", {"day": "2026-03-03"}),
                ],
                prompt_tokens=50,
                completion_tokens=40,
            )
        ]
    )

    result, pieces = run_turn(gpt, turn_request())

    assert result.text == "".join(pieces) == "Booking it now."
    assert result.stop_reason == "tool_calls"
    assert result.tool_calls == [
        ToolCall(
            id="call_1",
            name="book_slot",
            arguments={"slot": "09:00", "extras": {"tint": "ceramic", "doors": 4}},
        ),
        ToolCall(id="call_2", name="find_slots", arguments={"day": "2026-03-03"}),
    ]
    assert (result.input_tokens, result.output_tokens) == (50, 40)


@pytest.mark.parametrize(
    "arguments",
    [
        pytest.param('{"slot": "09:00"', id="truncated"),
        pytest.param("slot=09:00", id="not-json"),
        pytest.param('["09:00"]', id="not-an-object"),
    ],
)
def test_openai_unreadable_tool_arguments_are_reported_not_raised(
    gpt, script, arguments
):
    script([openai_tool_stream("call_1", "book_slot", arguments)])

    result, _ = run_turn(gpt, turn_request())

    (call,) = result.tool_calls
    assert (call.id, call.name, call.arguments) == ("call_1", "book_slot", {})
    assert call.arguments_error


def test_openai_tool_call_with_empty_arguments(gpt, script):
    script([openai_tool_stream("call_1", "find_slots", "")])

    result, _ = run_turn(gpt, turn_request())

    assert result.tool_calls == [ToolCall(id="call_1", name="find_slots", arguments={})]


def test_openai_request_body_translates_the_transcript(gpt, script):
    transport = script([openai_text_stream("Done.")])
    silent_round = ToolRound(
        text="",
        calls=(CALL_FIND,),
        results=(ToolResult(call_id="call_find", content="[]"),),
    )
    request = turn_request(
        AssistantText("Hello! How can I help?"),
        UserText("I need a tint on Monday"),
        ROUND,
        silent_round,
        UserText("Thanks!"),
        tools=(BOOK_SLOT, FIND_SLOTS),
        max_tokens=321,
    )

    run_turn(gpt, request)

    body = transport.last.json
    assert body["model"] == OPENAI_TEST_MODEL
    assert body["max_completion_tokens"] == 321
    assert "max_tokens" not in body
    assert body["stream"] is True
    assert body["stream_options"] == {"include_usage": True}
    assert body["tools"] == [
        {
            "type": "function",
            "function": {
                "name": "book_slot",
                "description": "Book an appointment slot.",
                "parameters": BOOK_SLOT.parameters,
            },
        },
        {
            "type": "function",
            "function": {
                "name": "find_slots",
                "description": "Free slots on a day.",
                "parameters": FIND_SLOTS.parameters,
            },
        },
    ]
    messages = body["messages"]
    assert messages[0] == {
        "role": "system",
        "content": "You are the booking assistant of Alpha Tint.",
    }
    assert messages[1:3] == [
        {"role": "assistant", "content": "Hello! How can I help?"},
        {"role": "user", "content": "I need a tint on Monday"},
    ]
    assistant = messages[3]
    assert assistant["role"] == "assistant"
    assert assistant["content"] == "Let me check."
    assert [
        (
            c["id"],
            c["type"],
            c["function"]["name"],
            json.loads(c["function"]["arguments"]),
        )
        for c in assistant["tool_calls"]
    ] == [
        ("call_find", "function", "find_slots", {"day": "2026-03-02"}),
        ("call_book", "function", "book_slot", {"slot": "09:00"}),
    ]
    assert messages[4:6] == [
        {
            "role": "tool",
            "tool_call_id": "call_find",
            "content": '{"slots": ["09:00"]}',
        },
        {"role": "tool", "tool_call_id": "call_book", "content": "Error: slot taken"},
    ]
    assert messages[6]["content"] is None
    assert [c["id"] for c in messages[6]["tool_calls"]] == ["call_find"]
    assert messages[7:] == [
        {"role": "tool", "tool_call_id": "call_find", "content": "[]"},
        {"role": "user", "content": "Thanks!"},
    ]


def test_openai_request_without_tools_omits_them(gpt, script):
    transport = script([openai_text_stream("Hello.")])

    run_turn(gpt, turn_request(UserText("Hi"), tools=()))

    body = transport.last.json
    assert "tools" not in body
    assert body["messages"][1:] == [{"role": "user", "content": "Hi"}]


def test_openai_server_error_becomes_provider_error(gpt, script):
    transport = script([openai_error(500, "server_error", "secret internal detail")])

    error = turn_error(gpt, turn_request())

    assert "500" in str(error)
    assert "server_error" in str(error)
    assert isinstance(error.__cause__, openai.InternalServerError)
    assert_safe(error, "secret internal detail")
    assert len(transport.requests) == 1


def test_openai_rate_limit_names_status_and_type(gpt, script):
    script([openai_error(429, "requests", "Rate limit reached for test-key")])

    error = turn_error(gpt, turn_request())

    assert "429" in str(error)
    assert "requests" in str(error)
    assert isinstance(error.__cause__, openai.RateLimitError)
    assert_safe(error, "Rate limit reached")


def test_openai_timeout_becomes_provider_error(gpt, script):
    transport = script([httpx2.ReadTimeout])

    error = turn_error(gpt, turn_request())

    assert "timed out" in str(error)
    assert isinstance(error.__cause__, openai.APITimeoutError)
    assert len(transport.requests) == 1


def test_openai_timeout_in_the_middle_of_the_stream(gpt, script):
    chunks = openai_chunks([StreamText(["Monday ", "at ", "nine"])])
    partial = openai_sse(chunks[:3], done=False)
    script([stream_then_raise(partial, httpx2.ReadTimeout("read timed out"))])
    pieces: list[str] = []

    async def on_text(piece: str) -> None:
        pieces.append(piece)

    with pytest.raises(ProviderError, match="timed out"):
        asyncio.run(gpt.turn(turn_request(), on_text))
    assert pieces == ["Monday ", "at "]


@pytest.mark.parametrize(
    "body",
    [
        pytest.param(sse_body([(None, "{not json")]), id="invalid-json"),
        pytest.param(
            openai_sse(openai_chunks([StreamText("Hi there")])[:2]),
            id="no-finish-reason",
        ),
        pytest.param(
            sse_body([(None, {"error": {"message": "boom", "type": "server_error"}})]),
            id="error-object",
        ),
        pytest.param(sse_body([(None, {"unexpected": True})]), id="not-a-chunk"),
        pytest.param(b"", id="empty"),
    ],
)
def test_openai_malformed_stream_becomes_provider_error(gpt, script, body):
    script([sse_response(body)])

    error = turn_error(gpt, turn_request())

    assert str(error).startswith("openai: ")
    assert_safe(error, "boom")


def test_openai_stream_without_usage_reports_no_tokens(gpt, script):
    chunks = openai_chunks([StreamText("Hi")], usage=False)
    script([sse_response(openai_sse(chunks))])

    result, _ = run_turn(gpt, turn_request())

    assert result.text == "Hi"
    assert (result.input_tokens, result.output_tokens) == (0, 0)


def test_openai_errors_of_on_text_are_not_provider_errors(gpt, script):
    script([openai_text_stream("Monday at nine.")])

    async def on_text(piece: str) -> None:
        raise ConnectionResetError("the customer left")

    with pytest.raises(ConnectionResetError):
        asyncio.run(gpt.turn(turn_request(), on_text))


def test_openai_without_a_key_is_not_configured_and_sends_nothing(
    gpt, script, settings
):
    settings.OPENAI_API_KEY = ""
    transport = script([])

    assert not gpt.is_configured()
    error = turn_error(gpt, turn_request())

    assert "no API key" in str(error)
    assert transport.requests == []


WEB_SERVER_IMPORTS = (
    "import sys, leadorch.asgi; "
    "print(sorted(m for m in ('anthropic', 'openai') if m in sys.modules))"
)


@pytest.mark.parametrize(
    ("provider", "loaded"),
    [("anthropic", ["anthropic", "openai"]), ("scripted", [])],
)
def test_the_web_server_loads_the_sdks_it_may_call_before_any_answer(
    tmp_path, provider, loaded
):
    """The first answer does not spend seconds importing an SDK on the event loop."""
    env = application_env(tmp_path, AI_PROVIDER=provider, ANTHROPIC_API_KEY="sk-test")
    result = run_python(["-c", WEB_SERVER_IMPORTS], env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == repr(loaded)
