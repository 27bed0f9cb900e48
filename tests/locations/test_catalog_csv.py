"""Catalog CSV: export per location; import with a row-by-row preview, all or none."""

from __future__ import annotations

import base64
import csv
import io
from dataclasses import dataclass

import pytest
from django.contrib.auth.models import Permission, User
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.core.files.uploadedfile import SimpleUploadedFile
from django.db import IntegrityError, connection

from locations import catalog_csv
from locations.admin import IMPORT_SALT
from locations.catalog_csv import Action, CatalogImportError
from locations.models import Location, ServiceCatalogItem, ServiceOverride
from tests.factories import (
    LocationFactory,
    ServiceCatalogItemFactory,
    ServiceOverrideFactory,
    StaffMembershipFactory,
    SuperUserFactory,
    UserFactory,
)

IMPORT_URL = "/admin/locations/servicecatalogitem/import/"
CONFIRM_URL = "/admin/locations/servicecatalogitem/import/confirm/"
EXPORT_URL = "/admin/locations/servicecatalogitem/export/"
CHANGELIST_URL = "/admin/locations/servicecatalogitem/"
HEADER = list(catalog_csv.COLUMNS)


@dataclass
class Catalog:
    mine: Location
    theirs: Location
    coupe: ServiceCatalogItem
    truck: ServiceCatalogItem
    hood: ServiceCatalogItem
    retired: ServiceCatalogItem
    boss: User
    staff: User


@pytest.fixture
def catalog(tenant) -> Catalog:
    mine, theirs = LocationFactory(name="Mine"), LocationFactory(name="Theirs")
    coupe = ServiceCatalogItemFactory(
        code="tint-coupe",
        category="Window tint",
        name="Coupe ceramic",
        price_cents=44900,
        duration_minutes=120,
    )
    truck = ServiceCatalogItemFactory(
        code="tint-truck",
        category="Window tint",
        name="Truck ceramic",
        price_cents=54900,
        duration_minutes=180,
    )
    hood = ServiceCatalogItemFactory(
        code="ppf-hood",
        category="Paint protection",
        name="Hood film",
        description='Front edge, "wrapped"\nwith a seam.',
        price_cents=69900,
        duration_minutes=240,
    )
    retired = ServiceCatalogItemFactory(
        code="old-dye",
        category="Window tint",
        name="Dyed film",
        price_cents=19900,
        duration_minutes=60,
        is_active=False,
    )
    ServiceOverrideFactory(item=truck, location=mine, price_cents=59900)
    ServiceOverrideFactory(
        item=hood, location=mine, price_cents=None, is_available=False
    )
    ServiceOverrideFactory(item=coupe, location=theirs, price_cents=39900)
    staff = UserFactory(username="limited")
    staff.user_permissions.set(
        Permission.objects.filter(
            codename__in=[
                "view_servicecatalogitem",
                "add_servicecatalogitem",
                "change_servicecatalogitem",
                "view_serviceoverride",
                "add_serviceoverride",
                "change_serviceoverride",
                "delete_serviceoverride",
            ]
        )
    )
    StaffMembershipFactory(user=staff, location=mine)
    return Catalog(
        mine=mine,
        theirs=theirs,
        coupe=coupe,
        truck=truck,
        hood=hood,
        retired=retired,
        boss=SuperUserFactory(username="boss"),
        staff=staff,
    )


def to_csv(rows: list[list[str]], header: list[str] | None = None) -> bytes:
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\r\n")
    writer.writerow(HEADER if header is None else header)
    writer.writerows(rows)
    return out.getvalue().encode()


def read_csv(text: str) -> list[list[str]]:
    return list(csv.reader(io.StringIO(text, newline="")))


def snapshot() -> tuple[list[tuple], list[tuple]]:
    """Everything an import may change, to check that nothing was saved."""
    items = list(
        ServiceCatalogItem.objects.order_by("code").values_list(
            "code",
            "category",
            "name",
            "description",
            "price_cents",
            "duration_minutes",
            "is_active",
            "updated_at",
        )
    )
    overrides = list(
        ServiceOverride.objects.order_by("item__code", "location__name").values_list(
            "item__code",
            "location__name",
            "price_cents",
            "duration_minutes",
            "is_available",
            "updated_at",
        )
    )
    return items, overrides


