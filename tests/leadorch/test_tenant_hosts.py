"""Which brand a host belongs to: looked up once, kept for DOMAIN_CACHE_SECONDS in the process."""

from __future__ import annotations

import pytest
from django.test import Client

from leadorch.middleware import cached_tenant, tenant_for_host
from tenants.models import Domain
from tests.conftest import host_of


@pytest.fixture
def host_cache(settings, monkeypatch):
    """Caching on, in a cache of this test's own."""
    settings.DOMAIN_CACHE_SECONDS = 60
    monkeypatch.setattr("leadorch.middleware._host_tenants", {})


def test_a_host_is_looked_up_once(
    test_tenants, public_schema, host_cache, django_assert_num_queries
):
    alpha = test_tenants["alpha"]
    host = host_of(alpha)
    assert cached_tenant(host) is None

    with django_assert_num_queries(1):
        first = tenant_for_host(host)
        again = tenant_for_host(host)

    assert first.schema_name == again.schema_name == alpha.schema_name
    assert again is not first  # a copy: the middleware annotates its own
    assert cached_tenant(host).schema_name == alpha.schema_name


def test_an_unknown_host_is_not_a_brand(test_tenants, public_schema, host_cache):
    with pytest.raises(Domain.DoesNotExist):
        tenant_for_host("nobody.localhost")
    assert cached_tenant("nobody.localhost") is None


def test_the_middleware_routes_by_the_same_cache(test_tenants, host_cache):
    alpha = test_tenants["alpha"]

    Client(HTTP_HOST=host_of(alpha)).get("/admin/login/")

    assert cached_tenant(host_of(alpha)).schema_name == alpha.schema_name


def test_zero_seconds_looks_the_host_up_every_time(
    test_tenants, public_schema, settings, django_assert_num_queries
):
    settings.DOMAIN_CACHE_SECONDS = 0
    host = host_of(test_tenants["alpha"])

    with django_assert_num_queries(2):
        tenant_for_host(host)
        tenant_for_host(host)
    assert cached_tenant(host) is None
