"""The chat REST API: what the socket does, for pages whose socket cannot open.

Every operation is addressed by the chat link's token, like the page. Unknown,
expired and revoked tokens all answer the same 404.
"""

from __future__ import annotations

from typing import Any

from asgiref.sync import async_to_sync
from django.db import connection
from drf_spectacular.utils import (
    OpenApiParameter,
    OpenApiResponse,
    extend_schema,
    inline_serializer,
)
from rest_framework import serializers, status
from rest_framework.exceptions import NotFound, ParseError, Throttled
from rest_framework.parsers import FormParser, JSONParser, MultiPartParser
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.throttling import SimpleRateThrottle
from rest_framework.views import APIView

from chat import services as chat_services
from chat.ai import service as ai_service
from chat.ai.context import context_load
from chat.models import ChatSession, MessageChannel, SessionMode
from chat.throttle import TokenLookupsLimitedError, chat_link_resolve_limited
from leadorch.ratelimit import client_ip


class MessageOut(serializers.Serializer):
    """A message as the page shows it (text only, never HTML)."""

    id = serializers.IntegerField()
    role = serializers.ChoiceField(choices=["customer", "assistant", "staff", "system"])
    text = serializers.CharField()
    created_at = serializers.DateTimeField()
    client_id = serializers.CharField(allow_null=True)
    channel = serializers.CharField()
    author = serializers.CharField(required=False)
    slots = serializers.ListField(child=serializers.DictField(), required=False)
    appointment = serializers.DictField(required=False)


class ErrorOut(serializers.Serializer):
    """Every error: a code and what was wrong (a message, or each field's errors)."""

    error = serializers.CharField()
    detail = serializers.JSONField()


ERROR_DESCRIPTIONS = {
    400: "The request was refused as it stands (invalid data, or the conversation's "
    "message rate).",
    404: "The chat link opens nothing: unknown, expired or revoked.",
    415: "The body is not JSON, a form or multipart.",
    429: "Too many requests from this address; see Retry-After.",
}


def error_responses(*codes: int) -> dict[int, OpenApiResponse]:
    return {
        code: OpenApiResponse(ErrorOut, description=ERROR_DESCRIPTIONS[code])
        for code in codes
    }


class TokenLookupThrottle(SimpleRateThrottle):
    """Per client address: token guessing gets nowhere fast."""

    scope = "chat_token"
    rate = "120/min"

    def get_cache_key(self, request: Request, view: Any) -> str:
        return self.cache_format % {
            "scope": self.scope,
            "ident": f"{connection.schema_name}:{self.get_ident(request)}",
        }

    def get_ident(self, request: Request) -> str:
        # DRF's own reads a client-supplied X-Forwarded-For as is: one header per
        # request would make every request a new client.
        return client_ip(request)


class JSONBodyParser(JSONParser):
    """DRF's, refusing a body nested deeper than the decoder goes as malformed (not a 500)."""

    def parse(self, stream: Any, media_type: Any = None, parser_context: Any = None):
        try:
            return super().parse(stream, media_type, parser_context)
        except RecursionError as error:
            raise ParseError("JSON parse error - nested too deeply.") from error


class ChatApi(APIView):
    throttle_classes = [TokenLookupThrottle]
    parser_classes = [JSONBodyParser, FormParser, MultiPartParser]

    def session_for(self, token: str) -> ChatSession:
        try:
            session = chat_link_resolve_limited(
                token=token, client_ip=client_ip(self.request)
            )
        except TokenLookupsLimitedError as error:
            raise Throttled(wait=error.retry_after) from error
        if session is None:
            raise NotFound("This chat link is not valid. Ask the shop for a new one.")
        return session


class MessageIn(serializers.Serializer):
    text = serializers.CharField(max_length=10_000, trim_whitespace=False)
    client_id = serializers.CharField(
        max_length=64, required=False, allow_blank=True, default=""
    )


CHAT_POSTED = inline_serializer(
    "ChatPosted", {"message": MessageOut(), "replies": MessageOut(many=True)}
)


