"""Messaging endpoints: Twilio and SendGrid webhooks, the unsubscribe page.

The webhooks are authorised by the providers' signatures (no CSRF, no session)
and answer errors as JSON ``{"error": ..., "detail": ...}``. The logic is in
messaging.inbound.
"""

from __future__ import annotations

from django.conf import settings
from django.db import connection
from django.http import HttpRequest, HttpResponse, HttpResponseNotFound, JsonResponse
from django.http.request import split_domain_port
from django.shortcuts import render
from django.template.loader import render_to_string
from django.views.decorators.csrf import csrf_exempt
from django.views.decorators.http import require_http_methods, require_POST

from leadorch.errors import ApplicationError
from leadorch.ratelimit import webhook_rate_limit_response
from messaging import inbound
from messaging.unsubscribe import unsubscribe_address

# Replies are sent by us through the gate, never as TwiML.
EMPTY_TWIML = '<?xml version="1.0" encoding="UTF-8"?><Response/>'
SENDGRID_MAX_BODY_BYTES = 1024 * 1024


def _error(status: int, code: str, detail: str) -> JsonResponse:
    return JsonResponse({"error": code, "detail": detail}, status=status)


def _twilio_refusal(request: HttpRequest) -> JsonResponse | None:
    """403 unless X-Twilio-Signature verifies for this URL at the request's host or the brand's primary domain."""
    host, _ = split_domain_port(request.get_host())
    primary = connection.tenant.get_primary_domain()
    try:
        inbound.twilio_signature_verify(
            hosts=[host, primary.domain if primary else ""],
            path=request.get_full_path(),
            params=request.POST,
            signature=request.headers.get("X-Twilio-Signature", ""),
        )
    except inbound.SignatureError as error:
        return _error(403, error.code, error.message)
    return None


def _field(request: HttpRequest, *names: str) -> str:
    """The first non-empty of the form fields ``names``, without NUL characters:
    PostgreSQL text cannot hold them (the signature was checked on the raw form)."""
    for name in names:
        value = request.POST.get(name, "").replace("\x00", "")
        if value:
            return value
    return ""


def _rate_refusal(source: str) -> JsonResponse | None:
    """429 past WEBHOOK_RATE_PER_MINUTE requests of ``source`` at this brand (or the platform host)."""
    return webhook_rate_limit_response(source=source, ident=connection.schema_name)


@csrf_exempt
@require_POST
def twilio_inbound_sms(request: HttpRequest) -> HttpResponse:
    """A customer's SMS to the brand's number: verify, store once, act on it; answer empty TwiML."""
    refusal = _rate_refusal("twilio") or _twilio_refusal(request)
    if refusal is not None:
        return refusal
    message_sid = _field(request, "MessageSid", "SmsSid")
    sender = _field(request, "From")
    if not message_sid or not sender:
        return _error(400, "invalid_body", "MessageSid and From are required.")
    inbound.inbound_sms_receive(
        provider_message_id=message_sid,
        from_number=sender,
        to_number=_field(request, "To"),
        body=_field(request, "Body"),
    )
    return HttpResponse(EMPTY_TWIML, content_type="text/xml")


@csrf_exempt
@require_POST
def twilio_status(request: HttpRequest) -> HttpResponse:
    """Twilio's status callback for an SMS we sent: 204 when applied, 200 for a MessageSid we do not know."""
    refusal = _rate_refusal("twilio") or _twilio_refusal(request)
    if refusal is not None:
        return refusal
    message_sid = _field(request, "MessageSid", "SmsSid")
    status = _field(request, "MessageStatus", "SmsStatus")
    if not message_sid or not status:
        return _error(400, "invalid_body", "MessageSid and MessageStatus are required.")
    result = inbound.outbound_status_apply(
        provider_message_id=message_sid,
        status=status,
        error_code=_field(request, "ErrorCode"),
    )
    if not result.found:
        return JsonResponse(
            {"status": "ignored", "detail": "No message has this MessageSid."},
            status=200,
        )
    return HttpResponse(status=204)


@csrf_exempt
@require_POST
def sendgrid_events(request: HttpRequest) -> JsonResponse:
    """SendGrid's Event Webhook: verify the signed raw body, apply each event in its brand, answer counts.

    At a brand's host only that brand's events apply; at the platform host each
    event's ``tenant`` custom arg names its brand.
    """
    limited = _rate_refusal("sendgrid")
    if limited is not None:
        return limited
    declared = request.headers.get("Content-Length", "")
    if declared.isdigit() and int(declared) > SENDGRID_MAX_BODY_BYTES:
        return _error(
            413,
            "too_large",
            f"The body is larger than {SENDGRID_MAX_BODY_BYTES} bytes.",
        )
    body = request.body
    if len(body) > SENDGRID_MAX_BODY_BYTES:
        return _error(
            413,
            "too_large",
            f"The body is larger than {SENDGRID_MAX_BODY_BYTES} bytes.",
        )
    try:
        inbound.sendgrid_signature_verify(
            body=body,
            signature=request.headers.get("X-Twilio-Email-Event-Webhook-Signature", ""),
            timestamp=request.headers.get("X-Twilio-Email-Event-Webhook-Timestamp", ""),
        )
    except inbound.SignatureError as error:
        return _error(403, error.code, error.message)
    try:
        events = inbound.sendgrid_events_parse(body)
    except ApplicationError as error:
        return _error(400, error.code, error.message)
    tenant = connection.tenant
    host_tenant = None if tenant.schema_name == settings.PUBLIC_SCHEMA_NAME else tenant
    counts = inbound.sendgrid_events_apply(events=events, host_tenant=host_tenant)
    return JsonResponse(counts.as_dict(), status=200)


@csrf_exempt  # the signed token is the authorisation; mail providers' one-click POST carries no CSRF token
@require_http_methods(["GET", "HEAD", "POST"])
def unsubscribe(request: HttpRequest, token: str) -> HttpResponse:
    """GET: ask to confirm. POST (the form, or RFC 8058 one-click): unsubscribe. A bad token: a plain 404."""
    address = unsubscribe_address(token)
    response: HttpResponse
    if address is None:
        response = HttpResponseNotFound(render_to_string("404.html"))
    elif request.method == "POST":
        inbound.unsubscribe_confirm(
            address=address,
            one_click=request.POST.get("List-Unsubscribe") == "One-Click",
        )
        response = render(
            request,
            "messaging/unsubscribed.html",
            {"address": address, "brand": inbound.brand_name()},
        )
    else:
        response = render(
            request,
            "messaging/unsubscribe.html",
            {"address": address, "brand": inbound.brand_name()},
        )
    response["Referrer-Policy"] = "no-referrer"
    response["Cache-Control"] = "no-store"
    return response
