"""Where messages go: Twilio (SMS), SendGrid (email), or the outbox, which records and sends nothing.

A backend answers each send with one of four outcomes:

- ``sent``: the provider accepted it (and gave an id);
- ``failed``: the provider certainly did not take it (refused connection,
  a 4xx that names the problem); safe to report, never silently retried;
- ``unknown``: it may or may not have gone out (a timeout after the request
  left, a 5xx, a dropped connection mid-answer). Never re-sent blindly: a
  person looks, or a status callback settles it;
- ``recorded``: the outbox kept it; nothing left the building.
"""

from __future__ import annotations

import logging
import socket
import urllib.error
from dataclasses import dataclass, field
from typing import Any, Protocol

from django.conf import settings

logger = logging.getLogger(__name__)

SENT, FAILED, UNKNOWN, RECORDED = "sent", "failed", "unknown", "recorded"
TWILIO_UNSUBSCRIBED = 21610  # "Attempt to send to unsubscribed recipient"


@dataclass
class SendResult:
    outcome: str
    provider_message_id: str = ""
    error_code: str = ""
    error: str = ""
    recipient_opted_out: bool = False


@dataclass
class Email:
    to: str
    subject: str
    text: str
    from_email: str
    from_name: str = ""
    headers: dict[str, str] = field(default_factory=dict)
    custom_args: dict[str, str] = field(default_factory=dict)


@dataclass
class Sms:
    to: str
    body: str
    sender: str
    status_callback: str = ""
    validity_period: int | None = None


class Backend(Protocol):
    name: str

    def send_sms(self, sms: Sms) -> SendResult: ...

    def send_email(self, email: Email) -> SendResult: ...


class OutboxBackend:
    """Records messages without sending them: development, demos and the offline default."""

    name = "outbox"

    def send_sms(self, sms: Sms) -> SendResult:
        return SendResult(RECORDED)

    def send_email(self, email: Email) -> SendResult:
        return SendResult(RECORDED)


class TwilioBackend:
    """SMS through the official Twilio SDK. ``http_client`` is the SDK's own transport seam."""

    name = "twilio"

    def __init__(
        self,
        *,
        account_sid: str,
        auth_token: str,
        http_client: Any = None,
        timeout: float = 10.0,
    ) -> None:
        from twilio.rest import Client

        self.client = Client(
            account_sid,
            auth_token,
            http_client=http_client or twilio_http_client(timeout=timeout),
        )

    def send_sms(self, sms: Sms) -> SendResult:
        import requests
        from twilio.base.exceptions import TwilioRestException

        params: dict[str, Any] = {"to": sms.to, "body": sms.body}
        if sms.sender.startswith("MG"):
            params["messaging_service_sid"] = sms.sender
        else:
            params["from_"] = sms.sender
        if sms.status_callback:
            params["status_callback"] = sms.status_callback
        if sms.validity_period:
            params["validity_period"] = max(1, min(36_000, sms.validity_period))
        try:
            message = self.client.messages.create(**params)
        except TwilioRestException as error:
            code = str(error.code or "")
            if error.status >= 500:
                return SendResult(
                    UNKNOWN,
                    error_code=code,
                    error=f"Twilio answered {error.status}: {error.msg}",
                )
            return SendResult(
                FAILED,
                error_code=code,
                error=f"Twilio refused the message ({error.status}, code {code}): {error.msg}",
                recipient_opted_out=error.code == TWILIO_UNSUBSCRIBED,
            )
        except (requests.ConnectionError, requests.ConnectTimeout) as error:
            if isinstance(error, requests.ConnectTimeout) or _never_sent(error):
                return SendResult(FAILED, error=f"Could not reach Twilio: {error}")
            return SendResult(UNKNOWN, error=f"The connection to Twilio broke: {error}")
        except requests.Timeout as error:
            return SendResult(UNKNOWN, error=f"Twilio did not answer in time: {error}")
        return SendResult(SENT, provider_message_id=message.sid or "")


