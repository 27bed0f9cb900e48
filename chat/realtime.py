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


def publish(*, group: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is None:
        return
    message = {"type": "chat.event", "event": event}
    loop = getattr(chat_db.caller, "loop", None)
    if loop is not None and loop.is_running():
        # On the chat socket's database threads: hand the send to the socket's event
        # loop and go on, instead of holding the thread until the loop gets to it.
        future = asyncio.run_coroutine_threadsafe(
            layer.group_send(group, message), loop
        )
        future.add_done_callback(_log_failure(group))
        return
    try:
        async_to_sync(layer.group_send)(group, message)
    except Exception:
        logger.exception("Could not push a chat event to %s", group)


def _log_failure(group: str) -> Any:
    def check(future: Any) -> None:
        if not future.cancelled() and future.exception() is not None:
            logger.error(
                "Could not push a chat event to %s", group, exc_info=future.exception()
            )

    return check


async def apublish(*, group: str, event: dict[str, Any]) -> None:
    layer = get_channel_layer()
    if layer is not None:
        await layer.group_send(group, {"type": "chat.event", "event": event})
