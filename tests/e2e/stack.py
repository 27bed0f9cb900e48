"""The application as real processes on the test database: daphne, run_worker, the
dispatcher (and redis-server for the scale-out topology).

Every process runs in a session of its own with its output in a log file; a
:class:`Stack` stops all of them (SIGTERM, then SIGKILL of the group after a
grace period), also when a test fails. Waits are polls with a deadline, never
fixed sleeps. Tests that share rows with these processes commit them
(``tenant_tx``).
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import TypeVar

import pytest
from django.conf import settings
from django.db import connection

from tests.browser.conftest import database_url

BASE_DIR = Path(__file__).resolve().parents[2]
START_SECONDS = 60
STOP_SECONDS = 15
REDIS_SERVER = "/usr/bin/redis-server"

T = TypeVar("T")


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def server_env(
    *, var_dir: Path, public_port: int, redis_url: str = "", **extra: str
) -> dict[str, str]:
    """The environment of every process: the test database, this process's keys
    (so secrets stored by the test decrypt there), outbox messaging, the offline
    assistant, and loopback never behind a proxy."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key != "DJANGO_ALLOW_ASYNC_UNSAFE"
    }
    no_proxy = [h for h in env.get("NO_PROXY", "").split(",") if h]
    env.update(
        DJANGO_SETTINGS_MODULE="leadorch.settings",
        DATABASE_URL=database_url(connection.settings_dict),
        DATABASE_POOL_MAX_SIZE="8",
        LEADORCH_VAR_DIR=str(var_dir),
        SECRET_KEY=settings.SECRET_KEY,
        DEBUG="0",
        HTTPS="0",
        DOMAIN_CACHE_SECONDS="0",
        WEBHOOK_CONNECTION_CACHE_SECONDS="0",
        ALLOWED_HOSTS="localhost,.localhost,127.0.0.1",
        PUBLIC_PORT_SUFFIX=f":{public_port}",
        AI_PROVIDER="scripted",
        ANTHROPIC_API_KEY="",
        OPENAI_API_KEY="",
        MESSAGING_BACKEND="outbox",
        TWILIO_ACCOUNT_SID="",
        SENDGRID_API_KEY="",
        REDIS_URL=redis_url,
        LOG_LEVEL="WARNING",
        # "Q Cluster ... running." tells when a worker takes jobs.
        Q_LOG_LEVEL="INFO",
        PYTHONUNBUFFERED="1",
        NO_PROXY=",".join(dict.fromkeys([*no_proxy, "127.0.0.1", "localhost"])),
    )
    if settings.FIELD_ENCRYPTION_KEYS:
        env["FIELD_ENCRYPTION_KEYS"] = ",".join(settings.FIELD_ENCRYPTION_KEYS)
    env.update(extra)
    return env


def collectstatic(env: dict[str, str]) -> None:
    """Without DEBUG, whitenoise serves only collected files."""
    subprocess.run(
        [sys.executable, "manage.py", "collectstatic", "--noinput", "-v0"],
        cwd=BASE_DIR,
        env=env,
        check=True,
        timeout=120,
    )


@dataclass
class Process:
    name: str
    popen: subprocess.Popen[bytes]
    log: Path
    service: bool = False  # stopped after the application's processes

    @property
    def pid(self) -> int:
        return self.popen.pid

    def running(self) -> bool:
        return self.popen.poll() is None

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def tail(self, lines: int = 40) -> str:
        return "\n".join(self.text().splitlines()[-lines:])


