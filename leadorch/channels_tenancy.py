"""Tenancy for WebSockets: the brand from the Host header, in the scope.

django-tenants' HTTP middleware never sees a WebSocket, and Channels runs the
database work of every consumer on one shared thread, whose connection keeps
whatever schema the last call set. So the brand is resolved once per socket,
in the public schema, and put in ``scope["tenant"]``; consumers then run each
database call inside it (``chat.db.in_schema``). An unknown host is refused
before any consumer runs.
"""

from __future__ import annotations

from typing import Any

from channels.db import database_sync_to_async
from django.db import DatabaseError
from django.http.request import split_domain_port
from django_tenants.utils import get_tenant_domain_model, remove_www, schema_context

from tenants.models import Tenant

# WebSocket close codes of our own (4000-4999 are the application's).
CLOSE_UNKNOWN_HOST = 4404
CLOSE_UNAVAILABLE = 4503


def _lookup_tenant(hostname: str) -> Tenant | None:
    with schema_context("public"):
        domain = (
            get_tenant_domain_model()
            .objects.select_related("tenant")
            .filter(domain=hostname, tenant__is_active=True)
            .first()
        )
        if domain is None or domain.tenant.schema_name == "public":
            return None
        return domain.tenant


def host_of(scope: dict[str, Any]) -> str:
    headers = dict(scope.get("headers") or [])
    host = headers.get(b"host", b"").decode("latin1")
    domain, _ = split_domain_port(host)
    return remove_www(domain.lower())


class TenantWebsocketMiddleware:
    """Puts the brand of the Host header in ``scope["tenant"]``, or refuses the socket."""

    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> Any:
        try:
            tenant = await database_sync_to_async(_lookup_tenant)(host_of(scope))
        except DatabaseError:
            return await _refuse(receive, send, CLOSE_UNAVAILABLE)
        if tenant is None:
            return await _refuse(receive, send, CLOSE_UNKNOWN_HOST)
        return await self.app(dict(scope, tenant=tenant), receive, send)


async def _refuse(receive: Any, send: Any, code: int) -> None:
    message = await receive()
    if message.get("type") == "websocket.connect":
        await send({"type": "websocket.close", "code": code})
