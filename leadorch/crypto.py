"""Encryption at rest for secrets kept in the database (CRM API keys, webhook secrets).

Values are Fernet tokens (AES-128-CBC with HMAC-SHA256). The key comes from
FIELD_ENCRYPTION_KEYS (comma-separated Fernet keys, the first encrypts, all
decrypt, so keys can be rotated); unset, one key is derived from SECRET_KEY.
"""

from __future__ import annotations

import base64
from functools import lru_cache
from typing import Any

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.db import models

TOKEN_PREFIX = "fernet:"  # noqa: S105 - a marker, not a secret


class DecryptionError(Exception):
    """A stored secret could not be decrypted with any configured key."""


@lru_cache(maxsize=4)
def _fernet(keys: tuple[str, ...], secret_key: str) -> MultiFernet:
    if keys:
        try:
            return MultiFernet([Fernet(key.encode()) for key in keys])
        except ValueError as error:
            raise ImproperlyConfigured(
                "FIELD_ENCRYPTION_KEYS must be Fernet keys (32 url-safe base64-encoded bytes)."
            ) from error
    derived = HKDF(
        algorithm=hashes.SHA256(), length=32, salt=b"leadorch-fields", info=b"fernet"
    ).derive(secret_key.encode())
    return MultiFernet([Fernet(base64.urlsafe_b64encode(derived))])


def _cipher() -> MultiFernet:
    return _fernet(tuple(settings.FIELD_ENCRYPTION_KEYS), settings.SECRET_KEY)


def encrypt(value: str) -> str:
    if not value:
        return ""
    return TOKEN_PREFIX + _cipher().encrypt(value.encode()).decode()


def decrypt(token: str) -> str:
    if not token:
        return ""
    if not token.startswith(TOKEN_PREFIX):
        raise DecryptionError("The stored value is not an encrypted token.")
    try:
        return _cipher().decrypt(token[len(TOKEN_PREFIX) :].encode()).decode()
    except InvalidToken as error:
        raise DecryptionError(
            "A stored secret cannot be decrypted: SECRET_KEY or FIELD_ENCRYPTION_KEYS changed. Enter it again."
        ) from error


class EncryptedTextField(models.TextField):
    """Holds a secret encrypted in the database, plain text in Python.

    Reading the attribute decrypts; assigning plain text encrypts on save. Not
    searchable. A value that cannot be decrypted reads as "" (and is logged by
    callers that need it) rather than breaking every page that loads the row.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        kwargs.setdefault("blank", True)
        kwargs.setdefault("default", "")
        super().__init__(*args, **kwargs)

    def from_db_value(self, value: Any, expression: Any, connection: Any) -> str:
        if value is None:
            return ""
        try:
            return decrypt(value)
        except DecryptionError:
            return ""

    def get_prep_value(self, value: Any) -> Any:
        value = super().get_prep_value(value)
        if value is None:
            return None
        return encrypt(str(value))
