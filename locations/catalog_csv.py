"""The service catalog as CSV: export a location's (or the brand's), import one back.

An import is two steps. :func:`catalog_import_preview` reads the file and says,
for every row, what it would do (create or update a brand item, set or remove a
location's override, nothing) or why it cannot; it saves nothing.
:func:`catalog_import_apply` reads the same file again, validates it again
against the catalog as it is now, and writes every change in one transaction --
or nothing at all when any row is invalid.

Two targets:

* **the brand** (brand-wide staff only): the rows define brand items, matched by
  code -- new codes are created, known ones updated. ``offered`` is whether the
  item is active brand-wide.
* **a location**: the rows set that location's prices, durations and whether it
  offers each service. Codes must exist brand-wide; name, category and
  description cannot change there (they are brand-wide). A value equal to the
  brand's is stored as "the brand value"; an override left with nothing of its own
  is removed.

Services not in the file, and columns not in the file, are left as they are.
"""

from __future__ import annotations

import csv
import io
import logging
import re
from dataclasses import dataclass, field
from typing import Any

from django.core.exceptions import PermissionDenied, ValidationError
from django.core.validators import validate_slug
from django.db import IntegrityError, transaction

from leadorch.errors import ApplicationError
from locations import selectors
from locations.models import Location, ServiceCatalogItem, ServiceOverride

logger = logging.getLogger(__name__)

COLUMNS = (
    "code",
    "category",
    "name",
    "description",
    "price",
    "duration_minutes",
    "offered",
)
BRAND_REQUIRED_COLUMNS = ("code", "category", "name", "price", "duration_minutes")
LOCATION_REQUIRED_COLUMNS = ("code",)
LOCATION_VALUE_COLUMNS = ("price", "duration_minutes", "offered")
BRAND_FIELD_COLUMNS = ("category", "name", "description")

MAX_BYTES = 1_000_000
MAX_ROWS = 2_000
MAX_DURATION_MINUTES = 24 * 60
MAX_PRICE_CENTS = 2_147_483_647  # the column's limit

TRUE_WORDS = frozenset({"yes", "true", "1"})
FALSE_WORDS = frozenset({"no", "false", "0"})
_PRICE = re.compile(r"^\$?(?P<whole>\d{1,3}(?:,\d{3})+|\d+)(?:\.(?P<cents>\d{1,2}))?$")

# Model field -> CSV column, for messages of full_clean.
_FIELD_COLUMNS = {
    "code": "code",
    "category": "category",
    "name": "name",
    "description": "description",
    "price_cents": "price",
    "duration_minutes": "duration_minutes",
    "is_active": "offered",
    "is_available": "offered",
}


class Action:
    CREATE = "create"
    UPDATE = "update"
    SET_OVERRIDE = "set_override"
    REMOVE_OVERRIDE = "remove_override"
    UNCHANGED = "unchanged"
    INVALID = "invalid"

    LABELS = {
        CREATE: "Create brand item",
        UPDATE: "Update brand item",
        SET_OVERRIDE: "Set location override",
        REMOVE_OVERRIDE: "Remove location override (brand values)",
        UNCHANGED: "Unchanged",
        INVALID: "Not imported (errors)",
    }


@dataclass
class RowResult:
    """One data row of the file: what it would do, or why it cannot."""

    number: int  # as a spreadsheet numbers it: the header is row 1
    code: str
    name: str = ""
    action: str = Action.INVALID
    changes: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)
    # What to write: brand item values, or the override's (price, duration, available).
    values: dict[str, Any] = field(default_factory=dict)
    item: ServiceCatalogItem | None = field(default=None, repr=False)
    override: ServiceOverride | None = field(default=None, repr=False)

    @property
    def action_label(self) -> str:
        return Action.LABELS[self.action]

    def error(self, column: str | None, message: str) -> None:
        self.errors.append(f"{column}: {message}" if column else message)


