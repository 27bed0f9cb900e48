"""An Anthropic Messages API stand-in for benchmarks: answers at once, streamed.

A raw asyncio HTTP/1.1 server on loopback (keep-alive, no framework), run as its
own process so that its work is not the load generator's::

    .venv/bin/python bench/_ai_mock.py --port 8765

``POST /v1/messages`` gets a complete streaming answer in one write, the way the
API streams it (``tests/chat/ai_transport.py`` builds the same events for the
tests): message_start, ping, content_block_start (text), content_block_delta
(text_delta) for each few words, content_block_stop, message_delta (end_turn,
usage output_tokens), message_stop. Input tokens are estimated from the request's
size, so the recorded cost is not zero.

The mock times itself: from the arrival of a request's last bytes to the answer
handed to the socket. ``GET /stats`` returns those service times in microseconds,
grouped by the customer's first name found in the request (the system prompt's
customer block), in arrival order, so a benchmark can subtract the mock's own
time from each turn it measured. ``POST /reset`` clears them; ``GET /health`` answers 200.

Not a benchmark itself: the leading underscore keeps ``make bench`` from running it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import functools
import json
import re
import time
from collections import defaultdict
from typing import Any

MODEL = "claude-bench-mock"
ANSWER = (
    "Our ceramic window tint for a full sedan is $449.00 and takes about three "
    "hours. Want me to find you a time this week?"
)
WORDS_PER_DELTA = 2
# The customer's first name in the system prompt's customer block, JSON-escaped
# inside the request's JSON ({\"first_name\": \"Guest0007\", ...}).
FIRST_NAME = re.compile(rb'first_name\\*"\s*:\s*\\*"([^"\\]*)')
MAX_HEADER_BYTES = 64 * 1024


def sse_events(text: str, *, input_tokens: int, message_id: str) -> bytes:
    """The SSE body of one streamed text answer (end_turn); see :func:`answer_body`."""
    words = re.findall(r"\S+\s*", text)
    pieces = [
        "".join(words[i : i + WORDS_PER_DELTA])
        for i in range(0, len(words), WORDS_PER_DELTA)
    ]
    events: list[tuple[str, dict[str, Any]]] = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": message_id,
                    "type": "message",
                    "role": "assistant",
                    "model": MODEL,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": input_tokens, "output_tokens": 1},
                },
            },
        ),
        ("ping", {"type": "ping"}),
        (
            "content_block_start",
            {
                "type": "content_block_start",
                "index": 0,
                "content_block": {"type": "text", "text": ""},
            },
        ),
    ]
    events.extend(
        (
            "content_block_delta",
            {
                "type": "content_block_delta",
                "index": 0,
                "delta": {"type": "text_delta", "text": piece},
            },
        )
        for piece in pieces
    )
    events.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    events.append(
        (
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": "end_turn", "stop_sequence": None},
                "usage": {"output_tokens": max(1, len(words) * 4 // 3)},
            },
        )
    )
    events.append(("message_stop", {"type": "message_stop"}))
    return "".join(
        f"event: {name}\ndata: {json.dumps(data, separators=(',', ':'))}\n\n"
        for name, data in events
    ).encode()


@functools.cache
def _answer_rest(text: str) -> bytes:
    """Everything after message_start: the same for every request."""
    return sse_events(text, input_tokens=0, message_id="").split(b"\n\n", 1)[1]


def answer_body(text: str, *, input_tokens: int, message_id: str) -> bytes:
    """:func:`sse_events` without re-encoding the answer's events for each request."""
    start = {
        "type": "message_start",
        "message": {
            "id": message_id,
            "type": "message",
            "role": "assistant",
            "model": MODEL,
            "content": [],
            "stop_reason": None,
            "stop_sequence": None,
            "usage": {"input_tokens": input_tokens, "output_tokens": 1},
        },
    }
    head = f"event: message_start\ndata: {json.dumps(start, separators=(',', ':'))}\n\n"
    return head.encode() + _answer_rest(text)


class Stats:
    def __init__(self) -> None:
        self.reset()

    def reset(self) -> None:
        self.requests = 0
        self.errors = 0
        self.by_key: dict[str, list[int]] = defaultdict(list)

    def as_json(self) -> bytes:
        return json.dumps(
            {"requests": self.requests, "errors": self.errors, "by_key": self.by_key}
        ).encode()


class MockProtocol(asyncio.Protocol):
    """One keep-alive connection: requests in order, each answered in one write."""

    def __init__(self, stats: Stats) -> None:
        self.stats = stats
        self.buffer = bytearray()
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        # A request's service time starts when its last bytes arrive: the time the
        # client takes between writing its headers and its body is not the mock's.
        arrived = time.perf_counter()
        self.buffer += data
        while self.transport is not None:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEADER_BYTES:
                    self._reply(431, b"", close=True)
                return
            head = bytes(self.buffer[:end]).decode("latin1").split("\r\n")
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if "chunked" in headers.get("transfer-encoding", "").lower():
                self._reply(411, b"", close=True)
                return
            length = int(headers.get("content-length") or 0)
            if len(self.buffer) < end + 4 + length:
                return
            body = bytes(self.buffer[end + 4 : end + 4 + length])
            del self.buffer[: end + 4 + length]
            self._handle(head[0], headers, body, arrived)

    def _handle(
        self, request_line: str, headers: dict[str, str], body: bytes, started: float
    ) -> None:
        method, _, rest = request_line.partition(" ")
        path = rest.partition(" ")[0].partition("?")[0]
        close = headers.get("connection", "").lower() == "close"
        if method == "POST" and path == "/v1/messages":
            self.stats.requests += 1
            match = FIRST_NAME.search(body)
            key = match[1].decode(errors="replace") if match else ""
            payload = answer_body(
                ANSWER,
                input_tokens=max(1, len(body) // 4),
                message_id=f"msg_bench_{self.stats.requests:08d}",
            )
            self._reply(
                200,
                payload,
                content_type="text/event-stream; charset=utf-8",
                close=close,
            )
            micros = round((time.perf_counter() - started) * 1_000_000)
            self.stats.by_key[key].append(micros)
        elif method == "GET" and path == "/stats":
            self._reply(200, self.stats.as_json(), close=close)
        elif method == "POST" and path == "/reset":
            self.stats.reset()
            self._reply(200, b"{}", close=close)
        elif method == "GET" and path == "/health":
            self._reply(200, b'{"ok":true}', close=close)
        else:
            self.stats.errors += 1
            self._reply(404, b'{"type":"error"}', close=close)

    def _reply(
        self,
        status: int,
        body: bytes,
        *,
        content_type: str = "application/json",
        close: bool = False,
    ) -> None:
        if self.transport is None:
            return
        reason = {200: "OK", 404: "Not Found", 411: "Length Required"}.get(status, "")
        head = (
            f"HTTP/1.1 {status} {reason}\r\n"
            f"content-type: {content_type}\r\n"
            f"content-length: {len(body)}\r\n"
            f"request-id: req_bench\r\n"
            f"connection: {'close' if close else 'keep-alive'}\r\n\r\n"
        ).encode()
        self.transport.write(head + body)
        if close:
            self.transport.close()
            self.transport = None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None


async def serve(host: str, port: int) -> None:
    stats = Stats()
    loop = asyncio.get_running_loop()
    server = await loop.create_server(
        lambda: MockProtocol(stats), host, port, backlog=1024, reuse_address=True
    )
    print(f"Anthropic mock on http://{host}:{port}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    args = parser.parse_args()
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(serve(args.host, args.port))


if __name__ == "__main__":
    main()