def actions(preview) -> dict[str, str]:
    return {row.code: row.action for row in preview.rows}


# --- export --------------------------------------------------------------------------


def test_export_of_a_location_has_its_effective_values(catalog):
    text = catalog_csv.catalog_export_csv(user=catalog.boss, location=catalog.mine)

    assert read_csv(text) == [
        HEADER,
        [
            "ppf-hood",
            "Paint protection",
            "Hood film",
            'Front edge, "wrapped"\nwith a seam.',
            "699.00",
            "240",
            "no",
        ],
        ["tint-coupe", "Window tint", "Coupe ceramic", "", "449.00", "120", "yes"],
        ["tint-truck", "Window tint", "Truck ceramic", "", "599.00", "180", "yes"],
    ]


def test_export_of_the_brand_has_brand_values_and_inactive_items(catalog):
    rows = read_csv(catalog_csv.catalog_export_csv(user=catalog.boss, location=None))

    assert rows[0] == HEADER
    assert [row[0] for row in rows[1:]] == [
        "ppf-hood",
        "tint-coupe",
        "old-dye",
        "tint-truck",
    ]
    assert rows[3] == ["old-dye", "Window tint", "Dyed film", "", "199.00", "60", "no"]
    assert rows[4][4:] == ["549.00", "180", "yes"]


# --- round trips ---------------------------------------------------------------------


@pytest.mark.parametrize("target", ["mine", "brand"])
def test_round_trip_changes_nothing(catalog, target):
    location = catalog.mine if target == "mine" else None
    exported = catalog_csv.catalog_export_csv(user=catalog.boss, location=location)
    before = snapshot()

    preview = catalog_csv.catalog_import_preview(
        user=catalog.boss, content=("\ufeff" + exported).encode(), location=location
    )
    applied = catalog_csv.catalog_import_apply(
        user=catalog.boss, content=exported.encode(), location=location
    )

    assert preview.is_valid, preview.error_lines
    assert set(actions(preview).values()) == {Action.UNCHANGED}
    assert set(actions(applied).values()) == {Action.UNCHANGED}
    assert snapshot() == before


# --- brand imports -------------------------------------------------------------------


def test_brand_import_previews_then_creates_and_updates(catalog):
    # given: columns in another order, a BOM, a new code and a changed price
    content = "\ufeff" + (
        "Name,code,price,Duration Minutes,category,offered\r\n"
        "Coupe ceramic,tint-coupe,479.00,120,Window tint,yes\r\n"
        "Truck ceramic,tint-truck,549.00,180,Window tint,yes\r\n"
        "Windshield film,tint-windshield,$1,299.5,90,Window tint,no\r\n"
    )
    content = content.replace("$1,299.5", '"$1,299.5"')

    # when
    preview = catalog_csv.catalog_import_preview(
        user=catalog.boss, content=content.encode(), location=None
    )

    # then: nothing saved yet
    assert preview.is_valid, preview.error_lines
    assert actions(preview) == {
        "tint-coupe": Action.UPDATE,
        "tint-truck": Action.UNCHANGED,
        "tint-windshield": Action.CREATE,
    }
    assert preview.rows[0].changes == ["price $449.00 → $479.00"]
    assert not ServiceCatalogItem.objects.filter(code="tint-windshield").exists()
    catalog.coupe.refresh_from_db()
    assert catalog.coupe.price_cents == 44900

    # when
    catalog_csv.catalog_import_apply(
        user=catalog.boss, content=content.encode(), location=None
    )

    # then
    catalog.coupe.refresh_from_db()
    assert catalog.coupe.price_cents == 47900
    created = ServiceCatalogItem.objects.get(code="tint-windshield")
    assert (created.name, created.price_cents, created.duration_minutes) == (
        "Windshield film",
        129950,
        90,
    )
    assert created.is_active is False
    assert created.description == ""
    # A column missing from the file leaves the items' values alone.
    catalog.hood.refresh_from_db()
    assert catalog.hood.description.startswith("Front edge")


