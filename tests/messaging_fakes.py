"""The Twilio and SendGrid SDKs with their HTTP mocked at the transport.

Twilio: the SDK's own seam is its HttpClient (``Client(..., http_client=...)``);
``TwilioTransport`` is one, answering like the Messages API and recording every
request. SendGrid: the SDK sends through python-http-client, which opens urllib
requests; ``SendGridTransport`` is the urllib opener it gets.
"""

from __future__ import annotations

import io
import json
import logging
import threading
import urllib.error
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from twilio.http import HttpClient
from twilio.http.response import Response as TwilioResponse


@dataclass
class TwilioTransport(HttpClient):
    """Answers POST .../Messages.json; ``answer(to)`` may return (status, body) or raise."""

    answer: Callable[[str], tuple[int, dict[str, Any]]] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def __post_init__(self) -> None:
        super().__init__(
            logger=logging.getLogger("twilio.test"), is_async=False, timeout=10.0
        )

    def request(
        self,
        method,
        uri,
        params=None,
        data=None,
        headers=None,
        auth=None,
        timeout=None,
        allow_redirects=False,
    ):
        with self.lock:
            self.requests.append(
                {
                    "method": method,
                    "uri": uri,
                    "data": dict(data or {}),
                    "timeout": timeout,
                    "auth": auth,
                }
            )
            sid = f"SM{len(self.requests):032d}"
        to = (data or {}).get("To", "")
        status, body = self.answer(to) if self.answer else (201, {})
        if status < 300:
            body = {
                "sid": sid,
                "status": "queued",
                "to": to,
                "body": (data or {}).get("Body"),
                **body,
            }
        return TwilioResponse(status, json.dumps(body))


class SendGridResponse:
    """What urllib's opener returns: python-http-client reads getcode(), read() and info()."""

    def __init__(self, status: int, headers: dict[str, str]) -> None:
        self.status, self._headers = status, headers

    def getcode(self) -> int:
        return self.status

    def read(self) -> bytes:
        return b""

    def info(self) -> dict[str, str]:
        return self._headers


@dataclass
class SendGridTransport:
    """Stands in for urllib's opener under python-http-client (the SDK's HTTP layer).

    ``answer(payload)`` returns a status code, or raises what urllib raises
    (URLError, TimeoutError). A status of 400 or more becomes urllib's HTTPError,
    which the library turns into its own exceptions as it would in production.
    """

    answer: Callable[[dict[str, Any]], int] | None = None
    requests: list[dict[str, Any]] = field(default_factory=list)

    def open(self, request: Any, timeout: Any = None) -> SendGridResponse:
        payload = json.loads(request.data.decode())
        self.requests.append(
            {
                "url": request.full_url,
                "payload": payload,
                "headers": dict(request.header_items()),
                "timeout": timeout,
            }
        )
        status = self.answer(payload) if self.answer else 202
        if status >= 400:
            body = io.BytesIO(json.dumps({"errors": [{"message": "refused"}]}).encode())
            raise urllib.error.HTTPError(request.full_url, status, "error", {}, body)
        return SendGridResponse(status, {"X-Message-Id": f"sg{len(self.requests)}"})


def install(
    monkeypatch: Any,
    settings: Any,
    *,
    twilio: TwilioTransport | None = None,
    sendgrid: SendGridTransport | None = None,
) -> None:
    """Configure both providers and route their SDKs' HTTP to the given transports."""
    settings.MESSAGING_BACKEND = "providers"
    settings.TWILIO_ACCOUNT_SID = "AC" + "1" * 32
    settings.TWILIO_AUTH_TOKEN = "twilio-test-token"
    settings.TWILIO_FROM = "+16195550100"
    settings.SENDGRID_API_KEY = "SG.test"
    settings.EMAIL_FROM = "quotes@tintworld.example"
    if twilio is not None:
        monkeypatch.setattr(
            "messaging.backends.twilio_http_client", lambda timeout: twilio
        )
    if sendgrid is not None:
        monkeypatch.setattr(
            "python_http_client.client.urllib.build_opener", lambda *handlers: sendgrid
        )