@dataclass
class Stack:
    """Processes started for one test, all stopped by :meth:`stop`."""

    env: dict[str, str]
    log_dir: Path
    processes: list[Process] = field(default_factory=list)

    # --- starting ------------------------------------------------------------------

    def start(
        self,
        name: str,
        command: list[str],
        env: dict[str, str] | None = None,
        *,
        service: bool = False,
    ) -> Process:
        log = self.log_dir / f"{name}.log"
        with log.open("wb") as out:
            popen = subprocess.Popen(  # noqa: S603 - our own commands
                command,
                cwd=BASE_DIR,
                env=env or self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own group: the cluster's processes go with it
            )
        process = Process(name=name, popen=popen, log=log, service=service)
        self.processes.append(process)
        return process

    def web(self, name: str, port: int) -> Process:
        # The production command: daphne with its access log through logging.
        command = [sys.executable, "-m", "leadorch.web"]
        command += ["-b", "127.0.0.1", "-p", str(port), "leadorch.asgi:application"]
        return self.start(name, command)

    def worker(self, name: str) -> Process:
        return self.start(name, [sys.executable, "manage.py", "run_worker"])

    def dispatcher(self, name: str) -> Process:
        return self.start(name, [sys.executable, "manage.py", "run_dispatcher"])

    # --- waiting -------------------------------------------------------------------

    def check_alive(self) -> None:
        dead = [p for p in self.processes if not p.running()]
        if dead:
            pytest.fail(
                "stopped early: "
                + ", ".join(f"{p.name} (exit {p.popen.returncode})" for p in dead)
                + "\n"
                + self.report()
            )

    def wait_for(
        self,
        probe: Callable[[], T],
        *,
        what: str,
        timeout: float,
        interval: float = 0.05,
    ) -> T:
        """Poll ``probe`` until it returns something truthy; fail naming ``what``."""
        deadline = time.monotonic() + timeout
        while True:
            value = probe()
            if value:
                return value
            self.check_alive()
            if time.monotonic() > deadline:
                pytest.fail(f"timed out after {timeout:.0f} s: {what}\n{self.report()}")
            time.sleep(interval)

    def wait_web(self, process: Process, port: int) -> None:
        def up() -> bool:
            if not process.running():
                return False
            try:
                with urllib.request.urlopen(
                    f"http://127.0.0.1:{port}/api/ping", timeout=1
                ) as response:
                    return response.status == 200
            except (urllib.error.URLError, OSError):
                return False

        self.wait_for(
            up, what=f"{process.name} answers /api/ping", timeout=START_SECONDS
        )

    def wait_log(self, process: Process, text: str) -> None:
        self.wait_for(
            lambda: text in process.text(),
            what=f"{process.name} logs {text!r}",
            timeout=START_SECONDS,
            interval=0.1,
        )

    def wait_worker(self, process: Process) -> None:
        self.wait_log(process, " running.")

    # --- stopping ------------------------------------------------------------------

    def stop(self) -> None:
        """The application's processes first, then the services they use (Redis)."""
        self._stop([p for p in self.processes if not p.service])
        self._stop([p for p in self.processes if p.service])

    @staticmethod
    def _stop(processes: list[Process]) -> None:
        """SIGTERM to each, then SIGKILL to the group of any still there after the
        grace period (not yet reaped, so its id is still ours)."""
        for process in processes:
            if process.running():
                process.popen.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + STOP_SECONDS
        for process in processes:
            with suppress(subprocess.TimeoutExpired):
                process.popen.wait(timeout=max(0.1, deadline - time.monotonic()))
        for process in processes:
            if process.running():
                # The group start() made for this process: its pid is the group's id.
                with suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGKILL)
                process.popen.wait(timeout=10)

    def report(self, lines: int = 30) -> str:
        return "\n".join(
            f"--- {p.name} (pid {p.pid}) ---\n{p.tail(lines)}" for p in self.processes
        )


@contextmanager
def running_stack(env: dict[str, str], log_dir: Path) -> Iterator[Stack]:
    stack = Stack(env=env, log_dir=log_dir)
    try:
        yield stack
    finally:
        stack.stop()


# --- Redis ---------------------------------------------------------------------------


def redis_ping(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
            sock.sendall(b"PING\r\n")
            return sock.recv(64).startswith(b"+PONG")
    except OSError:
        return False


def start_redis(stack: Stack, port: int) -> Process:
    """A throw-away redis-server on loopback: no persistence, no system service."""
    process = stack.start(
        "redis",
        [
            REDIS_SERVER,
            "--port",
            str(port),
            "--bind",
            "127.0.0.1",
            "--save",
            "",
            "--appendonly",
            "no",
            "--daemonize",
            "no",
            "--dir",
            str(stack.log_dir),
        ],
        service=True,
    )
    stack.wait_for(
        lambda: redis_ping(port), what="redis-server answers PING", timeout=20
    )
    return process


def daytime_zone(now: datetime) -> str:
    """A fixed-offset zone where it is about noon at ``now``, so quiet hours never
    interfere. (Etc/GMT signs are inverted: Etc/GMT-3 is UTC+3.)"""
    offset = (12 - now.hour) % 24
    offset = offset - 24 if offset > 12 else offset
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")
