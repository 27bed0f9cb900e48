"""/u/<token>/: the unsubscribe link of every email, and RFC 8058 one-click unsubscribe."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
import time_machine
from django.test import Client
from django.urls import reverse
from django.utils import timezone
from django_tenants.utils import tenant_context

from messaging.models import OptOut, OptOutSource
from messaging.unsubscribe import unsubscribe_token
from tests.conftest import host_of

EMAIL = "jordan.rivera@example.com"

OPT_OUTS: list[dict[str, Any]] = []


def record_opt_out(**kwargs: Any) -> None:
    OPT_OUTS.append(kwargs)


@pytest.fixture
def handlers(tenant, settings):
    settings.OPT_OUT_HANDLERS = [f"{__name__}.record_opt_out"]
    settings.INBOUND_REPLY_HANDLERS = []
    OPT_OUTS.clear()
    yield
    OPT_OUTS.clear()


@pytest.fixture
def url(handlers) -> str:
    return reverse(
        "messaging:unsubscribe",
        kwargs={"token": unsubscribe_token(address="Jordan.Rivera@Example.com")},
    )


@pytest.fixture
def csrf_client(tenant) -> Client:
    """A client that enforces CSRF, like a browser or a mail provider would meet it."""
    return Client(HTTP_HOST=host_of(tenant), enforce_csrf_checks=True)


def one_click(client: Client, url: str):
    """The POST a mail provider sends for List-Unsubscribe-Post: no cookies, no CSRF token."""
    return client.post(
        url,
        data="List-Unsubscribe=One-Click",
        content_type="application/x-www-form-urlencoded",
    )


def test_get_asks_to_confirm_and_changes_nothing(url, tenant_client):
    response = tenant_client.get(url)

    assert response.status_code == 200
    assert response["Referrer-Policy"] == "no-referrer"
    html = response.content.decode()
    assert f"Unsubscribe {EMAIL} from Alpha Tint emails?" in html
    assert '<form method="post">' in html
    assert 'name="csrfmiddlewaretoken"' in html
    assert "<script" not in html
    assert "http://" not in html  # no third-party assets
    assert "https://" not in html
    assert not OptOut.objects.exists()
    assert OPT_OUTS == []


def test_the_confirm_form_unsubscribes(url, csrf_client):
    # given: the page, as a browser loads it
    page = csrf_client.get(url)
    token = page.context["csrf_token"]

    # when
    response = csrf_client.post(url, data={"csrfmiddlewaretoken": str(token)})

    # then
    assert response.status_code == 200
    assert response["Referrer-Policy"] == "no-referrer"
    html = response.content.decode()
    assert "You're unsubscribed" in html
    assert f"{EMAIL} will get no more emails from Alpha Tint." in html
    optout = OptOut.objects.get()
    assert (optout.channel, optout.address, optout.source, optout.revoked_at) == (
        "email",
        EMAIL,
        OptOutSource.EMAIL_LINK,
        None,
    )
    assert OPT_OUTS == [{"channel": "email", "address": EMAIL}]


def test_one_click_post_without_csrf_works_and_is_idempotent(url, csrf_client):
    # when
    first = one_click(csrf_client, url)
    second = one_click(csrf_client, url)

    # then
    assert (first.status_code, second.status_code) == (200, 200)
    assert "You're unsubscribed" in second.content.decode()
    optout = OptOut.objects.get()
    assert (optout.channel, optout.address, optout.source) == (
        "email",
        EMAIL,
        OptOutSource.ONE_CLICK,
    )
    assert OPT_OUTS == [{"channel": "email", "address": EMAIL}] * 2


def test_an_existing_opt_out_is_kept(url, tenant_client):
    # given: SendGrid reported a spam complaint earlier
    earlier = OptOut.objects.create(
        channel="email", address=EMAIL, source=OptOutSource.PROVIDER
    )

    # when
    response = one_click(tenant_client, url)

    # then
    assert response.status_code == 200
    assert list(OptOut.objects.values_list("pk", "source", "revoked_at")) == [
        (earlier.pk, OptOutSource.PROVIDER, None)
    ]


def test_a_31_day_old_link_still_works(handlers, tenant_client):
    # given: the email went out 31 days ago
    with time_machine.travel(timezone.now() - timedelta(days=31), tick=False):
        url = reverse(
            "messaging:unsubscribe", kwargs={"token": unsubscribe_token(address=EMAIL)}
        )

    # when
    page = tenant_client.get(url)
    response = tenant_client.post(url)

    # then
    assert page.status_code == 200
    assert response.status_code == 200
    assert OptOut.objects.get().address == EMAIL


def test_a_link_older_than_a_year_is_404(handlers, tenant_client):
    with time_machine.travel(timezone.now() - timedelta(days=366), tick=False):
        url = reverse(
            "messaging:unsubscribe", kwargs={"token": unsubscribe_token(address=EMAIL)}
        )

    response = tenant_client.post(url)

    assert response.status_code == 404
    assert not OptOut.objects.exists()


def assert_reveals_nothing(response) -> None:
    assert response.status_code == 404
    assert response["Referrer-Policy"] == "no-referrer"
    html = response.content.decode()
    assert "Page not found" in html
    assert EMAIL not in html
    assert "Alpha Tint" not in html
    assert "Bravo Glass" not in html


@pytest.mark.parametrize("method", ["get", "post"])
def test_a_tampered_token_is_404(handlers, tenant_client, method):
    # given: the token of one address with the last characters of its signature changed
    token = unsubscribe_token(address=EMAIL)
    tampered = token[:-4] + ("AAAA" if not token.endswith("AAAA") else "BBBB")
    url = reverse("messaging:unsubscribe", kwargs={"token": tampered})

    # when
    response = getattr(tenant_client, method)(url)

    # then
    assert_reveals_nothing(response)
    assert not OptOut.objects.exists()
    assert OPT_OUTS == []


@pytest.mark.parametrize("method", ["get", "post"])
def test_another_brands_token_is_404_at_this_brands_host(
    handlers, tenant_client, other_tenant, method
):
    # given: a genuine link from a bravo email
    with tenant_context(other_tenant):
        url = reverse(
            "messaging:unsubscribe", kwargs={"token": unsubscribe_token(address=EMAIL)}
        )

    # when
    response = getattr(tenant_client, method)(url)

    # then
    assert_reveals_nothing(response)
    assert not OptOut.objects.exists()
    with tenant_context(other_tenant):
        assert not OptOut.objects.exists()
    assert OPT_OUTS == []


def test_the_link_is_not_served_at_the_platform_host(url, tenant):
    response = Client(HTTP_HOST="platform.localhost").post(url)

    assert response.status_code == 404
    with tenant_context(tenant):
        assert not OptOut.objects.exists()