def test_brand_import_updates_brand_fields_and_deactivates(catalog):
    content = to_csv(
        [
            [
                "ppf-hood",
                "Paint protection",
                "Full hood film",
                "",
                "699",
                "300",
                "false",
            ]
        ]
    )

    preview = catalog_csv.catalog_import_apply(
        user=catalog.boss, content=content, location=None
    )

    assert preview.rows[0].changes == [
        "name 'Hood film' → 'Full hood film'",
        "description changed",
        "duration 240 min → 300 min",
        "offered yes → no",
    ]
    catalog.hood.refresh_from_db()
    assert (catalog.hood.name, catalog.hood.description) == ("Full hood film", "")
    assert (catalog.hood.duration_minutes, catalog.hood.is_active) == (300, False)


# --- location imports ----------------------------------------------------------------


def test_location_import_sets_and_removes_overrides(catalog):
    content = to_csv(
        [
            # a new price: an override is created
            ["tint-coupe", "", "", "", "399.00", "", ""],
            # back to the brand price: the override (price only) goes away
            ["tint-truck", "Window tint", "Truck ceramic", "", "549.00", "180", "yes"],
            # offered again: the override (offered only) goes away
            ["ppf-hood", "", "", "", "699.00", "240", "1"],
            # not offered here: an inactive item may be switched off too
            ["old-dye", "", "", "", "", "75", "0"],
        ]
    )

    preview = catalog_csv.catalog_import_preview(
        user=catalog.staff, content=content, location=catalog.mine
    )

    assert preview.is_valid, preview.error_lines
    assert actions(preview) == {
        "tint-coupe": Action.SET_OVERRIDE,
        "tint-truck": Action.REMOVE_OVERRIDE,
        "ppf-hood": Action.REMOVE_OVERRIDE,
        "old-dye": Action.SET_OVERRIDE,
    }
    assert preview.rows[0].changes == ["price $449.00 → $399.00"]
    assert preview.rows[3].changes == [
        "duration 60 min → 75 min",
        "offered yes → no",
    ]
    items_before = snapshot()[0]

    catalog_csv.catalog_import_apply(
        user=catalog.staff, content=content, location=catalog.mine
    )

    overrides = {
        o.item.code: (o.price_cents, o.duration_minutes, o.is_available)
        for o in ServiceOverride.objects.filter(location=catalog.mine)
    }
    assert overrides == {
        "tint-coupe": (39900, None, True),
        "old-dye": (None, 75, False),
    }
    # Brand items and the other location are untouched.
    assert snapshot()[0] == items_before
    assert ServiceOverride.objects.get(location=catalog.theirs).price_cents == 39900


def test_location_import_refuses_unknown_codes_and_brand_field_changes(catalog):
    before = snapshot()
    content = to_csv(
        [
            ["tint-coupe", "Window tint", "Coupe ceramic", "", "399.00", "120", "yes"],
            ["tint-truck", "Window tint", "Cheap truck", "", "549.00", "180", "yes"],
            ["no-such-thing", "", "", "", "100.00", "60", "yes"],
        ]
    )

    preview = catalog_csv.catalog_import_preview(
        user=catalog.staff, content=content, location=catalog.mine
    )

    assert not preview.is_valid
    assert preview.error_lines == [
        "Row 3: name: differs from the brand catalog ('Truck ceramic'); a location "
        "import cannot change brand-wide fields, so leave it as exported or empty.",
        "Row 4: code: no brand service has the code 'no-such-thing' (brand-wide "
        "staff add services to the brand catalog first).",
    ]
    with pytest.raises(CatalogImportError):
        catalog_csv.catalog_import_apply(
            user=catalog.staff, content=content, location=catalog.mine
        )
    assert snapshot() == before


# --- validation ----------------------------------------------------------------------


