"""Production settings (environment only) pass `check --deploy` and secure the cookies.

The settings are loaded in a subprocess with a production-like environment, the way
a server would load them: DEBUG off, HTTPS behind a proxy, a long random key. The
DATABASE_URL names a server that is never contacted (neither `check` nor loading
the settings connects), so no second embedded database starts.
"""

from __future__ import annotations

import json
import os
import secrets
from pathlib import Path

import pytest
from django.test import Client, override_settings

from tests.conftest import host_of
from tests.factories import UserFactory
from tests.processes import run_python

SETTINGS_DUMP = """
import json
import django
django.setup()
from django.conf import settings
names = [
    "DEBUG", "SESSION_COOKIE_SECURE", "SESSION_COOKIE_HTTPONLY", "SESSION_COOKIE_SAMESITE",
    "CSRF_COOKIE_SECURE", "CSRF_COOKIE_SAMESITE", "SECURE_SSL_REDIRECT",
    "SECURE_HSTS_SECONDS", "SECURE_HSTS_INCLUDE_SUBDOMAINS", "SECURE_HSTS_PRELOAD",
    "SECURE_PROXY_SSL_HEADER", "SECURE_CONTENT_TYPE_NOSNIFF", "X_FRAME_OPTIONS",
    "SECURE_REFERRER_POLICY", "ALLOWED_HOSTS",
]
print(json.dumps({name: getattr(settings, name) for name in names}))
"""


def production_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(tmp_path),
        "LANG": "C.UTF-8",
        "DJANGO_SETTINGS_MODULE": "leadorch.settings",
        "DEBUG": "0",
        "HTTPS": "1",
        "BEHIND_PROXY": "1",
        "SECRET_KEY": secrets.token_urlsafe(64),
        "BASE_DOMAIN": "leads.example.com",
        "CSRF_TRUSTED_ORIGINS": "https://*.leads.example.com",
        # Never contacted: loading settings and `check` do not connect.
        "DATABASE_URL": "postgres://leadorch@127.0.0.1:1/leadorch",
        "LEADORCH_VAR_DIR": str(tmp_path / "var"),
    }
    env.update(overrides)
    return env


def test_check_deploy_is_clean_with_production_settings(tmp_path):
    result = run_python(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        production_env(tmp_path),
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "System check identified no issues" in result.stdout


def test_check_deploy_fails_on_development_defaults(tmp_path):
    """The test above is not vacuous: without HTTPS the same check refuses."""
    result = run_python(
        ["manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        production_env(tmp_path, HTTPS="0", DEBUG="1"),
    )
    assert result.returncode != 0
    for code in ("security.W004", "security.W008", "security.W012", "security.W016"):
        assert code in result.stderr + result.stdout


@pytest.fixture(scope="module")
def production_settings(tmp_path_factory) -> dict:
    tmp_path = tmp_path_factory.mktemp("production")
    result = run_python(["-c", SETTINGS_DUMP], production_env(tmp_path))
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_production_cookies_are_secure_httponly_and_lax(production_settings):
    assert production_settings["DEBUG"] is False
    assert production_settings["SESSION_COOKIE_SECURE"] is True
    assert production_settings["SESSION_COOKIE_HTTPONLY"] is True
    assert production_settings["SESSION_COOKIE_SAMESITE"] == "Lax"
    assert production_settings["CSRF_COOKIE_SECURE"] is True
    assert production_settings["CSRF_COOKIE_SAMESITE"] == "Lax"


def test_production_https_settings(production_settings):
    assert production_settings["SECURE_SSL_REDIRECT"] is True
    assert production_settings["SECURE_HSTS_SECONDS"] >= 31_536_000
    assert production_settings["SECURE_HSTS_INCLUDE_SUBDOMAINS"] is True
    # Preloading is the operator's decision (SECURE_HSTS_PRELOAD), off by default.
    assert production_settings["SECURE_HSTS_PRELOAD"] is False
    assert production_settings["SECURE_PROXY_SSL_HEADER"] == [
        "HTTP_X_FORWARDED_PROTO",
        "https",
    ]
    assert production_settings["SECURE_CONTENT_TYPE_NOSNIFF"] is True
    assert production_settings["X_FRAME_OPTIONS"] == "DENY"
    assert production_settings["ALLOWED_HOSTS"] == [
        "leads.example.com",
        ".leads.example.com",
        "platform.leads.example.com",
        "127.0.0.1",
        "[::1]",
    ]


@override_settings(SESSION_COOKIE_SECURE=True, CSRF_COOKIE_SECURE=True)
def test_cookies_on_the_wire_carry_the_flags(tenant):
    """What the settings above mean for the cookies a staff login actually gets."""
    UserFactory(username="cookie-staff")
    client = Client(HTTP_HOST=host_of(tenant), enforce_csrf_checks=True)
    page = client.get("/admin/login/", secure=True)
    csrf = page.cookies["csrftoken"]
    assert csrf["secure"] is True
    assert csrf["samesite"] == "Lax"
    response = client.post(
        "/admin/login/?next=/admin/",
        {
            "username": "cookie-staff",
            "password": "staff-pass",
            "csrfmiddlewaretoken": csrf.value,
        },
        secure=True,
        HTTP_REFERER=f"https://{host_of(tenant)}/admin/login/",
    )
    assert response.status_code == 302, response.content[:500]
    session = response.cookies["sessionid"]
    assert session["secure"] is True
    assert session["httponly"] is True
    assert session["samesite"] == "Lax"