@dataclass
class ImportPreview:
    """What an import would do (before it is applied) or did (after)."""

    location: Location | None
    rows: list[RowResult] = field(default_factory=list)
    file_errors: list[str] = field(default_factory=list)
    applied: bool = False

    @property
    def is_valid(self) -> bool:
        return not self.file_errors and bool(self.rows) and not self.invalid_rows

    @property
    def invalid_rows(self) -> list[RowResult]:
        return [row for row in self.rows if row.errors]

    @property
    def error_lines(self) -> list[str]:
        """Every error as one line, file errors first, then by row number."""
        lines = list(self.file_errors)
        for row in self.rows:
            lines.extend(f"Row {row.number}: {message}" for message in row.errors)
        return lines

    @property
    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {}
        for row in self.rows:
            counts[row.action] = counts.get(row.action, 0) + 1
        return counts

    @property
    def summary(self) -> str:
        counts = self.counts
        parts = [
            f"{counts[action]} {Action.LABELS[action].lower()}"
            for action in Action.LABELS
            if counts.get(action)
        ]
        return ", ".join(parts) or "no rows"

    @property
    def target_label(self) -> str:
        return (
            f"location {self.location.name}"
            if self.location
            else "the brand (brand-wide items)"
        )


class CatalogImportError(ApplicationError):
    """The file (or a row of it) is invalid: nothing was saved. Carries the preview."""

    def __init__(self, preview: ImportPreview) -> None:
        lines = preview.error_lines or ["the file has no rows."]
        message = "Nothing was saved: " + "; ".join(lines[:5])
        if len(lines) > 5:
            message += f" (and {len(lines) - 5} more)"
        super().__init__(message, code="catalog_import_invalid")
        self.preview = preview


# --- formatting -----------------------------------------------------------------------


def price_format(cents: int) -> str:
    """449.00 for 44900 cents."""
    return f"{cents // 100}.{cents % 100:02d}"


def _money(cents: int | None) -> str:
    return "brand price" if cents is None else f"${cents / 100:,.2f}"


def _minutes(minutes: int | None) -> str:
    return "brand duration" if minutes is None else f"{minutes} min"


def _yes_no(value: bool) -> str:
    return "yes" if value else "no"


# --- permissions ----------------------------------------------------------------------


def catalog_target_check(*, user: Any, location: Location | None) -> None:
    """Refuse a target the user may not use: the brand needs a brand-wide user,
    a location must be one of the user's."""
    visible = selectors.location_ids_visible_to(user=user)
    if location is None:
        if visible is not None:
            raise PermissionDenied("Only brand-wide staff may use the brand catalog.")
    elif visible is not None and location.pk not in visible:
        raise PermissionDenied("This location is not one of yours.")


# --- export ---------------------------------------------------------------------------


def catalog_export_csv(*, user: Any, location: Location | None) -> str:
    """The catalog as CSV text (no byte-order mark; the caller adds one for Excel).

    For a location: its active services with its own price, duration and whether
    it offers each. For the brand (``location=None``): every brand item with the
    brand values, ``offered`` meaning active brand-wide.
    """
    catalog_target_check(user=user, location=location)
    out = io.StringIO()
    writer = _SafeWriter(csv.writer(out, lineterminator="\r\n"))
    writer.writerow(COLUMNS)
    if location is None:
        for item in ServiceCatalogItem.objects.order_by("category", "name", "code"):
            writer.writerow(
                [
                    item.code,
                    item.category,
                    item.name,
                    item.description,
                    price_format(item.price_cents),
                    item.duration_minutes,
                    _yes_no(item.is_active),
                ]
            )
    else:
        items = selectors.service_list_for_location(
            location=location, include_unavailable=True
        ).order_by("category", "name", "code")
        for item in items:
            writer.writerow(
                [
                    item.code,
                    item.category,
                    item.name,
                    item.description,
                    price_format(item.effective_price_cents),
                    item.effective_duration_minutes,
                    _yes_no(item.is_offered),
                ]
            )
    return out.getvalue()


# A spreadsheet runs a cell that starts with one of these as a formula.
FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


