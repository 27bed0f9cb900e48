"""Database work from async code, always inside the brand's schema.

django-tenants keeps the schema on the thread's connection, and async code
(Channels consumers above all) runs its sync work on a thread other brands'
work shares. Every call therefore sets the schema itself for its duration
(``schema_context`` restores the previous one), never trusting what an earlier
call left on the connection.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, TypeVar

from asgiref.sync import sync_to_async
from django.db import close_old_connections, connection
from django_tenants.utils import schema_context

T = TypeVar("T")


def _run_in_schema(schema_name: str, fn: Callable[..., T], args: Any, kwargs: Any) -> T:
    if not connection.in_atomic_block:
        # A connection the database dropped (a restart) is replaced, not reused.
        close_old_connections()
    with schema_context(schema_name):
        return fn(*args, **kwargs)


async def in_schema(
    schema_name: str, fn: Callable[..., T], *args: Any, **kwargs: Any
) -> T:
    """Run ``fn(*args, **kwargs)`` in ``schema_name`` on the thread for sync work."""
    return await sync_to_async(_run_in_schema, thread_sensitive=True)(
        schema_name, fn, args, kwargs
    )
