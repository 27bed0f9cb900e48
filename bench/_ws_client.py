"""A minimal WebSocket client (RFC 6455) over asyncio, for load generators.

Why not a library: ``websockets`` is not installed, and autobahn (which daphne
brings) cannot run on asyncio in a process that loaded Django: daphne's app
imports autobahn's Twisted flavour, and txaio then refuses asyncio ("Explicitly
using 'twisted' already").

Text and binary messages (fragmented ones reassembled), masked client frames,
ping answered with pong, the closing handshake. No extensions, no TLS. Each
message is stamped with ``time.perf_counter()`` when its last bytes were read
from the socket, before any other work::

    ws = await connect(
        "127.0.0.1", 8000, "/ws/chat/abc/",
        host="brand.localhost:8000", origin="http://brand.localhost:8000",
    )
    ws.send_text('{"type": "ping"}')
    arrived, text = await ws.receive()  # text None: the socket closed
    await ws.close()

Not a benchmark itself: the leading underscore keeps ``make bench`` from running it.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import os
import struct
import time

GUID = b"258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
TEXT, BINARY, CLOSE, PING, PONG, CONTINUATION = 0x1, 0x2, 0x8, 0x9, 0xA, 0x0
MAX_HEAD = 16 * 1024


class HandshakeError(ConnectionError):
    """The server did not switch to WebSocket (an HTTP status, or a bad accept key)."""


def _mask(payload: bytes, key: bytes) -> bytes:
    if not payload:
        return payload
    n = len(payload)
    repeated = (key * (n // 4 + 1))[:n]
    return (int.from_bytes(payload, "big") ^ int.from_bytes(repeated, "big")).to_bytes(
        n, "big"
    )


def frame(opcode: int, payload: bytes) -> bytes:
    """One final, masked client frame."""
    length = len(payload)
    if length < 126:
        head = struct.pack("!BB", 0x80 | opcode, 0x80 | length)
    elif length < 1 << 16:
        head = struct.pack("!BBH", 0x80 | opcode, 0x80 | 126, length)
    else:
        head = struct.pack("!BBQ", 0x80 | opcode, 0x80 | 127, length)
    key = os.urandom(4)
    return head + key + _mask(payload, key)


class WebSocket(asyncio.Protocol):
    def __init__(self, request: bytes, key: str) -> None:
        self.request = request
        self.expected_accept = base64.b64encode(
            hashlib.sha1(key.encode() + GUID).digest()  # noqa: S324 - the protocol's hash
        ).decode()
        self.loop = asyncio.get_running_loop()
        self.opened: asyncio.Future[None] = self.loop.create_future()
        self.closed: asyncio.Future[None] = self.loop.create_future()
        self.messages: asyncio.Queue[tuple[float, str | bytes | None]] = asyncio.Queue()
        self.transport: asyncio.Transport | None = None
        self.buffer = bytearray()
        self.fragments: list[bytes] = []
        self.fragment_opcode = 0
        self.close_code: int | None = None
        self.close_sent = False

    # --- asyncio.Protocol -----------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        self.transport.write(self.request)

    def data_received(self, data: bytes) -> None:
        arrived = time.perf_counter()
        self.buffer += data
        if not self.opened.done():
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                if len(self.buffer) > MAX_HEAD:
                    self._fail(HandshakeError("handshake answer too long"))
                return
            head = bytes(self.buffer[:end]).decode("latin1").split("\r\n")
            del self.buffer[: end + 4]
            status = head[0].split(" ", 2)
            headers = {}
            for line in head[1:]:
                name, _, value = line.partition(":")
                headers[name.strip().lower()] = value.strip()
            if len(status) < 2 or status[1] != "101":
                self._fail(HandshakeError(f"HTTP {' '.join(status[1:])}"))
                return
            if headers.get("sec-websocket-accept") != self.expected_accept:
                self._fail(HandshakeError("wrong Sec-WebSocket-Accept"))
                return
            self.opened.set_result(None)
        self._frames(arrived)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if not self.opened.done():
            self.opened.set_exception(
                exc or ConnectionError("closed during the handshake")
            )
        if not self.closed.done():
            self.closed.set_result(None)
            self.messages.put_nowait((time.perf_counter(), None))

    # --- frames ---------------------------------------------------------------------

    def _frames(self, arrived: float) -> None:
        buffer = self.buffer
        while len(buffer) >= 2:
            first, second = buffer[0], buffer[1]
            if second & 0x80:
                self._fail(ConnectionError("the server masked a frame"), code=1002)
                return
            length, offset = second & 0x7F, 2
            if length == 126:
                if len(buffer) < 4:
                    return
                length, offset = struct.unpack_from("!H", buffer, 2)[0], 4
            elif length == 127:
                if len(buffer) < 10:
                    return
                length, offset = struct.unpack_from("!Q", buffer, 2)[0], 10
            if len(buffer) < offset + length:
                return
            payload = bytes(buffer[offset : offset + length])
            del buffer[: offset + length]
            self._frame(first & 0x80, first & 0x0F, payload, arrived)

    def _frame(self, fin: int, opcode: int, payload: bytes, arrived: float) -> None:
        if opcode == PING:
            self._write(frame(PONG, payload))
        elif opcode == PONG:
            pass
        elif opcode == CLOSE:
            if len(payload) >= 2:
                self.close_code = struct.unpack_from("!H", payload)[0]
            else:
                self.close_code = 1005
            if not self.close_sent:
                self.close_sent = True
                self._write(frame(CLOSE, payload[:2]))
            if self.transport is not None:
                self.transport.close()
        elif opcode in (TEXT, BINARY, CONTINUATION):
            if opcode != CONTINUATION:
                self.fragment_opcode, self.fragments = opcode, []
            self.fragments.append(payload)
            if fin:
                data = b"".join(self.fragments)
                self.fragments = []
                message = data.decode("utf-8") if self.fragment_opcode == TEXT else data
                self.messages.put_nowait((arrived, message))
        else:
            self._fail(ConnectionError(f"unknown opcode {opcode}"), code=1002)

    def _write(self, data: bytes) -> None:
        if self.transport is not None and not self.transport.is_closing():
            self.transport.write(data)

    def _fail(self, error: Exception, code: int | None = None) -> None:
        if code is not None and not self.close_sent and self.opened.done():
            self.close_sent = True
            self._write(frame(CLOSE, struct.pack("!H", code)))
        if not self.opened.done():
            self.opened.set_exception(error)
        if self.transport is not None:
            self.transport.close()

    # --- the caller's side ----------------------------------------------------------

    def send_text(self, text: str) -> None:
        if self.close_sent or self.transport is None:
            raise ConnectionError("the socket is closed")
        self.transport.write(frame(TEXT, text.encode()))

    async def receive(self) -> tuple[float, str | bytes | None]:
        """The next message and when it arrived; None once the socket closed."""
        return await self.messages.get()

    async def close(self, code: int = 1000, timeout: float = 5.0) -> None:
        """The closing handshake: our close frame, then wait for the server's."""
        if not self.close_sent and self.transport is not None:
            self.close_sent = True
            self._write(frame(CLOSE, struct.pack("!H", code)))
        try:
            async with asyncio.timeout(timeout):
                await asyncio.shield(self.closed)
        except TimeoutError:
            if self.transport is not None:
                self.transport.abort()


async def connect(
    address: str,
    port: int,
    path: str,
    *,
    host: str,
    origin: str | None = None,
    timeout: float = 10.0,
) -> WebSocket:
    """Open a WebSocket to ``address:port`` with this Host (and Origin) header."""
    key = base64.b64encode(os.urandom(16)).decode()
    lines = [
        f"GET {path} HTTP/1.1",
        f"Host: {host}",
        "Upgrade: websocket",
        "Connection: Upgrade",
        f"Sec-WebSocket-Key: {key}",
        "Sec-WebSocket-Version: 13",
    ]
    if origin:
        lines.append(f"Origin: {origin}")
    request = ("\r\n".join(lines) + "\r\n\r\n").encode()
    loop = asyncio.get_running_loop()
    async with asyncio.timeout(timeout):
        _, protocol = await loop.create_connection(
            lambda: WebSocket(request, key), address, port
        )
        try:
            await protocol.opened
        except BaseException:
            if protocol.transport is not None:
                protocol.transport.abort()
            raise
    return protocol
