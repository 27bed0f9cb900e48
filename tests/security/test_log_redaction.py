"""Chat tokens and secrets never reach the log: Django's 404 warnings, the access log,
failed signature checks, tracebacks."""

from __future__ import annotations

import logging
import sys

import pytest
from daphne import cli as daphne_cli
from daphne import http_protocol
from django.test import Client

from chat import services as chat_services
from leadorch import logging as redaction
from leadorch import web
from tests.conftest import host_of
from tests.factories import LeadFactory
from tests.leads.conftest import event, make_connection, order_row, signed
from tests.leads.shopmonkey_fakes import WEBHOOK_SECRET
from tests.messaging.test_inbound_sms import TWILIO_TOKEN, post_sms, sms

SENDGRID_API_KEY = "SG.not-a-real-key-but-secret-all-the-same"
CRM_API_KEY = "sk-live-crm-api-key-do-not-log"


def console_handler() -> logging.Handler:
    """The handler settings.LOGGING puts on the root logger."""
    for handler in logging.getLogger().handlers:
        if any(isinstance(f, redaction.RedactTokensFilter) for f in handler.filters):
            return handler
    raise AssertionError("No root handler carries RedactTokensFilter")


def printed(records: list[logging.LogRecord]) -> str:
    """What the console handler writes for ``records``."""
    handler = console_handler()
    return "\n".join(handler.format(r) for r in records if handler.filter(r))


def assert_absent(caplog, *secrets: str) -> None:
    assert caplog.records, "the requests logged nothing: the test would prove nothing"
    text = printed(caplog.records)
    for secret in secrets:
        assert secret not in text
        for record in caplog.records:
            assert secret not in record.getMessage()
            assert secret not in (record.exc_text or "")


def test_settings_put_the_filter_on_the_console_handler(settings):
    assert "redact" in settings.LOGGING["handlers"]["console"]["filters"]
    assert settings.LOGGING["root"]["handlers"] == ["console"]
    assert console_handler().level <= logging.INFO


def test_chat_tokens_in_paths_never_reach_the_log(tenant, caplog):
    caplog.set_level(logging.DEBUG)
    client = Client(HTTP_HOST=host_of(tenant))
    lead = LeadFactory()
    valid = chat_services.chat_links_create(leads=[lead])[lead.pk][3:]
    guessed = "Guessed-token-0123456789abcdefghijklmnop"

    assert client.get(f"/c/{valid}").status_code == 200
    assert client.get(f"/c/{guessed}").status_code == 404
    assert client.get(f"/api/chat/{guessed}/messages").status_code == 404
    assert client.get(f"/api/chat/{valid}/messages?after=x").status_code == 400
    assert (
        client.post(
            f"/api/chat/{valid}/messages",
            {"text": "hi"},
            content_type="application/json",
        ).status_code
        == 201
    )
    assert any("[token]" in r.getMessage() for r in caplog.records)
    assert_absent(caplog, valid, guessed)


def test_failed_webhook_signatures_log_no_secret(tenant, caplog, settings):
    caplog.set_level(logging.DEBUG)
    settings.TWILIO_AUTH_TOKEN = TWILIO_TOKEN
    settings.SENDGRID_API_KEY = SENDGRID_API_KEY
    client = Client(HTTP_HOST=host_of(tenant))
    crm = make_connection(api_key=CRM_API_KEY)
    body, headers = signed(event(order_row()), secret="whsec_" + "A" * 40)
    response = client.post(
        f"/webhooks/shopmonkey/{crm.public_id}/",
        data=body,
        content_type="application/json",
        **headers,
    )
    assert response.status_code == 401
    assert post_sms(client, sms("hi"), token="not-the-token").status_code == 403
    assert_absent(
        caplog,
        WEBHOOK_SECRET,
        WEBHOOK_SECRET.removeprefix("whsec_"),
        TWILIO_TOKEN,
        SENDGRID_API_KEY,
        CRM_API_KEY,
    )


