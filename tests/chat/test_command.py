from __future__ import annotations

import pytest
from django.core.management import CommandError, call_command

from chat import services as chat_services


def test_chat_link_prints_a_working_url_by_email_and_by_id(
    session, customer, tenant, capsys, settings
):
    settings.PUBLIC_PORT_SUFFIX = ":8000"
    call_command("chat_link", "--tenant", tenant.slug, "--email", "MARIA@example.com")
    by_email = capsys.readouterr().out.strip()
    call_command("chat_link", "--tenant", tenant.slug, "--lead", str(customer.pk))
    by_id = capsys.readouterr().out.strip()
    for url in (by_email, by_id):
        assert url.startswith(f"http://{tenant.get_primary_domain().domain}:8000/c/")
        token = url.rsplit("/c/", 1)[1]
        assert chat_services.chat_link_resolve(token=token).pk == session.pk
    assert by_email != by_id


@pytest.mark.parametrize(
    ("arguments", "message"),
    [
        (["--tenant", "nope", "--lead", "1"], "No brand has the slug 'nope'"),
        (["--tenant", "alpha", "--lead", "999999"], "No lead with id 999999"),
        (["--tenant", "alpha", "--email", "x@example.com"], "No lead with email"),
    ],
)
def test_chat_link_errors_are_readable(tenant, arguments, message):
    with pytest.raises(CommandError, match=message):
        call_command("chat_link", *arguments)