def cell_write(value: Any) -> Any:
    """A text cell made inert for spreadsheets: a leading apostrophe before a formula
    sign (``cell_read`` takes it off again, so an export imports unchanged)."""
    if isinstance(value, str) and value.startswith(FORMULA_STARTS):
        return "'" + value
    return value


def cell_read(value: str) -> str:
    value = value.strip()
    if value.startswith("'") and value[1:].startswith(FORMULA_STARTS):
        return value[1:]
    return value


class _SafeWriter:
    def __init__(self, writer: Any) -> None:
        self.writer = writer

    def writerow(self, row: list[Any]) -> None:
        self.writer.writerow([cell_write(value) for value in row])


# --- reading the file -----------------------------------------------------------------


def _normalize_header(name: str) -> str:
    return re.sub(r"[\s\-]+", "_", name.strip().lower())


def _read(
    content: bytes, preview: ImportPreview
) -> tuple[list[str], list[tuple[int, list[str]]]]:
    """Decode and split the file; file-level problems go to ``preview.file_errors``."""
    if len(content) > MAX_BYTES:
        preview.file_errors.append(
            f"The file is larger than {MAX_BYTES // 1_000_000} MB; "
            "split it into smaller files."
        )
        return [], []
    if not content.strip():
        preview.file_errors.append("The file is empty.")
        return [], []
    if content.startswith((b"\xff\xfe", b"\xfe\xff")):
        preview.file_errors.append(
            'The file is UTF-16 text. Save it as "CSV UTF-8" and try again.'
        )
        return [], []
    if b"\x00" in content:
        preview.file_errors.append(
            "This is not a CSV file (it contains binary data, e.g. an Excel workbook). "
            'Save the sheet as "CSV UTF-8" and try again.'
        )
        return [], []
    try:
        text = content.decode("utf-8-sig")
    except UnicodeDecodeError:
        preview.file_errors.append(
            'The file is not UTF-8 text. Save it as "CSV UTF-8" and try again.'
        )
        return [], []
    reader = csv.reader(io.StringIO(text, newline=""), strict=True)
    header: list[str] = []
    records: list[tuple[int, list[str]]] = []
    try:
        for number, record in enumerate(reader, start=1):
            if number == 1:
                header = record
                continue
            if not any(cell.strip() for cell in record):
                continue  # an empty line
            if len(records) >= MAX_ROWS:
                preview.file_errors.append(
                    f"The file has more than {MAX_ROWS:,} rows; "
                    "split it into smaller files."
                )
                return header, []
            records.append((number, record))
    except csv.Error as error:
        preview.file_errors.append(
            f"Line {reader.line_num}: the file cannot be read as CSV ({error})."
        )
        return header, []
    return header, records


def _columns(
    header: list[str], preview: ImportPreview, *, for_brand: bool
) -> list[str] | None:
    """The normalized header, or None (with the errors noted) when it cannot be used."""
    columns = [_normalize_header(name) for name in header]
    errors = preview.file_errors
    if not any(columns):
        errors.append(
            "The first row must be a header naming the columns: "
            + ", ".join(COLUMNS)
            + "."
        )
        return None
    unknown = [
        name
        for name, column in zip(header, columns, strict=True)
        if column and column not in COLUMNS
    ]
    if unknown:
        errors.append(
            f"Unknown column{'s' if len(unknown) > 1 else ''}: "
            + ", ".join(repr(name.strip()) for name in unknown)
            + ". Allowed columns: "
            + ", ".join(COLUMNS)
            + "."
        )
    repeated = sorted({c for c in columns if c and columns.count(c) > 1})
    if repeated:
        errors.append("Columns named twice: " + ", ".join(repeated) + ".")
    required = BRAND_REQUIRED_COLUMNS if for_brand else LOCATION_REQUIRED_COLUMNS
    missing = [c for c in required if c not in columns]
    if missing:
        errors.append(
            f"Missing column{'s' if len(missing) > 1 else ''}: "
            + ", ".join(missing)
            + "."
        )
    if not for_brand and not any(c in columns for c in LOCATION_VALUE_COLUMNS):
        errors.append(
            "A location import needs at least one of the columns "
            + ", ".join(LOCATION_VALUE_COLUMNS)
            + "."
        )
    return None if errors else columns


