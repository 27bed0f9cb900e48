"""The production web server (python -m leadorch.web) on loopback."""

from __future__ import annotations

import http.client
import json
import uuid

import pytest

from tests.conftest import host_of

pytestmark = pytest.mark.django_db(transaction=True)


def post(server, host: str, path: str, body: bytes, content_type: str):
    connection = http.client.HTTPConnection("127.0.0.1", server.port, timeout=10)
    try:
        connection.request(
            "POST",
            path,
            body=body,
            headers={"Host": host, "Content-Type": content_type},
        )
        response = connection.getresponse()
        return response.status, response.getheader("Content-Type"), response.read()
    finally:
        connection.close()


def test_an_unreadable_multipart_body_is_answered_by_the_application(server, tenant_tx):
    """Twisted does not answer a body it cannot parse before the application does."""
    status, content_type, body = post(
        server,
        host_of(tenant_tx),
        f"/webhooks/shopmonkey/{uuid.uuid4()}/",
        b"not a multipart body",
        "multipart/form-data; boundary=zz",
    )
    assert (status, content_type) == (404, "application/json")
    assert json.loads(body)["error"] == "unknown_connection"
