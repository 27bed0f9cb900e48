"""ShopMonkey deliveries answered in the ASGI server, ahead of Django's request cycle.

A delivery needs little work: find the connection, check the signature, insert
the inbox row and its queue row, answer. Django's ASGI handler costs several
times that per request (a thread per request, the middleware stack crossing
between async and sync code twice, the request and response objects), and
ShopMonkey sends deliveries in bursts. :class:`ShopMonkeyWebhookRoute` answers
``POST /webhooks/shopmonkey/<connection>/`` itself, with the same brand
resolution (:func:`leadorch.middleware.tenant_for_host`), the same service
(:func:`leads.webhooks.webhook_deliver`, one thread hop per delivery) and the
same answers as the view, headers included. A request it cannot answer exactly
as Django would goes to Django untouched: another method or path, a host that
names no brand, a plain-http request that must be redirected to https.
"""

from __future__ import annotations

import json
import logging
import re
from collections.abc import Awaitable, Callable, MutableMapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from http import HTTPStatus
from typing import Any
from uuid import UUID

from asgiref.sync import sync_to_async
from django.conf import settings
from django.db import InterfaceError, OperationalError, close_old_connections
from django.db import connection as db_connection
from django.http.request import split_domain_port, validate_host
from django.urls.converters import UUIDConverter
from django_tenants.utils import (
    get_public_schema_name,
    get_tenant_domain_model,
    remove_www,
    tenant_context,
)

from leadorch.middleware import (
    RETRY_AFTER_SECONDS,
    SERVICE_UNAVAILABLE,
    cached_tenant,
    tenant_for_host,
)
from leads import webhooks

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
ASGIApp = Callable[[Scope, Receive, Send], Awaitable[None]]

WEBHOOK_PATH = re.compile(
    rf"/webhooks/shopmonkey/(?P<connection_id>{UUIDConverter.regex})/"
)
# Deliveries stored at once. Each holds a database connection while it runs; a few
# let PostgreSQL commit them together, more only contend for the interpreter.
INGEST_THREADS = 4

logger = logging.getLogger("django.request")
_executor = ThreadPoolExecutor(
    max_workers=INGEST_THREADS, thread_name_prefix="webhook-ingest"
)


class ShopMonkeyWebhookRoute:
    """ASGI middleware: ShopMonkey deliveries are answered here, everything else by ``app``."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        connection_id = _webhook_connection_id(scope)
        if connection_id is None:
            return await self.app(scope, receive, send)
        headers = _headers(scope)
        secure = _is_secure(scope, headers)
        hostname = _hostname(headers)
        if hostname is None or _must_redirect_to_https(scope, secure):
            return await self.app(scope, receive, send)
        path = scope["path"]
        try:
            tenant = cached_tenant(hostname) or await _tenant_lookup(hostname)
        except get_tenant_domain_model().DoesNotExist:
            return await self.app(scope, receive, send)
        except (OperationalError, InterfaceError):
            # As TenantMiddleware answers it: before the middleware that add headers.
            return await _unavailable(send, path, headers=[])
        except Exception:
            return await _server_error(send, path)
        if tenant.schema_name == get_public_schema_name():
            return await self.app(scope, receive, send)

        body = await _read_body(receive, settings.WEBHOOK_MAX_BODY_BYTES + 1)
        if body is None:
            return None  # the sender went away
        response_headers = _security_headers(secure)
        try:
            answer = await _deliver(
                tenant,
                connection_id=connection_id,
                body=body,
                headers={
                    name: headers.get(name, "") for name in webhooks.SIGNATURE_HEADERS
                },
                declared_length=headers.get("content-length", ""),
            )
        except (OperationalError, InterfaceError):
            return await _unavailable(send, path, headers=response_headers)
        except Exception:
            return await _server_error(send, path, headers=response_headers)
        extra = [
            (name.lower().encode("latin1"), value.encode("latin1"))
            for name, value in answer.headers.items()
        ]
        return await _answer(
            send, path, answer.status, answer.body, [*response_headers, *extra]
        )


def _webhook_connection_id(scope: Scope) -> UUID | None:
    """The connection a POST to the webhook URL names; None for any other request."""
    if scope["type"] != "http" or scope.get("method") != "POST":
        return None
    path = scope["path"].removeprefix(scope.get("root_path", ""))
    match = WEBHOOK_PATH.fullmatch(path)
    return UUID(match["connection_id"]) if match else None


def _headers(scope: Scope) -> dict[str, str]:
    """Request headers by lower-case name, read as Django's ASGIRequest reads them: "_"
    and "-" are the same, and a repeated header's values are joined by commas."""
    headers: dict[str, str] = {}
    for raw_name, raw_value in scope.get("headers", ()):
        name = raw_name.decode("latin1").lower().replace("_", "-")
        value = raw_value.decode("latin1")
        headers[name] = f"{headers[name]},{value}" if name in headers else value
    return headers


