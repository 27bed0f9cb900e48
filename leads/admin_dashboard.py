"""The franchise dashboard's admin page: /admin/leads/lead/dashboard/.

Registered by LeadAdmin.get_urls; needs the view permission on leads. Figures
come from leads.dashboard and cover only the user's locations.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import date
from typing import Any

from django import forms
from django.contrib import admin
from django.core.exceptions import PermissionDenied
from django.http import HttpRequest, HttpResponse
from django.template.response import TemplateResponse

from leads import dashboard as figures
from locations.selectors import location_list_for_user, user_is_brand_wide

TEMPLATE = "admin/leads/dashboard.html"


class DashboardForm(forms.Form):
    date_from = forms.DateField(
        label="From", widget=forms.DateInput(attrs={"type": "date"})
    )
    date_to = forms.DateField(
        label="To", widget=forms.DateInput(attrs={"type": "date"})
    )
    location = forms.ModelChoiceField(queryset=None, required=False)

    def __init__(self, *args: Any, user: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        field = self.fields["location"]
        field.queryset = location_list_for_user(user=user).only("pk", "name")
        field.empty_label = (
            "All locations" if user_is_brand_wide(user=user) else "All my locations"
        )

    def clean(self) -> dict[str, Any]:
        data = super().clean()
        start, end = data.get("date_from"), data.get("date_to")
        if start and end:
            if start > end:
                raise forms.ValidationError("The period must start before it ends.")
            if (end - start).days + 1 > figures.MAX_PERIOD_DAYS:
                raise forms.ValidationError(
                    f"Choose a period of at most {figures.MAX_PERIOD_DAYS} days."
                )
        return data


def _default_data() -> dict[str, str]:
    start, end = figures.default_period()
    return {"date_from": start.isoformat(), "date_to": end.isoformat()}


def dashboard_view_for(
    model_admin: admin.ModelAdmin,
) -> Callable[[HttpRequest], HttpResponse]:
    """The view, bound to the Lead admin (for its site, options and permissions)."""

    def dashboard_view(request: HttpRequest) -> HttpResponse:
        if not model_admin.has_view_permission(request):
            raise PermissionDenied
        data = {**_default_data(), **{k: v for k, v in request.GET.items() if v}}
        form = DashboardForm(data, user=request.user)
        board = None
        if form.is_valid():
            location = form.cleaned_data["location"]
            start: date = form.cleaned_data["date_from"]
            end: date = form.cleaned_data["date_to"]
            board = figures.dashboard(
                request.user,
                start,
                end,
                location_ids=None if location is None else [location.pk],
            )
        context = {
            **model_admin.admin_site.each_context(request),
            "title": "Dashboard",
            "opts": model_admin.model._meta,
            "form": form,
            "board": board,
            "location": form.cleaned_data.get("location") if board else None,
            "chart_data": board.chart_data() if board else None,
            "zone_name": str(figures.dashboard_zone()),
        }
        return TemplateResponse(request, TEMPLATE, context)

    return dashboard_view
