"""Logging that never writes a chat token or a secret.

Chat links carry their token in the path (``/c/<token>``, ``/api/chat/<token>/…``,
``/ws/chat/<token>/``), and so do unsubscribe links (``/u/<token>/``). Whoever
reads a log line with one could open the customer's conversation. Paths reach the
log in Django's "Not Found: /c/…" warnings, in the web server's access log and in
tracebacks; secrets could reach it in a query string or an ``Authorization``
header quoted by a library.

:class:`RedactTokensFilter`, on the console handler (``settings.LOGGING``),
rewrites every record it passes: the token segment becomes ``[token]``, the value
of a secret-looking query parameter or header becomes ``[redacted]``. It formats
the message once and stores the redacted text, so every handler after it sees
the same.

:class:`AccessLogGenerator` replaces daphne's access log (which writes to stdout
directly, past logging) with one that logs through the ``daphne.access`` logger,
so the filter applies to it too. ``python -m leadorch.web`` runs daphne with it.
"""

from __future__ import annotations

import logging
import re
from typing import Any

REDACTED_TOKEN = "[token]"  # noqa: S105 - a placeholder, not a secret
REDACTED = "[redacted]"

# A path segment that carries a token: the page, the REST API and the socket of a chat,
# and an unsubscribe link.
TOKEN_PATHS = re.compile(
    r"(?P<prefix>/(?:c|u|api/chat|ws/chat)/)(?P<token>[^/?#\s\"'<>\\]+)"
)
# Query parameters and header-like "name: value" or "name=value" pairs whose value is a
# secret. Names are matched without regard to case.
SENSITIVE_NAMES = (
    r"token|access_token|api[_-]?key|apikey|secret|webhook[_-]?secret|password"
    r"|passwd|signature|sig|auth|authorization|key|x-twilio-signature"
    r"|webhook-signature|x-twilio-email-event-webhook-signature|sessionid|csrftoken"
)
SECRET_PAIRS = re.compile(
    rf"(?P<name>\b(?:{SENSITIVE_NAMES}))(?P<sep>[\"']?\s*[=:]\s*[\"']?)"
    r"(?P<value>(?:Bearer\s+|Basic\s+|Token\s+)?[^\s&;\"'<>]+)",
    re.IGNORECASE,
)


def redact(text: str) -> str:
    """``text`` with chat and unsubscribe tokens and secret values replaced."""
    if not text or ("/" not in text and "=" not in text and ":" not in text):
        return text
    text = TOKEN_PATHS.sub(rf"\g<prefix>{REDACTED_TOKEN}", text)
    return SECRET_PAIRS.sub(rf"\g<name>\g<sep>{REDACTED}", text)


class RedactTokensFilter(logging.Filter):
    """Rewrites each record's message (and its traceback text) without tokens or secrets.

    Never drops a record. A message whose arguments cannot be formatted is left to
    the handler, which reports it as logging always does.
    """

    def filter(self, record: logging.LogRecord) -> bool:
        try:
            message = record.getMessage()
        except Exception:  # a bad format string: logging reports it itself
            return True
        cleaned = redact(message)
        if cleaned != message:
            record.msg, record.args = cleaned, ()
        if record.exc_info and not record.exc_text:
            # Format the traceback now, so that the text every handler prints is clean.
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = redact(record.exc_text)
        if getattr(record, "stack_info", None):
            record.stack_info = redact(record.stack_info)
        return True


access_logger = logging.getLogger("daphne.access")


class AccessLogGenerator:
    """daphne's "action logger", through logging: one INFO line per request or socket
    event (NCSA-like, as daphne's own), which the redaction filter sees."""

    def __init__(self, stream: Any = None) -> None:
        self.stream = stream  # unused: lines go to logging

    def __call__(self, protocol: str, action: str, details: dict[str, Any]) -> None:
        client = details.get("client") or "-"
        path = details.get("path", "")
        if protocol == "http" and action == "complete":
            access_logger.info(
                '%s "%s %s" %s %s',
                client,
                details.get("method", "-"),
                path,
                details.get("status", "-"),
                details.get("size", "-"),
            )
        elif protocol == "websocket" and action in {
            "connecting",
            "rejected",
            "connected",
            "disconnected",
        }:
            verb = {
                "connecting": "WSCONNECTING",
                "rejected": "WSREJECT",
                "connected": "WSCONNECT",
                "disconnected": "WSDISCONNECT",
            }[action]
            access_logger.info('%s "%s %s"', client, verb, path)
