"""The chat socket's floor: the same frames and the same model call, without the app.

bench/chat_ws.py serves this ASGI application with the same server as the app
(``python -m leadorch.web``, daphne) in its "floor" phase, under the same load
as the Anthropic phase. It speaks the chat page's protocol as far as the load
generator reads it (``history`` on connect; per customer message: the message
echoed, ``typing``, the first ``delta`` as soon as the model streams it, the rest
of the text, ``typing`` off, the answer as a ``message``), and answers through the
official Anthropic SDK, on a client of the kind chat.ai.http builds (the SDK's
``DefaultAioHttpClient``, with the same timeouts; built here, without Django),
its events read as the app reads them (chat.ai.sse, which needs no Django),
with the request the app sends for that conversation: the bench writes the app's
own system prompt, tools and settings to the file named by BARE_CHAT_REQUEST,
and the conversation grows here as the app's transcript does.

No Django, no Channels, no database: what this costs is daphne, the SDK and the
load generator on this machine, and no figure of the app's overhead can beat it.

Not a benchmark itself: the leading underscore keeps ``make bench`` from running it.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
from pathlib import Path
from typing import Any

import anthropic
import httpx2

from bench import _bare_asgi
from chat.ai import sse

CHAT_PATH_PREFIX = "/ws/chat/"

_template: dict[str, Any] = json.loads(
    Path(os.environ["BARE_CHAT_REQUEST"]).read_text(encoding="utf-8")
)
_message_ids = itertools.count(1)
_clients: dict[int, anthropic.AsyncAnthropic] = {}


def _client() -> anthropic.AsyncAnthropic:
    loop = asyncio.get_running_loop()
    client = _clients.get(id(loop))
    if client is None:
        timeout = _template["timeout"]
        client = anthropic.AsyncAnthropic(
            api_key=_template["api_key"],
            base_url=_template["base_url"],
            http_client=anthropic.DefaultAioHttpClient(
                timeout=httpx2.Timeout(timeout, connect=min(5.0, timeout))
            ),
            max_retries=0,
            timeout=timeout,
        )
        _clients[id(loop)] = client
    return client


async def application(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if scope["type"] == "websocket":
        await _chat(scope, receive, send)
    else:
        # Lifespan, and the small JSON answer to any HTTP request (the bench's ping).
        await _bare_asgi.application(scope, receive, send)


async def _chat(scope: dict[str, Any], receive: Any, send: Any) -> None:
    if (await receive())["type"] != "websocket.connect":
        return
    # The bench's floor chats use the customer's first name as their token: the
    # mock files its service times under the first name in the system prompt.
    first_name = scope["path"].removeprefix(CHAT_PATH_PREFIX).strip("/")
    system = _template["params"]["system"].replace(_template["first_name"], first_name)
    conversation: list[dict[str, Any]] = []
    answering = asyncio.Lock()
    tasks: set[asyncio.Task[None]] = set()

    async def send_json(frame: dict[str, Any]) -> None:
        await send({"type": "websocket.send", "text": json.dumps(frame)})

    await send({"type": "websocket.accept"})
    await send_json({"type": "history", "messages": [], "mode": "assistant"})
    while True:
        event = await receive()
        if event["type"] == "websocket.disconnect":
            return
        if event["type"] != "websocket.receive" or not event.get("text"):
            continue
        frame = json.loads(event["text"])
        if frame.get("type") != "message":
            continue
        message = {
            "id": next(_message_ids),
            "role": "customer",
            "text": frame["text"],
            "client_id": frame.get("client_id", ""),
        }
        await send_json({"type": "message", "message": message})
        conversation.append(_turn("user", frame["text"]))
        task = asyncio.create_task(
            _answer(send_json, answering, system, conversation, message["id"])
        )
        tasks.add(task)
        task.add_done_callback(tasks.discard)


async def _answer(
    send_json: Any,
    answering: asyncio.Lock,
    system: str,
    conversation: list[dict[str, Any]],
    reply_to: int,
) -> None:
    async with answering:
        await send_json({"type": "typing", "active": True, "by": "assistant"})
        params = {**_template["params"], "system": system, "messages": conversation}
        pieces: list[str] = []
        async with _client().messages.with_streaming_response.create(
            **params, stream=True
        ) as response:
            # The events read as the app's provider reads them (chat.ai.sse).
            async for event in sse.json_events(response.iter_bytes()):
                delta = event.get("delta") or {}
                if event["type"] == "content_block_delta" and (
                    delta.get("type") == "text_delta"
                ):
                    if not pieces:
                        await send_json(
                            {
                                "type": "delta",
                                "text": delta["text"],
                                "reply_to": reply_to,
                            }
                        )
                    pieces.append(delta["text"])
        text = "".join(pieces)
        if len(pieces) > 1:
            await send_json(
                {"type": "delta", "text": "".join(pieces[1:]), "reply_to": reply_to}
            )
        await send_json({"type": "typing", "active": False, "by": "assistant"})
        conversation.append(_turn("assistant", text))
        answer = {"id": next(_message_ids), "role": "assistant", "text": text}
        await send_json({"type": "message", "message": answer})


def _turn(role: str, text: str) -> dict[str, Any]:
    # As the app's provider writes each turn (chat.ai.anthropic_provider).
    return {"role": role, "content": [{"type": "text", "text": text}]}
