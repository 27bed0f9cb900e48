from __future__ import annotations

import base64
from typing import Any

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_permission_codename
from django.core import signing
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseNotAllowed,
    HttpResponseRedirect,
)
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.text import slugify

from locations import catalog_csv, selectors
from locations.admin_scoping import BrandWideOnlyAdminMixin, LocationScopedAdminMixin
from locations.models import (
    Closure,
    Location,
    LocationHours,
    ServiceCatalogItem,
    ServiceOverride,
    StaffMembership,
)
from locations.time_zones import TIME_ZONE_CHOICES


class LocationForm(forms.ModelForm):
    time_zone = forms.ChoiceField(
        choices=TIME_ZONE_CHOICES, initial="America/Los_Angeles"
    )

    class Meta:
        model = Location
        fields = ["time_zone"]  # the admin adds the rest from its fieldsets


class LocationHoursInline(LocationScopedAdminMixin, admin.TabularInline):
    model = LocationHours
    extra = 0
    max_num = 7


class ClosureInline(LocationScopedAdminMixin, admin.TabularInline):
    model = Closure
    extra = 0
    fields = ("starts_on", "ends_on", "reason")


class LocationOverrideInline(LocationScopedAdminMixin, admin.TabularInline):
    model = ServiceOverride
    extra = 0
    autocomplete_fields = ("item",)
    fields = ("item", "price_cents", "duration_minutes", "is_available")


@admin.register(Location)
class LocationAdmin(LocationScopedAdminMixin, admin.ModelAdmin):
    location_path = "pk"
    form = LocationForm
    list_display = (
        "name",
        "city",
        "region",
        "time_zone",
        "bays",
        "crm_location_id",
        "is_active",
    )
    list_filter = ("is_active", "region", "time_zone")
    search_fields = ("name", "city", "crm_location_id", "postal_code")
    readonly_fields = ("public_id", "created_at", "updated_at")
    fieldsets = (
        (
            None,
            {"fields": ("name", "crm_location_id", "is_active", "bays", "time_zone")},
        ),
        (
            "Address and contact",
            {
                "fields": (
                    "address_line1",
                    "address_line2",
                    "city",
                    "region",
                    "postal_code",
                    "country",
                    "phone",
                    "email",
                )
            },
        ),
        (
            "Record",
            {
                "classes": ("collapse",),
                "fields": ("public_id", "created_at", "updated_at"),
            },
        ),
    )
    inlines = [LocationHoursInline, ClosureInline, LocationOverrideInline]

    def has_add_permission(self, request: HttpRequest) -> bool:
        return selectors.user_is_brand_wide(
            user=request.user
        ) and super().has_add_permission(request)

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return selectors.user_is_brand_wide(
            user=request.user
        ) and super().has_delete_permission(request, obj)


@admin.register(Closure)
class ClosureAdmin(LocationScopedAdminMixin, admin.ModelAdmin):
    list_display = ("location", "starts_on", "ends_on", "reason")
    list_filter = (("location", admin.RelatedOnlyFieldListFilter),)
    list_select_related = ("location",)
    date_hierarchy = "starts_on"
    search_fields = ("reason", "location__name")


class ItemOverrideInline(LocationScopedAdminMixin, admin.TabularInline):
    model = ServiceOverride
    extra = 0
    fields = ("location", "price_cents", "duration_minutes", "is_available")


BRAND_TARGET = "brand"
IMPORT_SALT = "locations.catalog_import"
IMPORT_MAX_AGE_SECONDS = 60 * 60


class CatalogImportForm(forms.Form):
    target = forms.ChoiceField(label="Import for")
    file = forms.FileField(
        label="CSV file",
        help_text=(
            "UTF-8 CSV with a header row, at most "
            f"{catalog_csv.MAX_BYTES // 1_000_000} MB and {catalog_csv.MAX_ROWS:,} "
            f"rows. Columns: {', '.join(catalog_csv.COLUMNS)}."
        ),
    )

    def __init__(self, *args: Any, targets: list[tuple[str, str]], **kwargs: Any):
        super().__init__(*args, **kwargs)
        self.fields["target"].choices = targets


class CatalogConfirmForm(forms.Form):
    payload = forms.CharField(widget=forms.HiddenInput)