def _hostname(headers: dict[str, str]) -> str | None:
    """The brand lookup key of the Host header, as TenantMiddleware computes it; None
    when Django would refuse the host (it is missing or not in ALLOWED_HOSTS)."""
    host = headers.get("host")
    if settings.USE_X_FORWARDED_HOST and "x-forwarded-host" in headers:
        host = headers["x-forwarded-host"]
    if not host:
        return None
    allowed_hosts = settings.ALLOWED_HOSTS
    if settings.DEBUG and not allowed_hosts:
        allowed_hosts = [".localhost", "127.0.0.1", "[::1]"]
    domain, _ = split_domain_port(host)
    if not domain or not validate_host(domain, allowed_hosts):
        return None
    return remove_www(host.split(":")[0])


def _is_secure(scope: Scope, headers: dict[str, str]) -> bool:
    """HttpRequest.is_secure() for this scope (SECURE_PROXY_SSL_HEADER first)."""
    if settings.SECURE_PROXY_SSL_HEADER:
        meta_name, secure_value = settings.SECURE_PROXY_SSL_HEADER
        value = headers.get(meta_name.removeprefix("HTTP_").lower().replace("_", "-"))
        if value is not None:
            return value.split(",", 1)[0].strip() == secure_value
    return scope.get("scheme") == "https"


def _must_redirect_to_https(scope: Scope, secure: bool) -> bool:
    """SecurityMiddleware would redirect this request to https."""
    if secure or not settings.SECURE_SSL_REDIRECT:
        return False
    path = scope["path"].lstrip("/")
    return not any(
        re.search(pattern, path) for pattern in settings.SECURE_REDIRECT_EXEMPT
    )


def _security_headers(secure: bool) -> list[tuple[bytes, bytes]]:
    """The headers SecurityMiddleware and XFrameOptionsMiddleware add to the view's answer."""
    headers = []
    if settings.SECURE_HSTS_SECONDS and secure:
        hsts = f"max-age={settings.SECURE_HSTS_SECONDS}"
        if settings.SECURE_HSTS_INCLUDE_SUBDOMAINS:
            hsts += "; includeSubDomains"
        if settings.SECURE_HSTS_PRELOAD:
            hsts += "; preload"
        headers.append(("Strict-Transport-Security", hsts))
    if settings.SECURE_CONTENT_TYPE_NOSNIFF:
        headers.append(("X-Content-Type-Options", "nosniff"))
    if settings.SECURE_REFERRER_POLICY:
        policy = settings.SECURE_REFERRER_POLICY
        values = policy.split(",") if isinstance(policy, str) else policy
        headers.append(("Referrer-Policy", ",".join(v.strip() for v in values)))
    if settings.SECURE_CROSS_ORIGIN_OPENER_POLICY:
        headers.append(
            ("Cross-Origin-Opener-Policy", settings.SECURE_CROSS_ORIGIN_OPENER_POLICY)
        )
    headers.append(("X-Frame-Options", settings.X_FRAME_OPTIONS.upper()))
    return [(name.encode("latin1"), value.encode("latin1")) for name, value in headers]


async def _read_body(receive: Receive, limit: int) -> bytes | None:
    """The request body, cut at ``limit`` bytes; None when the sender disconnects."""
    chunks: list[bytes] = []
    size = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            return None
        chunk = message.get("body", b"")
        if size < limit:
            chunks.append(chunk[: limit - size])
        size += len(chunk)
        if not message.get("more_body", False):
            return b"".join(chunks)


def _in_public_schema(hostname: str) -> Any:
    """Database work of one request, with the connection handling of Django's request cycle."""
    close_old_connections()
    try:
        db_connection.set_schema_to_public()
        return tenant_for_host(hostname)
    finally:
        close_old_connections()


def _in_tenant(tenant: Any, **delivery: Any) -> webhooks.WebhookAnswer:
    """Take the delivery in the brand's schema, as the view does inside TenantMiddleware."""
    close_old_connections()
    try:
        with tenant_context(tenant):
            return webhooks.webhook_deliver(**delivery)
    finally:
        close_old_connections()


_tenant_lookup = sync_to_async(
    _in_public_schema, thread_sensitive=False, executor=_executor
)
_deliver = sync_to_async(_in_tenant, thread_sensitive=False, executor=_executor)


async def _answer(
    send: Send,
    path: str,
    status: int,
    body: dict[str, Any],
    headers: Sequence[tuple[bytes, bytes]],
    *,
    exc_info: bool = False,
) -> None:
    """Send a JSON answer (as JsonResponse renders it) and log it as Django logs answers."""
    content = json.dumps(body).encode()
    await send(
        {
            "type": "http.response.start",
            "status": status,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(content)).encode()),
                *headers,
            ],
        }
    )
    await send({"type": "http.response.body", "body": content})
    if status >= 400:
        log = logger.error if status >= 500 else logger.warning
        log(
            "%s: %s",
            HTTPStatus(status).phrase,
            path,
            extra={"status_code": status},
            exc_info=exc_info,
        )


async def _unavailable(
    send: Send, path: str, *, headers: Sequence[tuple[bytes, bytes]]
) -> None:
    retry = (b"retry-after", str(RETRY_AFTER_SECONDS).encode())
    await _answer(send, path, 503, SERVICE_UNAVAILABLE, [*headers, retry])


async def _server_error(
    send: Send, path: str, *, headers: Sequence[tuple[bytes, bytes]] = ()
) -> None:
    body = {"error": "server_error", "detail": "The delivery could not be taken."}
    await _answer(send, path, 500, body, headers, exc_info=True)
