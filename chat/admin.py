"""Conversations in the staff admin: the queue of customers waiting for a person,
the transcript, a reply box, taking over from the assistant and handing back.

Replies and mode changes go through chat.services, which push them to the
customer's open page (or send them by SMS for SMS conversations). Staff limited
to some locations see and answer only their locations' conversations.
"""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin, messages
from django.db.models import Case, IntegerField, QuerySet, Value, When
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.shortcuts import get_object_or_404
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.timesince import timesince
from django.views.decorators.http import require_POST

from chat import services
from chat.models import ChatSession, SessionMode
from leadorch.errors import ApplicationError
from locations.admin_scoping import LocationScopedAdminMixin


class WaitingFilter(admin.SimpleListFilter):
    title = "waiting for a person"
    parameter_name = "waiting"

    def lookups(self, request: HttpRequest, model_admin: Any) -> list[tuple[str, str]]:
        return [("yes", "Waiting"), ("no", "Not waiting")]

    def queryset(self, request: HttpRequest, queryset: QuerySet) -> QuerySet:
        if self.value() == "yes":
            return queryset.filter(waiting_since__isnull=False)
        if self.value() == "no":
            return queryset.filter(waiting_since__isnull=True)
        return queryset


class ReplyForm(forms.Form):
    text = forms.CharField(
        label="Reply",
        max_length=1600,
        widget=forms.Textarea(attrs={"rows": 3, "cols": 80}),
    )


@admin.register(ChatSession)
class ChatSessionAdmin(LocationScopedAdminMixin, admin.ModelAdmin):
    location_path = "lead__location"
    change_form_template = "admin/chat/chatsession/change_form.html"
    list_display = (
        "customer",
        "location",
        "mode",
        "waiting",
        "channel",
        "last_message_at",
    )
    list_filter = (
        WaitingFilter,
        "mode",
        ("lead__location", admin.RelatedOnlyFieldListFilter),
    )
    search_fields = (
        "lead__first_name",
        "lead__last_name",
        "lead__email",
        "lead__phone",
    )
    list_select_related = ("lead__location",)
    fields = (
        "lead",
        "mode",
        "waiting_since",
        "handoff_reason",
        "channel",
        "revoked_at",
    )
    readonly_fields = fields
    actions = ("revoke_links",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[ChatSession]:
        # Customers waiting for a person first, the longest waiting at the top.
        return (
            super()
            .get_queryset(request)
            .annotate(
                waiting_rank=Case(
                    When(waiting_since__isnull=False, then=Value(0)),
                    default=Value(1),
                    output_field=IntegerField(),
                )
            )
            .order_by("waiting_rank", "waiting_since", "-last_message_at", "-pk")
        )

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    @admin.display(description="customer", ordering="lead__first_name")
    def customer(self, session: ChatSession) -> str:
        return str(session.lead)

    @admin.display(description="location", ordering="lead__location__name")
    def location(self, session: ChatSession) -> str:
        return session.lead.location.name

    @admin.display(description="waiting", ordering="waiting_since")
    def waiting(self, session: ChatSession) -> str:
        if session.waiting_since is None:
            return "-"
        return timesince(session.waiting_since, timezone.now())

    @admin.action(description="Revoke the chat links of the selected conversations")
    def revoke_links(self, request: HttpRequest, queryset: QuerySet) -> None:
        revoked = sum(services.chat_links_revoke(session=s) for s in queryset)
        self.message_user(request, f"Revoked {revoked} link(s).", messages.SUCCESS)

    def get_urls(self) -> list[URLPattern]:
        wrap = self.admin_site.admin_view
        return [
            path(
                "<int:pk>/reply/", wrap(self.reply_view), name="chat_chatsession_reply"
            ),
            path(
                "<int:pk>/mode/<str:mode>/",
                wrap(self.mode_view),
                name="chat_chatsession_mode",
            ),
            *super().get_urls(),
        ]

    def _session_for(self, request: HttpRequest, pk: int) -> ChatSession:
        # Through the scoped queryset: another location's conversation is a 404.
        return get_object_or_404(self.get_queryset(request), pk=pk)

    def _back(self, session: ChatSession) -> HttpResponseRedirect:
        return HttpResponseRedirect(
            reverse("admin:chat_chatsession_change", args=[session.pk])
        )

    def change_view(
        self,
        request: HttpRequest,
        object_id: str,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        session = self._session_for(request, int(object_id))
        extra_context = {
            **(extra_context or {}),
            "transcript": services.messages_after(session=session, limit=500),
            "reply_form": ReplyForm(),
            "reply_url": reverse("admin:chat_chatsession_reply", args=[session.pk]),
            "takeover_url": reverse(
                "admin:chat_chatsession_mode", args=[session.pk, SessionMode.HUMAN]
            ),
            "handback_url": reverse(
                "admin:chat_chatsession_mode", args=[session.pk, SessionMode.ASSISTANT]
            ),
            "can_answer": self.has_change_permission(request, session),
            "session": session,
        }
        return super().change_view(request, object_id, form_url, extra_context)

    def reply_view(self, request: HttpRequest, pk: int) -> HttpResponse:
        return require_POST(self._reply)(request, pk)

    def _reply(self, request: HttpRequest, pk: int) -> HttpResponse:
        session = self._session_for(request, pk)
        if not self.has_change_permission(request, session):
            messages.error(request, "You may not answer conversations.")
            return self._back(session)
        form = ReplyForm(request.POST)
        if not form.is_valid():
            messages.error(request, "Write a reply of at most 1,600 characters.")
            return self._back(session)
        try:
            services.staff_reply(
                session=session, user=request.user, text=form.cleaned_data["text"]
            )
        except ApplicationError as error:
            messages.error(request, error.message)
        else:
            messages.success(request, "Reply sent.")
        return self._back(session)

    def mode_view(self, request: HttpRequest, pk: int, mode: str) -> HttpResponse:
        return require_POST(self._mode)(request, pk, mode)

    def _mode(self, request: HttpRequest, pk: int, mode: str) -> HttpResponse:
        session = self._session_for(request, pk)
        if not self.has_change_permission(request, session):
            messages.error(request, "You may not change conversations.")
            return self._back(session)
        try:
            if mode == SessionMode.ASSISTANT:
                services.handback(session=session, user=request.user)
                messages.success(request, "The assistant answers again.")
            elif mode == SessionMode.HUMAN:
                services.handoff_request(
                    session=session,
                    reason=f"Taken over by {request.user}",
                    actor=request.user,
                )
                services.waiting_clear(session=session)
                messages.success(request, "You have the conversation now.")
            else:
                messages.error(request, "Unknown mode.")
        except ApplicationError as error:
            messages.error(request, error.message)
        return self._back(session)