def test_every_row_error_is_reported_with_its_row_and_nothing_is_saved(catalog):
    before = snapshot()
    rows = [
        ["new-ok", "Window tint", "Fine", "", "100.00", "60", "yes"],  # row 2
        ["", "Window tint", "No code", "", "100.00", "60", "yes"],  # 3
        ["bad code!", "Window tint", "Bad", "", "100.00", "60", "yes"],  # 4
        ["no-name", "Window tint", "", "", "100.00", "60", "yes"],  # 5
        ["no-category", "", "X", "", "100.00", "60", "yes"],  # 6
        ["too-precise", "Window tint", "X", "", "12.345", "60", "yes"],  # 7
        ["negative", "Window tint", "X", "", "-5.00", "60", "yes"],  # 8
        ["words", "Window tint", "X", "", "cheap", "60", "yes"],  # 9
        ["free", "Window tint", "X", "", "0", "60", "yes"],  # 10
        ["no-price", "Window tint", "X", "", "", "60", "yes"],  # 11
        ["zero-time", "Window tint", "X", "", "10.00", "0", "yes"],  # 12
        ["half-time", "Window tint", "X", "", "10.00", "1.5", "yes"],  # 13
        ["long-time", "Window tint", "X", "", "10.00", "2000", "yes"],  # 14
        ["maybe", "Window tint", "X", "", "10.00", "60", "maybe"],  # 15
        ["new-ok", "Window tint", "Again", "", "100.00", "60", "yes"],  # 16
        ["long-name", "Window tint", "N" * 201, "", "10.00", "60", "yes"],  # 17
        ["extra", "Window tint", "X", "", "10.00", "60", "yes", "surprise"],  # 18
    ]

    preview = catalog_csv.catalog_import_preview(
        user=catalog.boss, content=to_csv(rows), location=None
    )

    assert not preview.is_valid
    assert preview.rows[0].action == Action.CREATE  # valid on its own
    assert preview.error_lines == [
        "Row 3: code: required.",
        "Row 4: code: 'bad code!' is not a valid code: use letters, numbers, "
        "hyphens or underscores, e.g. tint-sedan-ceramic.",
        "Row 5: name: required.",
        "Row 6: category: required.",
        "Row 7: price: enter an amount in dollars with at most 2 decimals, "
        "e.g. 449.00 (got '12.345').",
        "Row 8: price: must not be negative (got '-5.00').",
        "Row 9: price: enter an amount in dollars with at most 2 decimals, "
        "e.g. 449.00 (got 'cheap').",
        "Row 10: price: must be more than zero.",
        "Row 11: price: required.",
        "Row 12: duration_minutes: enter a positive whole number of minutes, "
        "e.g. 120 (got '0').",
        "Row 13: duration_minutes: enter a positive whole number of minutes, "
        "e.g. 120 (got '1.5').",
        "Row 14: duration_minutes: must be at most 1440 minutes (24 hours) (got 2000).",
        "Row 15: offered: enter yes or no (or true/false, 1/0) (got 'maybe').",
        "Row 16: code: 'new-ok' appears more than once (first on row 2).",
        "Row 17: name: Ensure this value has at most 200 characters (it has 201).",
        "Row 18: has a value in a column the header does not name "
        "(the header names 7 columns).",
    ]
    with pytest.raises(CatalogImportError) as refused:
        catalog_csv.catalog_import_apply(
            user=catalog.boss, content=to_csv(rows), location=None
        )
    assert refused.value.message.startswith("Nothing was saved: Row 3: code: required.")
    assert snapshot() == before


