"""Tenants for the whole test session: created once, found again by every test.

Two brands, alpha and bravo, get their schemas when the test database is
created. A transactional test's flush empties the public tables (the Tenant and
Domain rows) but not the schemas, so every tenant fixture puts the rows back
when they are missing; creating a tenant whose schema exists skips its migrations.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from asgiref.sync import SyncToAsync
from django.db import connection, connections
from django.test import Client
from django_tenants.utils import get_public_schema_name, schema_context, tenant_context

from chat import db as chat_db
from tenants import services as tenant_services
from tenants.models import Tenant

TEST_TENANTS = {"alpha": "Alpha Tint", "bravo": "Bravo Glass"}
PLATFORM_HOST = "platform.localhost"


def ensure_test_tenants() -> dict[str, Tenant]:
    """Return the test brands, recreating any row a flush removed. Idempotent."""
    connection.set_schema_to_public()
    tenant_services.tenant_ensure_public(hosts=[PLATFORM_HOST])
    tenants = {}
    for slug, name in TEST_TENANTS.items():
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            tenant = tenant_services.tenant_create(name=name, slug=slug)
        tenants[slug] = tenant
    return tenants


@pytest.fixture(scope="session")
def django_db_setup(
    django_db_setup: None, django_db_blocker: pytest.FixtureRequest
) -> None:
    with django_db_blocker.unblock():  # type: ignore[attr-defined]
        ensure_test_tenants()


@pytest.fixture
def test_tenants(db: None) -> dict[str, Tenant]:
    return ensure_test_tenants()


@pytest.fixture
def tenant(test_tenants: dict[str, Tenant]) -> Iterator[Tenant]:
    """Brand alpha, with the connection inside its schema for the test."""
    with tenant_context(test_tenants["alpha"]):
        yield test_tenants["alpha"]
    connection.set_schema_to_public()


@pytest.fixture
def other_tenant(test_tenants: dict[str, Tenant]) -> Tenant:
    """Brand bravo; enter it with tenant_context when a test needs its schema."""
    return test_tenants["bravo"]


# Tables whose rows come from migrations, kept when a transactional test cleans up.
MIGRATION_DATA_TABLES = ("django_migrations", "django_content_type", "auth_permission")


def truncate_test_tenant_schemas() -> None:
    """Empty every table of the test brands' schemas (a transactional test's flush does not)."""
    connection.set_schema_to_public()
    with connection.cursor() as cursor:
        for schema in TEST_TENANTS:
            cursor.execute(
                "SELECT tablename FROM pg_tables WHERE schemaname = %s AND NOT (tablename = ANY(%s))",
                [schema, list(MIGRATION_DATA_TABLES)],
            )
            tables = ", ".join(f'"{schema}"."{name}"' for (name,) in cursor.fetchall())
            if tables:
                cursor.execute(f"TRUNCATE {tables} RESTART IDENTITY CASCADE")


@pytest.fixture
def tenant_tx(transactional_db: None) -> Iterator[Tenant]:
    """Brand alpha for tests that commit (threads, several connections); emptied
    afterwards, as after every test that commits."""
    tenants = ensure_test_tenants()
    with tenant_context(tenants["alpha"]):
        yield tenants["alpha"]


def _commits(request: pytest.FixtureRequest) -> bool:
    """Whether the test runs outside a rolled-back transaction."""
    marker = request.node.get_closest_marker("django_db")
    if marker is not None and marker.kwargs.get("transaction"):
        return True
    return "transactional_db" in request.fixturenames


@pytest.fixture(autouse=True)
def _empty_test_schemas_after_committing_tests(
    request: pytest.FixtureRequest,
) -> Iterator[None]:
    """A test that commits leaves nothing in the test brands' schemas for the next,
    whatever fixture it entered them with. Set up after ``transactional_db``, this
    empties them before its flush and before Django closes the connection."""
    commits = _commits(request)
    if commits:
        request.getfixturevalue("transactional_db")
    yield
    if commits:
        truncate_test_tenant_schemas()


@pytest.fixture
def public_schema(db: None) -> Iterator[None]:
    with schema_context(get_public_schema_name()):
        yield


def host_of(tenant: Tenant) -> str:
    return tenant.get_primary_domain().domain


@pytest.fixture
def tenant_client(tenant: Tenant) -> Client:
    """A test client that talks to brand alpha's host."""
    return Client(HTTP_HOST=host_of(tenant))


@pytest.fixture(autouse=True)
def _close_worker_thread_connections() -> Iterator[None]:
    """Connections opened on asgiref's shared thread would hold the test database open."""
    yield
    SyncToAsync.single_thread_executor.submit(connections.close_all).result()
    chat_db.close_pooled_connections()