# --- parsing cells --------------------------------------------------------------------


def _parse_price(text: str, row: RowResult) -> int | None:
    if text.startswith("-"):
        row.error("price", f"must not be negative (got {text!r}).")
        return None
    match = _PRICE.match(text)
    if not match:
        row.error(
            "price",
            "enter an amount in dollars with at most 2 decimals, e.g. 449.00 "
            f"(got {text!r}).",
        )
        return None
    whole = int(match["whole"].replace(",", ""))
    cents = int((match["cents"] or "0").ljust(2, "0"))
    value = whole * 100 + cents
    if value == 0:
        row.error("price", "must be more than zero.")
        return None
    if value > MAX_PRICE_CENTS:
        row.error("price", f"{text!r} is too large.")
        return None
    return value


def _parse_duration(text: str, row: RowResult) -> int | None:
    if not re.fullmatch(r"\d+", text) or int(text) == 0:
        row.error(
            "duration_minutes",
            f"enter a positive whole number of minutes, e.g. 120 (got {text!r}).",
        )
        return None
    value = int(text)
    if value > MAX_DURATION_MINUTES:
        row.error(
            "duration_minutes",
            f"must be at most {MAX_DURATION_MINUTES} minutes (24 hours) (got {value}).",
        )
        return None
    return value


def _parse_offered(text: str, row: RowResult) -> bool | None:
    word = text.lower()
    if word in TRUE_WORDS:
        return True
    if word in FALSE_WORDS:
        return False
    row.error("offered", f"enter yes or no (or true/false, 1/0) (got {text!r}).")
    return None


def _clean_instance(instance: Any, row: RowResult, **options: Any) -> None:
    """Run the model's field validation; its messages name the CSV columns."""
    try:
        instance.full_clean(**options)
    except ValidationError as error:
        for name, messages in error.message_dict.items():
            column = _FIELD_COLUMNS.get(name)
            for message in messages:
                row.error(column, message)


# --- the rows -------------------------------------------------------------------------


def _parse_values(
    row: RowResult, cells: dict[str, str], *, for_brand: bool
) -> dict[str, Any]:
    """The row's values as model fields (those given); problems go to ``row.errors``."""
    values: dict[str, Any] = {}
    if for_brand:
        for column in BRAND_REQUIRED_COLUMNS:
            if column != "code" and not cells.get(column):
                row.error(column, "required.")
        for column in BRAND_FIELD_COLUMNS:
            if column in cells:
                values[column] = cells[column]
    if cells.get("price"):
        values["price_cents"] = _parse_price(cells["price"], row)
    if cells.get("duration_minutes"):
        values["duration_minutes"] = _parse_duration(cells["duration_minutes"], row)
    if cells.get("offered"):
        values["is_active" if for_brand else "is_available"] = _parse_offered(
            cells["offered"], row
        )
    if for_brand and not row.errors:
        # Field validation (lengths) of what is given; code is checked on its own.
        candidate = ServiceCatalogItem(code="x", **values)
        given = set(values)
        _clean_instance(
            candidate,
            row,
            exclude=[
                f.name for f in ServiceCatalogItem._meta.fields if f.name not in given
            ],
            validate_unique=False,
            validate_constraints=False,
        )
    return values


def _brand_row(
    row: RowResult, values: dict[str, Any], item: ServiceCatalogItem | None
) -> None:
    row.item = item
    if item is None:
        row.action = Action.CREATE
        row.values = {"code": row.code, **values}
        return
    for name, value in values.items():
        old = getattr(item, name)
        same = _same_text(old, value) if name in BRAND_FIELD_COLUMNS else old == value
        if not same:
            row.changes.append(_describe(name, old, value))
    row.action = Action.UPDATE if row.changes else Action.UNCHANGED
    row.values = values