def test_rows_are_numbered_as_in_the_sheet(catalog):
    """Blank lines and quoted line breaks do not shift the row numbers."""
    content = (
        b"code,category,name,description,price,duration_minutes\r\n"
        b'tint-coupe,Window tint,Coupe ceramic,"two\r\nlines",449.00,120\r\n'
        b"\r\n"
        b"tint-truck,Window tint,Truck ceramic,,oops,180\r\n"
    )

    preview = catalog_csv.catalog_import_preview(
        user=catalog.boss, content=content, location=None
    )

    assert preview.error_lines == [
        "Row 4: price: enter an amount in dollars with at most 2 decimals, "
        "e.g. 449.00 (got 'oops')."
    ]


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"", "The file is empty."),
        (to_csv([]), "The file has no rows below the header."),
        (
            to_csv(
                [["tint-coupe", "Window tint", "C", "", "1", "1", "yes", "red"]],
                header=[*HEADER, " Colour "],
            ),
            "Unknown column: 'Colour'. Allowed columns: code, category, name, "
            "description, price, duration_minutes, offered.",
        ),
        (
            to_csv([["tint-coupe", "449.00"]], header=["code", "price"]),
            "Missing columns: category, name, duration_minutes.",
        ),
        (
            to_csv([["a"] * 8], header=[*HEADER, "Code"]),
            "Columns named twice: code.",
        ),
        (
            b"\x89PNG\r\n\x1a\n\x00\x00\x00\rIHDR\x00\x00",
            "This is not a CSV file (it contains binary data, e.g. an Excel "
            'workbook). Save the sheet as "CSV UTF-8" and try again.',
        ),
        (
            "code,name\nteinté,Café\n".encode("latin-1"),
            'The file is not UTF-8 text. Save it as "CSV UTF-8" and try again.',
        ),
        (
            "code,name\n".encode("utf-16"),
            'The file is UTF-16 text. Save it as "CSV UTF-8" and try again.',
        ),
        (
            b'code,category,name,price,duration_minutes\n"tint-coupe,Window',
            "Line 2: the file cannot be read as CSV (unexpected end of data).",
        ),
        (
            b"x" * (catalog_csv.MAX_BYTES + 1),
            "The file is larger than 1 MB; split it into smaller files.",
        ),
    ],
    ids=[
        "empty",
        "header-only",
        "unknown-column",
        "missing-columns",
        "repeated-column",
        "binary",
        "latin-1",
        "utf-16",
        "broken-quotes",
        "too-large",
    ],
)
def test_unusable_files_get_a_readable_error(catalog, content, message):
    preview = catalog_csv.catalog_import_preview(
        user=catalog.boss, content=content, location=None
    )

    assert not preview.is_valid
    assert preview.error_lines == [message]


def test_too_many_rows_are_refused(catalog):
    rows = [
        [f"item-{n}", "Window tint", f"Item {n}", "", "10.00", "60", "yes"]
        for n in range(catalog_csv.MAX_ROWS + 1)
    ]

    preview = catalog_csv.catalog_import_preview(
        user=catalog.boss, content=to_csv(rows), location=None
    )

    assert preview.error_lines == [
        "The file has more than 2,000 rows; split it into smaller files."
    ]


def test_the_row_limit_itself_is_accepted(catalog):
    rows = [
        [f"item-{n}", "Window tint", f"Item {n}", "", "10.00", "60", "yes"]
        for n in range(catalog_csv.MAX_ROWS)
    ]

    preview = catalog_csv.catalog_import_preview(
        user=catalog.boss, content=to_csv(rows), location=None
    )

    assert preview.is_valid
    assert preview.counts == {Action.CREATE: catalog_csv.MAX_ROWS}


def test_a_location_file_needs_a_value_column(catalog):
    preview = catalog_csv.catalog_import_preview(
        user=catalog.boss,
        content=to_csv([["tint-coupe", "Coupe ceramic"]], header=["code", "name"]),
        location=catalog.mine,
    )

    assert preview.error_lines == [
        "A location import needs at least one of the columns price, "
        "duration_minutes, offered."
    ]


# --- who may do what (services) ------------------------------------------------------


