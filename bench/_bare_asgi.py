"""A trivial ASGI application: every HTTP request gets a small JSON answer.

bench/webhook_ingest.py serves it with daphne, as the server's floor: the latency
and rate of daphne and the load generator on this machine with no application
work at all. No figure of an application served by daphne can beat it.
"""

from __future__ import annotations

from typing import Any

BODY = b'{"status": "ok"}'
HEADERS = [
    (b"content-type", b"application/json"),
    (b"content-length", str(len(BODY)).encode()),
]


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "lifespan":
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                await send({"type": "lifespan.shutdown.complete"})
                return
    if scope["type"] != "http":
        return
    while (await receive()).get("more_body", False):
        pass
    await send({"type": "http.response.start", "status": 200, "headers": HEADERS})
    await send({"type": "http.response.body", "body": BODY})
