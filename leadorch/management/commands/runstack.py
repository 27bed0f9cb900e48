"""`make run`: migrate, seed the demo, then run the web server, the worker and the dispatcher together."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import FrameType

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandError, CommandParser

from leadorch.database import embedded_release_dead_handles
from leadorch.demo import demo_seed

STOP_GRACE_SECONDS = 10
READY_TIMEOUT_SECONDS = 120


class Command(BaseCommand):
    help = "Run the whole application locally: web server (daphne), worker (run_worker) and dispatcher."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default=os.environ.get("HOST", "127.0.0.1"))
        parser.add_argument(
            "--port", type=int, default=int(os.environ.get("PORT", "8000"))
        )
        parser.add_argument(
            "--no-seed", action="store_true", help="Do not create the demo brand."
        )

    def handle(self, *args: object, **options: object) -> None:
        host, port = str(options["host"]), int(options["port"])  # type: ignore[call-overload]
        self.stdout.write("Migrating the public schema and every brand's schema...")
        call_command("migrate_schemas", interactive=False, verbosity=0)
        summary = None
        if not options["no_seed"]:
            summary = demo_seed()
            if summary.created:
                self.stdout.write(f"Demo data created: {', '.join(summary.created)}.")

        manage = str(Path(settings.BASE_DIR) / "manage.py")
        commands = {
            "web": [
                sys.executable,
                "-m",
                # daphne, with its access log through logging (tokens redacted).
                "leadorch.web",
                "-b",
                host,
                "-p",
                str(port),
                "leadorch.asgi:application",
            ],
            "worker": [sys.executable, manage, "run_worker"],
            "dispatcher": [sys.executable, manage, "run_dispatcher"],
        }
        # Links in messages point at this server (http://tintworld.localhost:8000/...).
        environment = {
            **os.environ,
            "PUBLIC_PORT_SUFFIX": os.environ.get("PUBLIC_PORT_SUFFIX", f":{port}"),
        }
        processes: dict[str, subprocess.Popen[bytes]] = {}
        stopping = False

        def request_stop(signum: int, frame: FrameType | None) -> None:
            nonlocal stopping
            stopping = True

        signal.signal(signal.SIGINT, request_stop)
        signal.signal(signal.SIGTERM, request_stop)
        try:
            for name, command in commands.items():
                # Own session: a terminal's Ctrl-C reaches only this process, which stops the others in order.
                processes[name] = subprocess.Popen(  # noqa: S603 - our own commands
                    command,
                    cwd=settings.BASE_DIR,
                    start_new_session=True,
                    env=environment,
                )
            ready = self._wait_until_healthy(host, port, processes, lambda: stopping)
            if ready:
                self._print_ready(host, port, summary)
            while not stopping:
                for name, process in processes.items():
                    if process.poll() is not None:
                        raise CommandError(
                            f"The {name} process exited with code {process.returncode}; stopping."
                        )
                time.sleep(0.5)
        finally:
            self._stop_all(processes)
            if not os.environ.get("DATABASE_URL"):
                # A child killed outright never detached from the embedded database;
                # forget it, so that this process, the last one, stops the server on exit.
                embedded_release_dead_handles(settings.VAR_DIR / "postgres")
        self.stdout.write("Stopped.")

    def _wait_until_healthy(
        self, host: str, port: int, processes: dict, is_stopping
    ) -> bool:
        url = f"http://{host}:{port}/api/health"
        deadline = time.monotonic() + READY_TIMEOUT_SECONDS
        last: dict = {}
        while time.monotonic() < deadline and not is_stopping():
            for name, process in processes.items():
                if process.poll() is not None:
                    raise CommandError(
                        f"The {name} process exited with code {process.returncode} while starting."
                    )
            try:
                with urllib.request.urlopen(url, timeout=2) as response:
                    if response.status == 200:
                        return True
            except urllib.error.HTTPError as error:
                last = json.loads(error.read() or b"{}")
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                pass
            time.sleep(0.5)
        if not is_stopping():
            self.stderr.write(
                f"Not healthy after {READY_TIMEOUT_SECONDS} s: {json.dumps(last.get('checks', {}))}"
            )
        return False

    def _print_ready(self, host: str, port: int, summary: object) -> None:
        shown_host = "localhost" if host in {"127.0.0.1", "0.0.0.0"} else host  # noqa: S104
        lines = ["", "Lead Orchestrator is running.", ""]
        if summary is not None:
            primary = summary.hosts[0]  # type: ignore[attr-defined]
            lines += [
                f"  Brand admin     http://{primary}:{port}/admin/",
                f"  Platform admin  http://platform.{settings.BASE_DOMAIN}:{port}/admin/",
            ]
            if summary.chat_path:  # type: ignore[attr-defined]
                lines.append(
                    f"  Demo chat       http://{primary}:{port}{summary.chat_path}"  # type: ignore[attr-defined]
                )
        lines += [f"  Health          http://{shown_host}:{port}/api/health", ""]
        if summary is not None:
            lines.append("  Demo logins (development only):")
            lines += [
                f"    {role:<32} {user} / {password}"
                for role, user, password in summary.logins
            ]  # type: ignore[attr-defined]
        if summary is not None:
            lines += [
                "",
                "  Send a sample ShopMonkey quote through the signed webhook (another terminal):",
                f"    .venv/bin/python manage.py replay_sample_webhook --server http://127.0.0.1:{port}",
            ]
        lines += ["", "Press Ctrl-C to stop.", ""]
        self.stdout.write("\n".join(lines))

    def _stop_all(self, processes: dict[str, subprocess.Popen[bytes]]) -> None:
        for process in processes.values():
            if process.poll() is None:
                process.send_signal(signal.SIGINT)
        deadline = time.monotonic() + STOP_GRACE_SECONDS
        for name, process in processes.items():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                self.stderr.write(
                    f"The {name} process did not stop in {STOP_GRACE_SECONDS} s; killing it."
                )
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
