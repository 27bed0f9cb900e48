"""HTTP endpoints of lead intake."""

from __future__ import annotations

from uuid import UUID

from django.conf import settings
from django.http import HttpRequest, JsonResponse
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_POST

from leadorch.errors import ApplicationError
from leads import webhooks
from leads.models import CRMConnection

SIGNATURE_HEADERS = (
    "webhook-id",
    "webhook-timestamp",
    "webhook-signature",
    "x-attempt",
)


def _error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status=status)


@csrf_exempt
@require_POST
def shopmonkey_webhook(request: HttpRequest, connection_id: UUID) -> JsonResponse:
    """Receive a ShopMonkey delivery: verify, store, acknowledge. Processing happens in a worker."""
    limit = settings.WEBHOOK_MAX_BODY_BYTES
    declared = request.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > limit:
        return _error(413, "too_large", f"The body is larger than {limit} bytes.")
    connection = CRMConnection.objects.filter(
        public_id=connection_id, is_active=True
    ).first()
    if connection is None:
        return _error(
            404, "unknown_connection", "No active connection has this id at this host."
        )
    body = request.body
    if len(body) > limit:
        return _error(413, "too_large", f"The body is larger than {limit} bytes.")
    headers = {name: request.headers.get(name, "") for name in SIGNATURE_HEADERS}
    try:
        webhooks.webhook_verify(connection=connection, body=body, headers=headers)
        event = webhooks.webhook_parse(body)
    except webhooks.SignatureError as error:
        return _error(401, error.code, error.message)
    except ApplicationError as error:
        return _error(400, error.code, error.message)
    received = webhooks.webhook_receive(
        connection=connection, body=body, headers=headers, event=event
    )
    if received.duplicate:
        return JsonResponse(
            {
                "status": "duplicate",
                "detail": "This record version was received before.",
            },
            status=200,
        )
    return JsonResponse(
        {"status": "accepted", "delivery": received.delivery.pk}, status=202
    )
