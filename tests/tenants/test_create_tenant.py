from io import StringIO

import pytest
from django.core.management import CommandError, call_command
from django.db import connection
from django.test import Client
from django_tenants.utils import schema_exists, tenant_context

from locations.models import Location
from tenants.models import Domain, OutboundMode, Tenant


def test_creates_schema_tables_and_hosts(transactional_db):
    out = StringIO()
    try:
        # when
        call_command(
            "create_tenant",
            name="Glass Pros",
            slug="glass-pros",
            domain=["glasspros.test"],
            stdout=out,
        )

        # then
        tenant = Tenant.objects.get(slug="glass-pros")
        assert tenant.schema_name == "glass_pros"
        assert tenant.outbound_mode == OutboundMode.DISABLED
        assert schema_exists("glass_pros")
        assert set(
            Domain.objects.filter(tenant=tenant).values_list("domain", "is_primary")
        ) == {
            ("glass-pros.localhost", True),
            ("glasspros.test", False),
        }
        with tenant_context(tenant):
            assert (
                Location.objects.count() == 0
            )  # the brand's tables exist and are empty
        assert (
            Client(HTTP_HOST="glass-pros.localhost").get("/admin/login/").status_code
            == 200
        )
        assert "Created brand Glass Pros" in out.getvalue()
    finally:
        connection.set_schema_to_public()
        Tenant.objects.filter(slug="glass-pros").delete()
        with connection.cursor() as cursor:
            cursor.execute("DROP SCHEMA IF EXISTS glass_pros CASCADE")


@pytest.mark.parametrize(
    ("slug", "message"),
    [
        ("alpha", "exists already"),
        ("platform", "reserved"),
        ("Bad Slug!", "lowercase letters"),
        ("x", "lowercase letters"),
    ],
)
def test_refuses_with_a_readable_message(test_tenants, slug, message):
    before = Tenant.objects.count()

    with pytest.raises(CommandError, match=message):
        call_command("create_tenant", name="Another", slug=slug)

    assert Tenant.objects.count() == before


def test_refuses_a_host_in_use(test_tenants):
    with pytest.raises(CommandError, match=r"Host already in use: alpha\.localhost"):
        call_command(
            "create_tenant", name="Copycat", slug="copycat", domain=["alpha.localhost"]
        )
    assert not Tenant.objects.filter(slug="copycat").exists()