def test_location_staff_may_not_touch_the_brand_or_other_locations(catalog):
    content = to_csv(
        [["tint-coupe", "Window tint", "Coupe ceramic", "", "1.00", "120", "yes"]]
    )
    for location in (None, catalog.theirs):
        with pytest.raises(PermissionDenied):
            catalog_csv.catalog_export_csv(user=catalog.staff, location=location)
        with pytest.raises(PermissionDenied):
            catalog_csv.catalog_import_preview(
                user=catalog.staff, content=content, location=location
            )
        with pytest.raises(PermissionDenied):
            catalog_csv.catalog_import_apply(
                user=catalog.staff, content=content, location=location
            )
    catalog.coupe.refresh_from_db()
    assert catalog.coupe.price_cents == 44900


# --- the admin -----------------------------------------------------------------------


def upload(content: bytes, name: str = "catalog.csv") -> SimpleUploadedFile:
    return SimpleUploadedFile(name, content, content_type="text/csv")


def messages_of(response) -> list[str]:
    return [str(message) for message in response.context["messages"]]


@pytest.fixture
def boss_client(catalog, tenant_client):
    tenant_client.force_login(catalog.boss)
    return tenant_client


@pytest.fixture
def staff_client(catalog, tenant_client):
    tenant_client.force_login(catalog.staff)
    return tenant_client


def test_changelist_links_to_import_and_export(boss_client):
    page = boss_client.get(CHANGELIST_URL).content.decode()

    assert f'href="{IMPORT_URL}">Import CSV' in page
    assert f'href="{EXPORT_URL}">Export CSV' in page


def test_admin_export_downloads_the_locations_csv(catalog, boss_client):
    chooser = boss_client.get(EXPORT_URL)
    response = boss_client.get(EXPORT_URL, {"location": catalog.mine.pk})

    assert chooser.status_code == 200
    assert [value for value, _ in chooser.context["targets"]] == [
        "brand",
        str(catalog.mine.pk),
        str(catalog.theirs.pk),
    ]
    assert response.status_code == 200
    assert response["Content-Type"] == "text/csv; charset=utf-8"
    assert response["Content-Disposition"].startswith(
        'attachment; filename="catalog-mine-'
    )
    body = response.content.decode("utf-8")
    assert body.startswith("\ufeffcode,category,name")
    assert body[1:] == catalog_csv.catalog_export_csv(
        user=catalog.boss, location=catalog.mine
    )


def test_admin_preview_then_confirm(catalog, boss_client):
    content = to_csv(
        [
            ["tint-coupe", "Window tint", "Coupe ceramic", "", "479.00", "120", "yes"],
            ["tint-new", "Window tint", "New film", "Fresh", "99.00", "45", "yes"],
        ]
    )

    # when: the upload shows the preview
    preview = boss_client.post(IMPORT_URL, {"target": "brand", "file": upload(content)})

    # then: nothing saved, every row listed with its action
    assert preview.status_code == 200
    page = preview.content.decode()
    assert "Update brand item" in page
    assert "Create brand item" in page
    assert "price $449.00 → $479.00" in page
    assert "Apply 2 changes" in page
    assert not ServiceCatalogItem.objects.filter(code="tint-new").exists()

    # when: confirmed
    payload = preview.context["confirm_form"].initial["payload"]
    done = boss_client.post(CONFIRM_URL, {"payload": payload}, follow=True)

    # then
    assert done.redirect_chain == [(CHANGELIST_URL, 302)]
    assert messages_of(done) == [
        "Imported for the brand (brand-wide items): 1 create brand item, "
        "1 update brand item."
    ]
    assert ServiceCatalogItem.objects.get(code="tint-new").description == "Fresh"
    catalog.coupe.refresh_from_db()
    assert catalog.coupe.price_cents == 47900