def twilio_http_client(*, timeout: float) -> Any:
    """The SDK's HTTP transport, with our timeout. Tests swap in one of the SDK's HttpClient subclasses."""
    from twilio.http.http_client import TwilioHttpClient

    return TwilioHttpClient(timeout=timeout)


def _never_sent(error: Exception) -> bool:
    """A refused or unresolvable connection means the request never left."""
    text = str(error).lower()
    return any(
        marker in text
        for marker in (
            "refused",
            "name or service not known",
            "failed to resolve",
            "nodename",
        )
    )


class SendGridBackend:
    """Email through the official SendGrid SDK (python-http-client underneath)."""

    name = "sendgrid"

    def __init__(self, *, api_key: str, timeout: float = 10.0) -> None:
        from sendgrid import SendGridAPIClient

        self.client = SendGridAPIClient(api_key=api_key)
        self.client.client.timeout = timeout

    def send_email(self, email: Email) -> SendResult:
        from python_http_client import exceptions as http_errors
        from sendgrid.helpers.mail import CustomArg, From, Header, Mail

        mail = Mail(
            from_email=From(email.from_email, email.from_name or None),
            to_emails=email.to,
            subject=email.subject,
            plain_text_content=email.text,
        )
        for name, value in email.headers.items():
            mail.add_header(Header(name, value))
        for name, value in email.custom_args.items():
            mail.add_custom_arg(CustomArg(name, value))
        try:
            response = self.client.send(mail)
        except http_errors.HTTPError as error:
            status = getattr(error, "status_code", 0) or 0
            body = getattr(error, "body", b"")
            detail = (
                body.decode(errors="replace")[:500]
                if isinstance(body, bytes)
                else str(body)[:500]
            )
            outcome = UNKNOWN if status >= 500 else FAILED
            return SendResult(
                outcome,
                error_code=str(status),
                error=f"SendGrid answered {status}: {detail}",
            )
        except TimeoutError as error:
            return SendResult(
                UNKNOWN, error=f"SendGrid did not answer in time: {error}"
            )
        except urllib.error.URLError as error:
            if isinstance(error.reason, TimeoutError | socket.timeout):
                return SendResult(
                    UNKNOWN, error=f"SendGrid did not answer in time: {error.reason}"
                )
            return SendResult(FAILED, error=f"Could not reach SendGrid: {error.reason}")
        message_id = ""
        headers = getattr(response, "headers", None)
        if headers is not None:
            message_id = headers.get("X-Message-Id", "") or ""
        if response.status_code >= 300:
            return SendResult(
                FAILED,
                error_code=str(response.status_code),
                error=f"SendGrid answered {response.status_code}",
            )
        return SendResult(SENT, provider_message_id=message_id)


# --- choosing backends ---------------------------------------------------------------


def sms_configured() -> bool:
    return bool(
        settings.TWILIO_ACCOUNT_SID
        and settings.TWILIO_AUTH_TOKEN
        and settings.TWILIO_FROM
    )


def email_configured() -> bool:
    return bool(settings.SENDGRID_API_KEY and settings.EMAIL_FROM)


def outbox_only() -> bool:
    """The outbox takes every channel: chosen explicitly, or the default when no provider is configured."""
    choice = settings.MESSAGING_BACKEND
    if choice == "outbox":
        return True
    if choice == "providers":
        return False
    return not (sms_configured() or email_configured())


def backend_for(channel: str) -> Backend | None:
    """The backend for ``channel``, or None when that channel's provider is not configured."""
    if outbox_only():
        return OutboxBackend()
    if channel == "sms":
        if not sms_configured():
            return None
        return TwilioBackend(
            account_sid=settings.TWILIO_ACCOUNT_SID,
            auth_token=settings.TWILIO_AUTH_TOKEN,
            timeout=settings.MESSAGING_PROVIDER_TIMEOUT_SECONDS,
        )
    if not email_configured():
        return None
    return SendGridBackend(
        api_key=settings.SENDGRID_API_KEY,
        timeout=settings.MESSAGING_PROVIDER_TIMEOUT_SECONDS,
    )
