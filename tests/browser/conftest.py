"""Browser tests: Debian's Chromium, driven by Playwright, against a live daphne.

The server is a subprocess (WebSockets need a real ASGI server) on the test
database, so tests that share rows with it commit them (``tenant_tx``). Its
channel layer is in memory, in its own process: only what the server itself
does reaches an open page live. Nothing is downloaded: Playwright drives
/usr/bin/chromium, and a page's requests to anything but this machine are
recorded and refused.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, urlsplit

import pytest
from django.db import connection

BASE_DIR = Path(__file__).resolve().parents[2]
ARTIFACTS = BASE_DIR / "tests" / "artifacts"
CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
LOOPBACK_HOSTS = {"localhost", "127.0.0.1", "[::1]", "::1"}
SERVER_START_SECONDS = 30


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: Any) -> Iterator[None]:
    """Keep each phase's report on the test, for fixtures to see how it went."""
    outcome = yield
    report = outcome.get_result()
    setattr(item, f"rep_{report.when}", report)


def _failed(request: pytest.FixtureRequest) -> bool:
    report = getattr(request.node, "rep_call", None)
    return report is not None and report.failed


# --- the live server ---------------------------------------------------------------


@dataclass(frozen=True)
class LiveServer:
    port: int
    log: Path

    def url(self, path: str, host: str = "alpha.localhost") -> str:
        return f"http://{host}:{self.port}{path}"

    def log_tail(self, lines: int = 60) -> str:
        if not self.log.exists():
            return ""
        return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def database_url(settings_dict: dict[str, Any]) -> str:
    """A DATABASE_URL for ``settings_dict`` that django-environ reads back the same.

    A unix-socket directory cannot be the URL's host (environ does not unquote
    it); as a ``host`` query parameter it lands in OPTIONS, which psycopg takes.
    """
    user = quote(settings_dict["USER"] or "", safe="")
    password = settings_dict["PASSWORD"] or ""
    credentials = f"{user}:{quote(password, safe='')}" if password else user
    name = quote(settings_dict["NAME"], safe="")
    host = settings_dict["HOST"] or ""
    port = settings_dict["PORT"] or ""
    if host.startswith("/"):
        return f"postgresql://{credentials}@:{port}/{name}?host={quote(host, safe='/')}"
    return f"postgresql://{credentials}@{host}:{port}/{name}"


def _wait_until_up(process: subprocess.Popen[bytes], server: LiveServer) -> None:
    deadline = time.monotonic() + SERVER_START_SECONDS
    while time.monotonic() < deadline:
        if process.poll() is not None:
            break
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{server.port}/api/ping", timeout=1
            ) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    process.kill()
    pytest.fail(f"daphne did not start; its log:\n{server.log_tail()}")


@pytest.fixture(scope="session")
def live_chat_server(
    django_db_setup: None, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[LiveServer]:
    """daphne serving leadorch.asgi on the test database, with the offline assistant.

    Depends on django_db_setup, so it stops (and lets go of the test database)
    before the database is dropped.
    """
    var_dir = tmp_path_factory.mktemp("live-server")
    server = LiveServer(port=_free_port(), log=var_dir / "daphne.log")
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    env.update(
        DJANGO_SETTINGS_MODULE="leadorch.settings",
        DATABASE_URL=database_url(connection.settings_dict),
        DATABASE_POOL_MAX_SIZE="8",
        LEADORCH_VAR_DIR=str(var_dir),
        SECRET_KEY=secrets.token_urlsafe(50),
        DEBUG="0",
        HTTPS="0",
        DOMAIN_CACHE_SECONDS="0",
        ALLOWED_HOSTS="localhost,.localhost,127.0.0.1",
        PUBLIC_PORT_SUFFIX=f":{server.port}",
        AI_PROVIDER="scripted",
        ANTHROPIC_API_KEY="",
        OPENAI_API_KEY="",
        MESSAGING_BACKEND="outbox",
        REDIS_URL="",
        LOG_LEVEL="WARNING",
    )
    # Without DEBUG, whitenoise serves only collected files.
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=BASE_DIR,
        env=env,
        check=True,
    )
    # The production command: daphne with its access log through logging.
    command = [sys.executable, "-m", "leadorch.web"]
    command += ["-b", "127.0.0.1", "-p", str(server.port), "leadorch.asgi:application"]
    with server.log.open("wb") as log:
        process = subprocess.Popen(  # noqa: S603 - fixed arguments
            command, cwd=BASE_DIR, env=env, stdout=log, stderr=subprocess.STDOUT
        )
    try:
        _wait_until_up(process, server)
        yield server
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