def _same_text(a: str, b: str) -> bool:
    """Equal but for surrounding blanks and line endings (spreadsheets change them)."""
    return a.replace("\r\n", "\n").strip() == b.replace("\r\n", "\n").strip()


def _describe(name: str, old: Any, new: Any) -> str:
    if name == "price_cents":
        return f"price {_money(old)} → {_money(new)}"
    if name == "duration_minutes":
        return f"duration {_minutes(old)} → {_minutes(new)}"
    if name in {"is_active", "is_available"}:
        return f"offered {_yes_no(old)} → {_yes_no(new)}"
    if name == "description":
        return "description changed"
    return f"{name} {old!r} → {new!r}"


def _location_row(
    row: RowResult,
    cells: dict[str, str],
    values: dict[str, Any],
    item: ServiceCatalogItem | None,
    override: ServiceOverride | None,
) -> None:
    if item is None:
        row.error(
            "code",
            f"no brand service has the code {row.code!r} (brand-wide staff add "
            "services to the brand catalog first).",
        )
        return
    row.name = item.name
    row.item, row.override = item, override
    for column in BRAND_FIELD_COLUMNS:
        given = cells.get(column, "")
        if given and not _same_text(given, getattr(item, column)):
            row.error(
                column,
                f"differs from the brand catalog ({getattr(item, column)!r}); a "
                "location import cannot change brand-wide fields, so leave it as "
                "exported or empty.",
            )
    if row.errors:
        return
    # What the location has now (effective values) and what the row wants;
    # an empty cell keeps what the location has.
    now = {
        "price_cents": (override and override.price_cents) or item.price_cents,
        "duration_minutes": (override and override.duration_minutes)
        or item.duration_minutes,
        "is_available": override.is_available if override else True,
    }
    want = {**now, **values}
    for name in now:
        if now[name] != want[name]:
            row.changes.append(_describe(name, now[name], want[name]))
    # Stored: what differs from the brand; the rest is "the brand value".
    stored = {
        "price_cents": None
        if want["price_cents"] == item.price_cents
        else want["price_cents"],
        "duration_minutes": None
        if want["duration_minutes"] == item.duration_minutes
        else want["duration_minutes"],
        "is_available": want["is_available"],
    }
    neutral = stored == {
        "price_cents": None,
        "duration_minutes": None,
        "is_available": True,
    }
    if not row.changes:
        row.action = Action.UNCHANGED
    elif neutral and override is not None:
        row.action = Action.REMOVE_OVERRIDE
    else:
        row.action = Action.SET_OVERRIDE
    row.values = stored


def _check_code(row: RowResult, first_row_of: dict[str, int]) -> None:
    if not row.code:
        row.error("code", "required.")
        return
    try:
        validate_slug(row.code)
    except ValidationError:
        row.error(
            "code",
            f"{row.code!r} is not a valid code: use letters, numbers, hyphens or "
            "underscores, e.g. tint-sedan-ceramic.",
        )
    if len(row.code) > 64:
        row.error("code", "must be at most 64 characters.")
    if row.code in first_row_of:
        row.error(
            "code",
            f"{row.code!r} appears more than once "
            f"(first on row {first_row_of[row.code]}).",
        )
    else:
        first_row_of[row.code] = row.number


