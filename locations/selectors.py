"""Reads of locations and the catalog, scoped to what a staff user may see."""

from __future__ import annotations

from typing import Any, TypeVar

from django.db.models import Exists, IntegerField, Model, OuterRef, QuerySet, Subquery
from django.db.models.functions import Coalesce

from locations.models import (
    Location,
    ServiceCatalogItem,
    ServiceOverride,
    StaffMembership,
)

M = TypeVar("M", bound=Model)

_CACHE_ATTRIBUTE = "_leadorch_location_ids"


def location_ids_visible_to(*, user: Any) -> frozenset[int] | None:
    """The ids of the locations ``user`` may see; None means every location of the brand.

    Superusers and staff with a brand-wide membership see everything; other staff
    see the locations of their memberships; anyone else sees nothing. The answer
    is kept on the user object, which lives for one request.
    """
    if user is None or not user.is_authenticated or not user.is_active:
        return frozenset()
    cached = getattr(user, _CACHE_ATTRIBUTE, False)
    if cached is not False:
        return cached
    if user.is_superuser:
        ids: frozenset[int] | None = None
    else:
        rows = set(
            StaffMembership.objects.filter(user=user).values_list(
                "location_id", flat=True
            )
        )
        ids = None if None in rows else frozenset(rows)
    setattr(user, _CACHE_ATTRIBUTE, ids)
    return ids


def user_is_brand_wide(*, user: Any) -> bool:
    return location_ids_visible_to(user=user) is None


def scope_to_user(
    queryset: QuerySet[M], *, user: Any, location_path: str
) -> QuerySet[M]:
    """Filter ``queryset`` to the rows whose location (reached by ``location_path``) ``user`` may see."""
    ids = location_ids_visible_to(user=user)
    if ids is None:
        return queryset
    lookup = "pk__in" if location_path == "pk" else f"{location_path}__in"
    return queryset.filter(**{lookup: ids})


def location_list_for_user(*, user: Any) -> QuerySet[Location]:
    return scope_to_user(Location.objects.all(), user=user, location_path="pk")


def service_list_for_location(
    *, location: Location, include_unavailable: bool = False
) -> QuerySet[ServiceCatalogItem]:
    """The location's catalog: active brand services with its own price and duration.

    Each item carries ``effective_price_cents``, ``effective_duration_minutes`` and
    ``is_offered`` (false when the location switched it off).
    """
    # At most one override per item and location (a unique constraint): no ordering,
    # which would join the location and the item again for every row.
    override = ServiceOverride.objects.filter(
        item=OuterRef("pk"), location=location
    ).order_by()
    items = (
        ServiceCatalogItem.objects.filter(is_active=True)
        .annotate(
            effective_price_cents=Coalesce(
                Subquery(override.values("price_cents")[:1]),
                "price_cents",
                output_field=IntegerField(),
            ),
            effective_duration_minutes=Coalesce(
                Subquery(override.values("duration_minutes")[:1]),
                "duration_minutes",
                output_field=IntegerField(),
            ),
            is_offered=~Exists(override.filter(is_available=False)),
        )
        .order_by("category", "name")
    )
    if not include_unavailable:
        items = items.filter(is_offered=True)
    return items