class ChatMessagesApi(ChatApi):
    @extend_schema(
        operation_id="chat_messages_list",
        parameters=[
            OpenApiParameter(
                "after",
                {"type": "integer", "minimum": 0},
                required=False,
                description="Only messages after this id.",
            )
        ],
        responses={
            200: inline_serializer(
                "ChatMessages",
                {"messages": MessageOut(many=True), "mode": serializers.CharField()},
            ),
            **error_responses(400, 404, 429),
        },
    )
    def get(self, request: Request, token: str) -> Response:
        session = self.session_for(token)
        after = request.query_params.get("after", "")
        if after and not (after.isascii() and after.isdigit()):
            return Response(
                {"error": "invalid", "detail": "after must be a message id."},
                status=status.HTTP_400_BAD_REQUEST,
            )
        messages = chat_services.messages_after(
            session=session, after_id=int(after) if after else None
        )
        return Response(
            {
                "messages": [chat_services.message_payload(m) for m in messages],
                "mode": session.mode,
            }
        )

    @extend_schema(
        operation_id="chat_messages_create",
        request=MessageIn,
        responses={
            200: OpenApiResponse(
                CHAT_POSTED,
                description="A resent message (same client_id): stored once.",
            ),
            201: CHAT_POSTED,
            **error_responses(400, 404, 415, 429),
        },
    )
    def post(self, request: Request, token: str) -> Response:
        session = self.session_for(token)
        data = MessageIn(data=request.data)
        data.is_valid(raise_exception=True)
        posted = chat_services.customer_message_post(
            session=session,
            text=data.validated_data["text"],
            client_id=data.validated_data["client_id"],
            channel=MessageChannel.WEB,
        )
        replies = []
        if posted.created and session.mode == SessionMode.ASSISTANT:
            answer = async_to_sync(ai_service.assistant_answer)(
                schema_name=connection.schema_name,
                session_id=session.pk,
                customer_message_id=posted.message.pk,
                channel=MessageChannel.WEB,
            )
            if answer is not None:
                replies.append(chat_services.message_payload(answer))
        return Response(
            {
                "message": chat_services.message_payload(posted.message),
                "replies": replies,
            },
            status=status.HTTP_201_CREATED if posted.created else status.HTTP_200_OK,
        )


class ChatContextApi(ChatApi):
    @extend_schema(
        operation_id="chat_context",
        responses={
            200: inline_serializer(
                "ChatContext",
                {
                    "first_name": serializers.CharField(),
                    "vehicle": serializers.CharField(),
                    "mode": serializers.CharField(),
                    "location": serializers.DictField(),
                    "services": serializers.ListField(child=serializers.DictField()),
                    "appointment": serializers.DictField(allow_null=True),
                },
            ),
            **error_responses(404, 429),
        },
    )
    def get(self, request: Request, token: str) -> Response:
        session = self.session_for(token)
        return Response(context_payload(session))


def context_payload(session: ChatSession) -> dict[str, Any]:
    """What the page header and the API show about the conversation. Public facts of
    the location and the customer's own first name and vehicle; nothing else."""
    context = context_load(session=session)
    return {
        "first_name": context.first_name,
        "vehicle": context.vehicle,
        "mode": session.mode,
        "location": {
            "name": context.location_name,
            "address": context.location_address,
            "phone": context.location_phone,
            "time_zone": context.time_zone,
            "hours": list(context.hours),
        },
        "services": [
            {
                "code": s.code,
                "name": s.name,
                "category": s.category,
                "price": s.price,
                "duration_minutes": s.duration_minutes,
            }
            for s in context.services
        ],
        "appointment": (
            {
                "service": context.appointment.service,
                "starts_at": context.appointment.starts_at.isoformat(),
                "label": context.appointment.label,
            }
            if context.appointment
            else None
        ),
    }


class AppointmentIn(serializers.Serializer):
    slot = serializers.CharField(max_length=20)
    client_id = serializers.CharField(
        max_length=64, required=False, allow_blank=True, default=""
    )


CHAT_BOOKED = inline_serializer(
    "ChatBooked",
    {
        "messages": MessageOut(many=True),
        "appointment": serializers.DictField(allow_null=True),
    },
)


class ChatAppointmentApi(ChatApi):
    @extend_schema(
        operation_id="chat_appointment_book",
        request=AppointmentIn,
        responses={
            200: OpenApiResponse(
                CHAT_BOOKED, description="A resent press (same client_id)."
            ),
            201: CHAT_BOOKED,
            409: OpenApiResponse(
                CHAT_BOOKED,
                description="Taken meanwhile: the answer offers the nearest free times.",
            ),
            **error_responses(400, 404, 415, 429),
        },
    )
    def post(self, request: Request, token: str) -> Response:
        """Book one of the slots the assistant offered (the customer's press of its button)."""
        session = self.session_for(token)
        data = AppointmentIn(data=request.data)
        data.is_valid(raise_exception=True)
        messages = ai_service.slot_book_by_customer(
            session_id=session.pk,
            slot_id=data.validated_data["slot"],
            client_id=data.validated_data["client_id"],
        )
        appointment = messages[-1].data.get("appointment")
        if len(messages) == 1:  # a resend: the first press was answered already
            code = status.HTTP_200_OK
        elif appointment is not None and appointment.get("status") == "booked":
            code = status.HTTP_201_CREATED
        else:  # taken meanwhile: the answer offers the nearest free slots
            code = status.HTTP_409_CONFLICT
        return Response(
            {
                "messages": [chat_services.message_payload(m) for m in messages],
                "appointment": appointment,
            },
            status=code,
        )