def test_admin_preview_of_an_invalid_file_offers_no_confirmation(catalog, boss_client):
    before = snapshot()
    content = to_csv(
        [
            ["tint-coupe", "Window tint", "Coupe ceramic", "", "479.00", "120", "yes"],
            ["tint-coupe", "Window tint", "Twice", "", "abc", "120", "yes"],
        ]
    )

    response = boss_client.post(
        IMPORT_URL, {"target": "brand", "file": upload(content)}
    )

    page = response.content.decode()
    assert response.status_code == 200
    assert response.context["confirm_form"] is None
    assert "Nothing was saved." in page
    assert "Row 3: code: &#x27;tint-coupe&#x27; appears more than once" in page
    assert "Row 3: price: enter an amount in dollars" in page
    assert snapshot() == before


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"\x00\x01\x02PK\x03\x04 binary", "This is not a CSV file"),
        (b"x" * (catalog_csv.MAX_BYTES + 10), "The file is larger than 1 MB"),
    ],
    ids=["binary", "too-large"],
)
def test_admin_upload_of_garbage_is_a_readable_error(
    catalog, boss_client, content, message
):
    response = boss_client.post(
        IMPORT_URL, {"target": "brand", "file": upload(content, "sheet.xlsx")}
    )

    assert response.status_code == 200
    assert message in response.content.decode()
    assert response.context["confirm_form"] is None


def test_a_tampered_confirmation_is_refused(catalog, boss_client):
    before = snapshot()
    content = to_csv(
        [["tint-coupe", "Window tint", "Coupe ceramic", "", "479.00", "120", "yes"]]
    )
    preview = boss_client.post(IMPORT_URL, {"target": "brand", "file": upload(content)})
    payload = preview.context["confirm_form"].initial["payload"]
    data = signing.loads(payload, salt=IMPORT_SALT)
    cheap = content.replace(b"479.00", b"1.00")
    forged = dict(data, content=base64.b64encode(cheap).decode())
    tampered = [
        payload[:-3] + ("AAA" if payload[-3:] != "AAA" else "BBB"),
        signing.dumps(forged, salt="another salt", compress=True),
        signing.dumps(dict(data, user=catalog.staff.pk), salt=IMPORT_SALT),
        signing.dumps(dict(data, schema="bravo"), salt=IMPORT_SALT),
        "",
    ]

    for bad in tampered:
        response = boss_client.post(CONFIRM_URL, {"payload": bad})

        assert response.status_code == 400
        assert "could not be verified" in response.content.decode()
    assert snapshot() == before


def test_admin_confirm_revalidates_against_the_current_catalog(catalog, boss_client):
    content = to_csv(
        [["tint-new", "Window tint", "New film", "", "99.00", "45", "yes"]],
    )
    preview = boss_client.post(IMPORT_URL, {"target": "brand", "file": upload(content)})
    payload = preview.context["confirm_form"].initial["payload"]
    catalog.coupe.delete()  # meanwhile, unrelated changes are fine

    response = boss_client.post(CONFIRM_URL, {"payload": payload})

    assert response.status_code == 302
    assert ServiceCatalogItem.objects.filter(code="tint-new").exists()


def test_location_staff_import_their_own_locations_overrides(catalog, staff_client):
    targets = staff_client.get(IMPORT_URL).context["form"].fields["target"].choices
    content = to_csv([["tint-coupe", "", "", "", "419.00", "", ""]])

    preview = staff_client.post(
        IMPORT_URL, {"target": str(catalog.mine.pk), "file": upload(content)}
    )
    done = staff_client.post(
        CONFIRM_URL,
        {"payload": preview.context["confirm_form"].initial["payload"]},
    )

    assert targets == [(str(catalog.mine.pk), "Location: Mine")]
    assert done.status_code == 302
    override = ServiceOverride.objects.get(item=catalog.coupe, location=catalog.mine)
    assert override.price_cents == 41900
    catalog.coupe.refresh_from_db()
    assert catalog.coupe.price_cents == 44900


