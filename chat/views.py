"""The chat page a customer opens from a text or an email: /c/<token>."""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse
from django.shortcuts import render
from django.views.decorators.http import require_GET

from chat import services as chat_services
from chat.api import context_payload
from chat.throttle import TokenLookupsLimitedError, chat_link_resolve_limited
from leadorch.ratelimit import client_ip

# Only our own scripts, styles and socket; nothing inline, nothing from elsewhere.
CONTENT_SECURITY_POLICY = "; ".join(
    [
        "default-src 'none'",
        "script-src 'self'",
        "style-src 'self'",
        "img-src 'self' data:",
        "font-src 'self'",
        "connect-src 'self'",
        "manifest-src 'self'",
        "base-uri 'none'",
        "form-action 'self'",
        "frame-ancestors 'none'",
    ]
)


def _private(response: HttpResponse) -> HttpResponse:
    response["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    # The token is in the URL: never sent on as a referrer, never cached or indexed.
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    response["X-Robots-Tag"] = "noindex, nofollow"
    return response


@require_GET
def chat_page(request: HttpRequest, token: str) -> HttpResponse:
    try:
        session = chat_link_resolve_limited(token=token, client_ip=client_ip(request))
    except TokenLookupsLimitedError as error:
        response = render(request, "chat/too_many_lookups.html", status=429)
        response["Retry-After"] = str(error.retry_after)
        return _private(response)
    if session is None:
        return _private(render(request, "chat/link_invalid.html", status=404))
    messages = chat_services.messages_after(session=session)
    context = {
        "chat": context_payload(session),
        "brand_name": getattr(connection.tenant, "name", ""),
        "messages": [chat_services.message_payload(m) for m in messages],
        "last_id": messages[-1].pk if messages else 0,
        "ws_path": f"/ws/chat/{token}/",
        "api_base": f"/api/chat/{token}",
        "max_chars": settings.CHAT_MESSAGE_MAX_CHARS,
    }
    return _private(render(request, "chat/page.html", context))
