"""Signed ShopMonkey deliveries sent by concurrent senders, every answer recorded.

A small asyncio HTTP/1.1 client (one keep-alive connection per sender, the body
of every answer kept, so a 503's JSON can be checked) and the senders' loop:
each sender takes the next order from a shared queue and delivers it, retrying
a non-2xx answer or a failed exchange with backoff when asked to, each attempt
with a new ``webhook-id`` and signature and the same record version, as
ShopMonkey redelivers.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
import uuid
from collections import Counter, deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime

from standardwebhooks import Webhook

from tests.faults.mocks import ShopMonkeyApi


def order_event(api: ShopMonkeyApi, number: int) -> tuple[str, bytes]:
    """A distinct website-lead order as a webhook body; returns (order id, body)."""
    order_id = str(uuid.uuid4())
    event = {
        "apiVersion": "3",
        "operation": "INSERT",
        "table": "order",
        "data": api.order(order_id, number=number),
    }
    return order_id, json.dumps(event, separators=(",", ":")).encode()


def signed_headers(
    secret: str, body: bytes, *, host: str, attempt: int
) -> dict[str, str]:
    """Standard Webhooks headers for one delivery attempt: a new id, stamped now."""
    now = datetime.now(UTC)
    msg_id = f"msg_{uuid.uuid4().hex[:24]}"
    return {
        "Host": host,
        "Content-Type": "application/json",
        "User-Agent": "Shopmonkey (+https://shopmonkey.io)",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(now.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, now, body.decode()),
        "webhook-version": "3",
        "X-Attempt": str(attempt),
    }


class ExchangeError(Exception):
    """The answer was not a well-formed HTTP/1.1 response."""


class Connection:
    """One keep-alive HTTP/1.1 connection; reconnects after any error."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(
        self, method: str, path: str, headers: dict[str, str], body: bytes
    ) -> tuple[int, dict[str, str], bytes]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(
                self.host, self.port
            )
        assert self._reader is not None
        head = f"{method} {path} HTTP/1.1\r\n" + "".join(
            f"{k}: {v}\r\n"
            for k, v in {**headers, "Content-Length": str(len(body))}.items()
        )
        self._writer.write(head.encode("latin-1") + b"\r\n" + body)
        try:
            return await self._read()
        except BaseException:
            await self.close()
            raise

    async def _read(self) -> tuple[int, dict[str, str], bytes]:
        assert self._reader is not None
        try:
            raw = await self._reader.readuntil(b"\r\n\r\n")
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
            raise ExchangeError(f"no complete answer: {error}") from error
        lines = raw[:-4].decode("latin-1").split("\r\n")
        parts = lines[0].split(" ", 2)
        if len(parts) < 2 or not parts[1].isdigit():
            raise ExchangeError(f"not a status line: {lines[0][:80]!r}")
        headers = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        if headers.get("transfer-encoding", "").lower() == "chunked":
            chunks = []
            while True:
                size = int((await self._reader.readuntil(b"\r\n")).split(b";")[0], 16)
                chunks.append((await self._reader.readexactly(size + 2))[:-2])
                if size == 0:
                    break
            body = b"".join(chunks)
        elif "content-length" in headers:
            body = await self._reader.readexactly(int(headers["content-length"]))
        else:
            body = await self._reader.read()
            await self.close()
        if headers.get("connection", "").lower() == "close":
            await self.close()
        return int(parts[1]), headers, body

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()


@dataclass
class Attempt:
    order: int  # index of the order in the run
    attempt: int  # 1-based
    started: float  # seconds since the run began
    seconds: float  # until the answer (or the error)
    status: int | None  # None: no answer (refused, reset, timeout)
    error: str = ""  # the exception's name when status is None
    json_body: bool = False  # the answer's body parsed as a JSON object
    body: str = ""  # the first bytes of a non-2xx answer's body


@dataclass
class Run:
    orders: int
    attempts: list[Attempt] = field(default_factory=list)
    elapsed: float = 0.0
    began: float = 0.0  # time.monotonic() when the first request went

    def acknowledged(self) -> set[int]:
        return {
            a.order
            for a in self.attempts
            if a.status is not None and 200 <= a.status < 300
        }

    def statuses(self) -> Counter[str]:
        return Counter(
            str(a.status) if a.status is not None else f"no answer ({a.error})"
            for a in self.attempts
        )

    def latencies(
        self, predicate: Callable[[Attempt], bool] = lambda a: True
    ) -> list[float]:
        return [
            a.seconds for a in self.attempts if a.status is not None and predicate(a)
        ]


async def _send_all(
    bodies: Sequence[bytes],
    *,
    host: str,
    brand_host: str,
    port: int,
    path: str,
    secret: str,
    clients: int,
    max_attempts: int,
    backoff: Sequence[float],
    timeout: float,
    pace: float,
) -> Run:
    run = Run(orders=len(bodies))
    queue: deque[int] = deque(range(len(bodies)))
    began = run.began = time.monotonic()

    async def sender() -> None:
        connection = Connection(host, port)
        try:
            while queue:
                index = queue.popleft()
                for attempt in range(1, max_attempts + 1):
                    headers = signed_headers(
                        secret,
                        bodies[index],
                        host=f"{brand_host}:{port}",
                        attempt=attempt,
                    )
                    started = time.monotonic()
                    record = Attempt(index, attempt, started - began, 0.0, None)
                    try:
                        async with asyncio.timeout(timeout):
                            status, _, body = await connection.request(
                                "POST", path, headers, bodies[index]
                            )
                    except (OSError, TimeoutError, ExchangeError, ValueError) as error:
                        record.error = type(error).__name__
                        await connection.close()
                    else:
                        record.status = status
                        with contextlib.suppress(ValueError):
                            record.json_body = isinstance(json.loads(body), dict)
                        if not 200 <= status < 300:
                            record.body = body[:200].decode(errors="replace")
                    record.seconds = time.monotonic() - started
                    run.attempts.append(record)
                    if record.status is not None and 200 <= record.status < 300:
                        break
                    if attempt < max_attempts:
                        await asyncio.sleep(backoff[min(attempt, len(backoff)) - 1])
                if pace:
                    await asyncio.sleep(pace)
        finally:
            await connection.close()

    await asyncio.gather(*(sender() for _ in range(clients)))
    run.elapsed = time.monotonic() - began
    return run


def send_deliveries(
    bodies: Sequence[bytes],
    *,
    brand_host: str,
    port: int,
    path: str,
    secret: str,
    clients: int,
    max_attempts: int = 1,
    backoff: Sequence[float] = (1.0,),
    timeout: float = 30.0,
    pace: float = 0.0,
) -> Run:
    """Deliver every body from ``clients`` concurrent senders to 127.0.0.1:``port``
    with Host ``brand_host``."""
    return asyncio.run(
        _send_all(
            bodies,
            host="127.0.0.1",
            brand_host=brand_host,
            port=port,
            path=path,
            secret=secret,
            clients=clients,
            max_attempts=max_attempts,
            backoff=backoff,
            timeout=timeout,
            pace=pace,
        )
    )