def _build(
    *, content: bytes, location: Location | None, lock: bool = False
) -> ImportPreview:
    for_brand = location is None
    preview = ImportPreview(location=location)
    header, records = _read(content, preview)
    if preview.file_errors:
        return preview
    columns = _columns(header, preview, for_brand=for_brand)
    if columns is None:
        return preview
    if not records:
        preview.file_errors.append("The file has no rows below the header.")
        return preview

    parsed: list[tuple[RowResult, dict[str, str], dict[str, Any]]] = []
    first_row_of: dict[str, int] = {}
    for number, record in records:
        row = RowResult(number=number, code="")
        cells = dict.fromkeys(column for column in columns if column) | {
            columns[index]: cell_read(value)
            for index, value in enumerate(record)
            if index < len(columns) and columns[index]
        }
        if any(
            value.strip()
            for index, value in enumerate(record)
            if index >= len(columns) or not columns[index]
        ):
            row.error(
                None,
                "has a value in a column the header does not name "
                f"(the header names {sum(1 for c in columns if c)} columns).",
            )
        row.code, row.name = cells["code"], cells.get("name", "")
        _check_code(row, first_row_of)
        values = _parse_values(row, cells, for_brand=for_brand)
        parsed.append((row, cells, values))
        preview.rows.append(row)

    items_qs = ServiceCatalogItem.objects.filter(code__in=list(first_row_of))
    if lock:
        items_qs = items_qs.select_for_update()
    items = {item.code: item for item in items_qs}
    overrides: dict[int, ServiceOverride] = {}
    if location is not None and items:
        overrides_qs = ServiceOverride.objects.filter(
            location=location, item__in=[item.pk for item in items.values()]
        )
        if lock:
            overrides_qs = overrides_qs.select_for_update()
        overrides = {override.item_id: override for override in overrides_qs}

    for row, cells, values in parsed:
        if not row.errors:
            item = items.get(row.code)
            if for_brand:
                _brand_row(row, values, item)
            else:
                override = overrides.get(item.pk) if item else None
                _location_row(row, cells, values, item, override)
        if row.errors:
            row.action = Action.INVALID
    return preview


# --- the two steps --------------------------------------------------------------------


def catalog_import_preview(
    *, user: Any, content: bytes, location: Location | None
) -> ImportPreview:
    """What importing ``content`` for ``location`` (None: the brand) would do.

    Saves nothing.
    """
    catalog_target_check(user=user, location=location)
    return _build(content=content, location=location)


def catalog_import_apply(
    *, user: Any, content: bytes, location: Location | None
) -> ImportPreview:
    """Validate ``content`` again against the catalog as it is now, then write it.

    All or nothing: raises :class:`CatalogImportError` (nothing saved) when the
    file or any row is invalid.
    """
    catalog_target_check(user=user, location=location)
    try:
        with transaction.atomic():
            preview = _build(content=content, location=location, lock=True)
            if not preview.is_valid:
                raise CatalogImportError(preview)
            for row in preview.rows:
                _write(row, location)
            if not preview.is_valid:  # full_clean refused a row: roll everything back
                raise CatalogImportError(preview)
    except IntegrityError as error:
        # Most likely another change to the catalog landed while writing.
        logger.warning("Catalog import refused by the database: %s", error)
        preview = ImportPreview(location=location)
        preview.file_errors.append(
            "The database refused the import (the catalog probably changed at the "
            "same time); nothing was saved. Upload the file again."
        )
        raise CatalogImportError(preview) from error
    preview.applied = True
    return preview


def _write(row: RowResult, location: Location | None) -> None:
    if row.action == Action.UNCHANGED:
        return
    if location is None:
        item = row.item or ServiceCatalogItem()
        for name, value in row.values.items():
            setattr(item, name, value)
        if _full_clean(item, row):
            item.save()
        return
    if row.action == Action.REMOVE_OVERRIDE:
        assert row.override is not None
        row.override.delete()
        return
    override = row.override or ServiceOverride(item=row.item, location=location)
    for name, value in row.values.items():
        setattr(override, name, value)
    if _full_clean(override, row):
        override.save()


def _full_clean(instance: Any, row: RowResult) -> bool:
    # Uniqueness and the check constraints were validated for the whole file
    # against the locked rows (full_clean would ask the database once per
    # constraint and row: seconds for a large file); the database still enforces
    # them, and a refusal there rolls the whole import back.
    _clean_instance(instance, row, validate_unique=False, validate_constraints=False)
    if row.errors:
        row.action = Action.INVALID
        return False
    return True
