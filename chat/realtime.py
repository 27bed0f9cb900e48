"""Pushing conversation events to the customer's open pages.

Every open chat page joins its session's channel-layer group. Group names carry
the brand's schema: with the Redis layer, all brands share one server, so a
session of one brand can never be addressed from another's name space.
"""

from __future__ import annotations

import asyncio
import logging
from typing import Any

from asgiref.sync import async_to_sync
from channels.layers import get_channel_layer
from django.db import connection, transaction

from chat import db as chat_db

logger = logging.getLogger(__name__)


def group_name(*, schema_name: str, session_public_id: Any) -> str:
    return f"chat.{schema_name}.{session_public_id}"


def publish_on_commit(*, session_public_id: Any, event: dict[str, Any]) -> None:
    """Send ``event`` to the session's open pages once the transaction commits.

    ``event`` is what the page receives (``{"type": "message", ...}``); a failure
    to reach the channel layer is logged, never raised: the message is stored and
    the page fetches it on its next reconnect.
    """
    group = group_name(
        schema_name=connection.schema_name, session_public_id=session_public_id
    )
    transaction.on_commit(lambda: publish(group=group, event=event))


# Pushes started on the loop and not yet done: the loop keeps only weak references.
_sending: set[asyncio.Task[None]] = set()


def publish(*, group: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "chat.event", "event": event}
    # On the chat socket's database threads: the send starts on the socket's event
    # loop when the call is back, and the thread goes on.
    if chat_db.on_loop(lambda: _start_send(layer, group, message)):
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:
        logger.exception("Could not push a chat event to %s", group)


def _start_send(layer: Any, group: str, message: dict[str, Any]) -> None:
    task = asyncio.ensure_future(layer.group_send(group, message))
    _sending.add(task)
    task.add_done_callback(_sending.discard)
    task.add_done_callback(_log_failure(group))


def _log_failure(group: str) -> Any:
    def check(task: asyncio.Task[None]) -> None:
        if not task.cancelled() and task.exception() is not None:
            logger.error(
                "Could not push a chat event to %s", group, exc_info=task.exception()
            )

    return check


async def apublish(*, group: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(group, {"type": "chat.event", "event": event})
