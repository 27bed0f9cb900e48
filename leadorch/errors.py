"""Errors that domain code raises for callers to show, not to crash on."""

from __future__ import annotations

from typing import Any


class ApplicationError(Exception):
    """A refused operation with a message fit for the person who asked for it."""

    def __init__(
        self,
        message: str,
        *,
        code: str = "invalid",
        extra: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.code = code
        self.extra = extra or {}