@admin.register(ServiceCatalogItem)
class ServiceCatalogItemAdmin(BrandWideOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("name", "category", "price", "duration_minutes", "is_active")
    list_filter = ("category", "is_active")
    search_fields = ("name", "code", "category", "description")
    readonly_fields = ("public_id", "created_at", "updated_at")
    prepopulated_fields = {"code": ("name",)}
    inlines = [ItemOverrideInline]
    change_list_template = "admin/locations/servicecatalogitem/change_list.html"

    @admin.display(description="price", ordering="price_cents")
    def price(self, obj: ServiceCatalogItem) -> str:
        return f"${obj.price_cents / 100:,.2f}"

    def changelist_view(
        self, request: HttpRequest, extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        extra = {
            **(extra_context or {}),
            "catalog_import_url": reverse("admin:locations_servicecatalogitem_import")
            if self._may_import(request)
            else "",
            "catalog_export_url": reverse("admin:locations_servicecatalogitem_export"),
        }
        return super().changelist_view(request, extra)

    # --- CSV import and export --------------------------------------------------------

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "import/",
                wrap(self.import_view),
                name="locations_servicecatalogitem_import",
            ),
            path(
                "import/confirm/",
                wrap(self.import_confirm_view),
                name="locations_servicecatalogitem_import_confirm",
            ),
            path(
                "export/",
                wrap(self.export_view),
                name="locations_servicecatalogitem_export",
            ),
            *super().get_urls(),
        ]

    def _may_set_overrides(self, request: HttpRequest) -> bool:
        opts = ServiceOverride._meta
        return request.user.has_perms(
            [
                f"{opts.app_label}.{get_permission_codename(action, opts)}"
                for action in ("add", "change")
            ]
        )

    def _targets(
        self, request: HttpRequest, *, brand: bool, locations: bool
    ) -> list[tuple[str, str]]:
        targets = []
        if brand and selectors.user_is_brand_wide(user=request.user):
            targets.append((BRAND_TARGET, "The brand (brand-wide services)"))
        if locations:
            targets += [
                (str(location.pk), f"Location: {location.name}")
                for location in selectors.location_list_for_user(user=request.user)
            ]
        return targets

    def _may_import(self, request: HttpRequest) -> bool:
        brand = (
            selectors.user_is_brand_wide(user=request.user)
            and self.has_add_permission(request)
            and self.has_change_permission(request)
        )
        return brand or (
            self._may_set_overrides(request)
            and selectors.location_list_for_user(user=request.user).exists()
        )

    def _import_targets(self, request: HttpRequest) -> list[tuple[str, str]]:
        """Brand-wide staff who may add and change services import for the brand;
        staff who may set location overrides import for their locations."""
        return self._targets(
            request,
            brand=self.has_add_permission(request)
            and self.has_change_permission(request),
            locations=self._may_set_overrides(request),
        )

    def _resolve(
        self, request: HttpRequest, value: str, targets: list[tuple[str, str]]
    ) -> Location | None:
        """The location a target names (None: the brand); refused unless allowed."""
        if value not in {choice for choice, _ in targets}:
            if value == BRAND_TARGET:
                raise PermissionDenied
            raise Http404("No such location.")
        if value == BRAND_TARGET:
            return None
        return selectors.location_list_for_user(user=request.user).get(pk=int(value))

    def _csv_context(
        self, request: HttpRequest, title: str, **values: Any
    ) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "title": title,
            "opts": self.model._meta,
            "changelist_url": reverse("admin:locations_servicecatalogitem_changelist"),
            **values,
        }

    def export_view(self, request: HttpRequest) -> HttpResponse:
        """?location=<id> (or =brand): the catalog as CSV; without it, a chooser."""
        if not self.has_view_or_change_permission(request):
            raise PermissionDenied
        targets = self._targets(request, brand=True, locations=True)
        value = request.GET.get("location")
        if value is None:
            context = self._csv_context(
                request, "Export the service catalog", targets=targets
            )
            return TemplateResponse(
                request, "admin/locations/catalog_export.html", context
            )
        location = self._resolve(request, value, targets)
        text = catalog_csv.catalog_export_csv(user=request.user, location=location)
        name = slugify(location.name) if location else BRAND_TARGET
        response = HttpResponse(
            "\ufeff" + text,  # the byte-order mark makes Excel read UTF-8
            content_type="text/csv; charset=utf-8",
        )
        response["Content-Disposition"] = (
            f'attachment; filename="catalog-{name}-{timezone.localdate():%Y-%m-%d}.csv"'
        )
        return response

    def import_view(self, request: HttpRequest) -> HttpResponse:
        """Upload a file and see, row by row, what it would do. Nothing is saved."""
        targets = self._import_targets(request)
        if not targets:
            raise PermissionDenied
        initial = {"target": request.GET.get("target") or targets[0][0]}
        if request.method != "POST":
            form = CatalogImportForm(targets=targets, initial=initial)
            return self._upload_page(request, form)
        form = CatalogImportForm(request.POST, request.FILES, targets=targets)
        if not form.is_valid():
            return self._upload_page(request, form)
        location = self._resolve(request, form.cleaned_data["target"], targets)
        upload = form.cleaned_data["file"]
        content = upload.read(catalog_csv.MAX_BYTES + 1)
        preview = catalog_csv.catalog_import_preview(
            user=request.user, content=content, location=location
        )
        payload = ""
        if preview.is_valid:
            payload = signing.dumps(
                {
                    "target": form.cleaned_data["target"],
                    "user": request.user.pk,
                    "schema": connection.schema_name,
                    "content": base64.b64encode(content).decode("ascii"),
                },
                salt=IMPORT_SALT,
                compress=True,
            )
        return self._preview_page(request, preview, payload, upload.name)

    def import_confirm_view(self, request: HttpRequest) -> HttpResponse:
        """Apply the previewed file, from its signed copy: all rows or none."""
        if request.method != "POST":
            return HttpResponseNotAllowed(["POST"])
        targets = self._import_targets(request)
        if not targets:
            raise PermissionDenied
        data, refusal = self._verified_payload(request)
        if data is None:
            return self._upload_page(
                request, CatalogImportForm(targets=targets), refusal, status=400
            )
        location = self._resolve(request, str(data["target"]), targets)
        content = base64.b64decode(data["content"])
        try:
            preview = catalog_csv.catalog_import_apply(
                user=request.user, content=content, location=location
            )
        except catalog_csv.CatalogImportError as error:
            self.message_user(
                request,
                "The catalog changed since the preview and the file is no longer "
                "valid. Nothing was saved.",
                messages.ERROR,
            )
            return self._preview_page(request, error.preview, "", "")
        self.message_user(
            request,
            f"Imported for {preview.target_label}: {preview.summary}.",
            messages.SUCCESS,
        )
        return HttpResponseRedirect(
            reverse("admin:locations_servicecatalogitem_changelist")
        )

    def _verified_payload(
        self, request: HttpRequest
    ) -> tuple[dict[str, Any] | None, str]:
        """The signed copy of the previewed file, or None and why it is refused."""
        refused = (
            "The confirmation could not be verified (it was changed, or belongs to "
            "another user or upload). Nothing was saved; upload the file again."
        )
        form = CatalogConfirmForm(request.POST)
        if not form.is_valid():
            return None, refused
        try:
            data = signing.loads(
                form.cleaned_data["payload"],
                salt=IMPORT_SALT,
                max_age=IMPORT_MAX_AGE_SECONDS,
            )
        except signing.SignatureExpired:
            return None, "The preview is more than an hour old. Upload the file again."
        except signing.BadSignature:
            return None, refused
        if not (
            isinstance(data, dict)
            and data.get("user") == request.user.pk
            and data.get("schema") == connection.schema_name
            and isinstance(data.get("target"), str)
            and isinstance(data.get("content"), str)
        ):
            return None, refused
        return data, ""

    def _upload_page(
        self,
        request: HttpRequest,
        form: CatalogImportForm,
        refusal: str = "",
        status: int = 200,
    ) -> TemplateResponse:
        context = self._csv_context(
            request,
            "Import the service catalog",
            form=form,
            refusal=refusal,
            columns=catalog_csv.COLUMNS,
            max_rows=catalog_csv.MAX_ROWS,
        )
        return TemplateResponse(
            request, "admin/locations/catalog_import.html", context, status=status
        )

    def _preview_page(
        self,
        request: HttpRequest,
        preview: catalog_csv.ImportPreview,
        payload: str,
        file_name: str,
    ) -> TemplateResponse:
        changes = sum(
            count
            for action, count in preview.counts.items()
            if action not in {catalog_csv.Action.UNCHANGED, catalog_csv.Action.INVALID}
        )
        context = self._csv_context(
            request,
            f"Import preview for {preview.target_label}",
            preview=preview,
            file_name=file_name,
            confirm_form=CatalogConfirmForm(initial={"payload": payload})
            if payload
            else None,
            change_count=changes,
            import_url=reverse("admin:locations_servicecatalogitem_import"),
        )
        return TemplateResponse(
            request, "admin/locations/catalog_import_preview.html", context
        )


@admin.register(ServiceOverride)
class ServiceOverrideAdmin(LocationScopedAdminMixin, admin.ModelAdmin):
    list_display = (
        "item",
        "location",
        "price_cents",
        "duration_minutes",
        "is_available",
    )
    list_filter = (
        ("location", admin.RelatedOnlyFieldListFilter),
        "is_available",
        "item__category",
    )
    list_select_related = ("item", "location")
    search_fields = ("item__name", "location__name")


@admin.register(StaffMembership)
class StaffMembershipAdmin(BrandWideOnlyAdminMixin, admin.ModelAdmin):
    list_display = ("user", "location")
    list_filter = ("location",)
    list_select_related = ("user", "location")
    search_fields = ("user__username", "user__email", "location__name")
    autocomplete_fields = ("user",)

    def has_module_permission(self, request: HttpRequest) -> bool:
        return selectors.user_is_brand_wide(
            user=request.user
        ) and super().has_module_permission(request)

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return selectors.user_is_brand_wide(
            user=request.user
        ) and super().has_view_permission(request, obj)