# --- the browser -------------------------------------------------------------------


@pytest.fixture(scope="module")
def chromium() -> Iterator[Any]:
    """One browser per test module: Playwright's loop must be gone before the
    suite's other (async) tests run."""
    from playwright.sync_api import expect, sync_playwright

    # Room for a REST poll (every 3 s) on a busy machine.
    expect.set_options(timeout=10_000)

    # Playwright's sync API keeps an event loop running on this thread, which
    # Django's ORM takes for an async context; the tests' ORM calls are plain
    # blocking calls between browser steps.
    previous = os.environ.get("DJANGO_ALLOW_ASYNC_UNSAFE")
    os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = "true"
    try:
        with sync_playwright() as playwright:
            browser = playwright.chromium.launch(
                executable_path=CHROMIUM, headless=True, args=CHROMIUM_ARGS
            )
            yield browser
            browser.close()
    finally:
        if previous is None:
            os.environ.pop("DJANGO_ALLOW_ASYNC_UNSAFE", None)
        else:
            os.environ["DJANGO_ALLOW_ASYNC_UNSAFE"] = previous


@dataclass
class Guard:
    """What the pages of one test tried to load from elsewhere, and what broke."""

    outside_requests: list[str] = field(default_factory=list)
    console_errors: list[str] = field(default_factory=list)
    page_errors: list[str] = field(default_factory=list)


def _is_loopback(url: str) -> bool:
    parts = urlsplit(url)
    if parts.scheme in {"data", "blob", "about"}:
        return True
    host = (parts.hostname or "").lower()
    return host in LOOPBACK_HOSTS or host.endswith(".localhost")


@pytest.fixture
def guard() -> Guard:
    return Guard()


@pytest.fixture
def open_page(
    chromium: Any, guard: Guard, request: pytest.FixtureRequest
) -> Iterator[Callable[..., Any]]:
    """``open_page(**context_options)``: a new page in a browser context of its own.

    Every request leaving this machine is recorded in ``guard`` and aborted. A
    failed test leaves a screenshot of each page in tests/artifacts/.
    """
    contexts: list[Any] = []
    pages: list[Any] = []

    def route(route: Any) -> None:
        if _is_loopback(route.request.url):
            route.continue_()
        else:
            guard.outside_requests.append(route.request.url)
            route.abort()

    def on_console(message: Any) -> None:
        if message.type == "error":
            guard.console_errors.append(message.text)

    def make(init_script: str | None = None, **options: Any) -> Any:
        options.setdefault("viewport", {"width": 390, "height": 844})
        context = chromium.new_context(**options)
        context.set_default_timeout(10_000)
        context.route("**/*", route)
        if init_script:
            context.add_init_script(init_script)
        contexts.append(context)
        page = context.new_page()
        page.on("console", on_console)
        page.on("pageerror", lambda error: guard.page_errors.append(str(error)))
        pages.append(page)
        return page

    yield make

    if _failed(request):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        for number, page in enumerate(pages):
            if page.is_closed():
                continue
            path = ARTIFACTS / f"{request.node.name}-{number}.png"
            try:
                page.screenshot(path=str(path), full_page=True)
            except Exception as error:  # a crashed page must not hide the failure
                sys.stderr.write(f"No screenshot of page {number}: {error}\n")
    for context in contexts:
        context.close()


@pytest.fixture
def server(
    live_chat_server: LiveServer, request: pytest.FixtureRequest
) -> Iterator[LiveServer]:
    """The live server; a failed test also leaves a copy of its log in tests/artifacts/."""
    yield live_chat_server
    if _failed(request):
        ARTIFACTS.mkdir(parents=True, exist_ok=True)
        shutil.copy(live_chat_server.log, ARTIFACTS / f"{request.node.name}-daphne.log")