def test_daphnes_access_log_goes_through_logging_redacted(caplog):
    caplog.set_level(logging.INFO, logger="daphne.access")
    access_log = redaction.AccessLogGenerator()
    token = "AccessLogToken-0123456789abcdefghijkl"
    access_log(
        "http",
        "complete",
        {
            "client": "203.0.113.9:5555",
            "method": "GET",
            "path": f"/c/{token}",
            "status": 200,
            "size": 1234,
        },
    )
    access_log(
        "websocket",
        "connecting",
        {"client": "203.0.113.9:5556", "path": f"/ws/chat/{token}/"},
    )
    lines = [r.getMessage() for r in caplog.records if r.name == "daphne.access"]
    assert len(lines) == 2
    assert_absent(caplog, token)
    assert '"GET /c/[token]" 200 1234' in printed(caplog.records)
    assert '"WSCONNECTING /ws/chat/[token]/"' in printed(caplog.records)


def test_leadorch_web_runs_daphne_with_the_logging_access_log(monkeypatch):
    seen = {}

    def run(self, argv):
        seen["argv"] = argv
        seen["generator"] = daphne_cli.AccessLogGenerator

    monkeypatch.setattr(daphne_cli.CommandLineInterface, "run", run)
    monkeypatch.setattr(daphne_cli, "AccessLogGenerator", daphne_cli.AccessLogGenerator)
    monkeypatch.setattr(http_protocol, "WebRequest", http_protocol.WebRequest)
    web.main(["-p", "8123", "leadorch.asgi:application"])
    assert seen["generator"] is redaction.AccessLogGenerator
    assert http_protocol.WebRequest is web.WebRequest
    assert seen["argv"] == ["-p", "8123", "leadorch.asgi:application"]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("Not Found: /c/abcDEF-123_x", "Not Found: /c/[token]"),
        ("GET /api/chat/t0k3n/context 200", "GET /api/chat/[token]/context 200"),
        ("WSCONNECT /ws/chat/t0k3n/?after=5", "WSCONNECT /ws/chat/[token]/?after=5"),
        ("Not Found: /u/ZW1haWw:1sig:abc/", "Not Found: /u/[token]/"),
        ("https://alpha.example.com/c/t0k3n", "https://alpha.example.com/c/[token]"),
        ("GET /x?token=abc&after=2", "GET /x?token=[redacted]&after=2"),
        ("Authorization: Bearer sk-123", "Authorization: [redacted]"),
        ("{'api_key': 'sk-123', 'n': 1}", "{'api_key': '[redacted]', 'n': 1}"),
        ("webhook_secret=whsec_abc", "webhook_secret=[redacted]"),
        ("GET /static/chat/chat.js 200", "GET /static/chat/chat.js 200"),
        ("GET /admin/auth/user/ 200", "GET /admin/auth/user/ 200"),
        ("Signature check failed: no match.", "Signature check failed: no match."),
    ],
)
def test_redact(text, expected):
    assert redaction.redact(text) == expected


def test_the_filter_redacts_arguments_and_tracebacks():
    logger = logging.getLogger("tests.redaction")
    token = "TracebackToken0123456789"
    try:
        raise ValueError(f"no session for /c/{token}")
    except ValueError:
        record = logger.makeRecord(
            logger.name,
            logging.ERROR,
            __file__,
            1,
            "Failed %s: %s",
            ("GET", f"/api/chat/{token}/messages"),
            exc_info=sys.exc_info(),
        )
    assert redaction.RedactTokensFilter().filter(record) is True
    text = logging.Formatter().format(record)
    assert token not in text
    assert "Failed GET: /api/chat/[token]/messages" in text
    assert "no session for /c/[token]" in text


def test_a_record_with_mapping_arguments_is_redacted():
    """daphne's runserver logs with a dict of arguments."""
    record = logging.LogRecord(
        "django.channels.server",
        logging.INFO,
        __file__,
        1,
        "HTTP %(method)s %(path)s %(status)s",
        ({"method": "GET", "path": "/c/secret-token-value", "status": 200},),
        None,
    )
    redaction.RedactTokensFilter().filter(record)
    assert record.getMessage() == "HTTP GET /c/[token] 200"
