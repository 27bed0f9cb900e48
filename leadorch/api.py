"""Shared API plumbing: one exception handler that always answers JSON."""

from __future__ import annotations

from typing import Any

from django.core.exceptions import ValidationError as DjangoValidationError
from rest_framework import status
from rest_framework.exceptions import APIException, ValidationError
from rest_framework.response import Response
from rest_framework.views import exception_handler as drf_exception_handler

from leadorch.errors import ApplicationError


def exception_handler(exc: Exception, context: dict[str, Any]) -> Response | None:
    """Map domain errors to 400s with a JSON body; give DRF's errors the same shape."""
    if isinstance(exc, ApplicationError):
        return Response(
            {"error": exc.code, "detail": exc.message, **exc.extra},
            status=status.HTTP_400_BAD_REQUEST,
        )
    if isinstance(exc, DjangoValidationError):
        detail = (
            exc.message_dict
            if hasattr(exc, "message_dict")
            else {"non_field_errors": exc.messages}
        )
        return Response(
            {"error": "invalid", "detail": detail}, status=status.HTTP_400_BAD_REQUEST
        )
    response = drf_exception_handler(exc, context)
    if response is not None and isinstance(exc, APIException):
        # One shape for every error: {"error": <code>, "detail": <what was wrong>}.
        if isinstance(exc, ValidationError):
            response.data = {"error": "invalid", "detail": response.data}
        else:
            code = exc.get_codes() if isinstance(exc.get_codes(), str) else "error"
            response.data = {"error": code, "detail": str(exc.detail)}
    return response
