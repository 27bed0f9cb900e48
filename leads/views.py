"""HTTP endpoints of lead intake."""

from __future__ import annotations

from uuid import UUID

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from leads import webhooks


@csrf_exempt
@require_POST
def shopmonkey_webhook(request: HttpRequest, connection_id: UUID) -> JsonResponse:
    """Receive a ShopMonkey delivery: verify, store, acknowledge. Processing happens in a worker.

    leads.asgi answers this URL ahead of Django in the ASGI server, with the same
    service; this view serves every other way in (tests, other servers).
    """
    # One byte past the limit is enough to refuse it; more is never read.
    body = request.read(settings.WEBHOOK_MAX_BODY_BYTES + 1)
    answer = webhooks.webhook_deliver(
        connection_id=connection_id,
        body=body,
        headers={
            name: request.headers.get(name, "") for name in webhooks.SIGNATURE_HEADERS
        },
        declared_length=request.headers.get("Content-Length", ""),
    )
    response = JsonResponse(answer.body, status=answer.status)
    for name, value in answer.headers.items():
        response[name] = value
    return response