def test_location_staff_cannot_export_or_import_elsewhere(catalog, staff_client):
    before = snapshot()
    content = to_csv(
        [["tint-coupe", "Window tint", "Coupe ceramic", "", "1.00", "120", "yes"]]
    )

    # Export: another location is not found, the brand is forbidden.
    assert (
        staff_client.get(EXPORT_URL, {"location": catalog.theirs.pk}).status_code == 404
    )
    assert staff_client.get(EXPORT_URL, {"location": "brand"}).status_code == 403
    assert (
        staff_client.get(EXPORT_URL, {"location": catalog.mine.pk}).status_code == 200
    )
    # Import: neither target is offered, and posting one anyway is refused.
    for target in (str(catalog.theirs.pk), "brand"):
        response = staff_client.post(
            IMPORT_URL, {"target": target, "file": upload(content)}
        )
        assert response.status_code == 200
        assert "Select a valid choice" in response.content.decode()
    # A genuinely signed confirmation for a target they may not use is refused too
    # (e.g. made before their access changed).
    for target in (str(catalog.theirs.pk), "brand"):
        payload = signing.dumps(
            {
                "target": target,
                "user": catalog.staff.pk,
                "schema": connection.schema_name,
                "content": base64.b64encode(content).decode(),
            },
            salt=IMPORT_SALT,
            compress=True,
        )
        response = staff_client.post(CONFIRM_URL, {"payload": payload})
        assert response.status_code in {403, 404}
    assert snapshot() == before


def test_location_staff_cannot_change_brand_items_through_their_location(
    catalog, staff_client
):
    before = snapshot()
    content = to_csv(
        [["tint-coupe", "Window tint", "Renamed", "", "449.00", "120", "yes"]]
    )

    response = staff_client.post(
        IMPORT_URL, {"target": str(catalog.mine.pk), "file": upload(content)}
    )

    assert response.context["confirm_form"] is None
    assert "name: differs from the brand catalog" in response.content.decode()
    assert snapshot() == before


def test_staff_without_override_permissions_cannot_import(catalog, tenant_client):
    viewer = UserFactory(username="viewer")
    viewer.user_permissions.set(
        Permission.objects.filter(codename="view_servicecatalogitem")
    )
    StaffMembershipFactory(user=viewer, location=catalog.mine)
    tenant_client.force_login(viewer)

    changelist = tenant_client.get(CHANGELIST_URL).content.decode()

    assert "Import CSV" not in changelist
    assert "Export CSV" in changelist
    assert tenant_client.get(IMPORT_URL).status_code == 403
    assert tenant_client.post(CONFIRM_URL, {"payload": "x"}).status_code == 403


def test_a_refusal_by_the_database_rolls_the_whole_import_back(catalog, monkeypatch):
    before = snapshot()
    content = to_csv(
        [
            ["tint-coupe", "Window tint", "Coupe ceramic", "", "479.00", "120", "yes"],
            ["tint-new", "Window tint", "New film", "", "99.00", "45", "yes"],
        ]
    )
    original_save = ServiceCatalogItem.save

    def save(self, *args, **kwargs):
        if self.code == "tint-new":  # e.g. created meanwhile by someone else
            raise IntegrityError("duplicate key value violates unique constraint")
        return original_save(self, *args, **kwargs)

    monkeypatch.setattr(ServiceCatalogItem, "save", save)

    with pytest.raises(CatalogImportError) as refused:
        catalog_csv.catalog_import_apply(
            user=catalog.boss, content=content, location=None
        )

    assert refused.value.preview.file_errors == [
        "The database refused the import (the catalog probably changed at the "
        "same time); nothing was saved. Upload the file again."
    ]
    assert snapshot() == before


def test_formula_like_cells_are_exported_inert_and_import_back_unchanged(catalog):
    ServiceCatalogItemFactory(
        code="tint-formula",
        name='=HYPERLINK("http://evil.example","Tint")',
        category="+Tint",
        description="@SUM(1+1)",
    )
    exported = catalog_csv.catalog_export_csv(user=catalog.boss, location=None)
    assert "'=HYPERLINK" in exported
    assert "'@SUM(1+1)" in exported
    assert "'+Tint" in exported
    before = snapshot()
    preview = catalog_csv.catalog_import_preview(
        user=catalog.boss, content=exported.encode(), location=None
    )
    assert preview.is_valid, preview.error_lines
    assert set(actions(preview).values()) == {Action.UNCHANGED}
    assert snapshot() == before
    assert catalog_csv.cell_read("'plain") == "'plain"
