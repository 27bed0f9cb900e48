import os
import subprocess
import sys
from pathlib import Path

import environ
import pytest

from leadorch.database import ENGINE, DatabaseStartError, database_settings

ROOT = Path(__file__).resolve().parents[2]


def _env(**values: str) -> environ.Env:
    env = environ.Env()
    env.ENVIRON = {**values}
    return env


def test_database_url_is_used_with_the_tenant_engine(tmp_path):
    config = database_settings(
        env=_env(DATABASE_URL="postgres://app:secret@db.internal:6432/leads"),
        var_dir=tmp_path,
    )

    assert config["ENGINE"] == ENGINE
    assert (config["NAME"], config["USER"], config["HOST"], config["PORT"]) == (
        "leads",
        "app",
        "db.internal",
        6432,
    )
    assert config["OPTIONS"]["connect_timeout"] == 5
    assert not (
        tmp_path / "postgres"
    ).exists()  # no embedded server when a URL is given


@pytest.mark.parametrize(("value", "threshold"), [(None, 0), ("false", None)])
def test_prepared_statements_are_on_unless_switched_off(tmp_path, value, threshold):
    values = {"DATABASE_URL": "postgres://app:secret@db.internal:6432/leads"}
    if value is not None:
        values["DATABASE_PREPARED_STATEMENTS"] = value

    config = database_settings(env=_env(**values), var_dir=tmp_path)

    assert config["OPTIONS"].get("prepare_threshold") == threshold


def test_refuses_a_database_that_is_not_postgresql(tmp_path):
    with pytest.raises(DatabaseStartError, match="must point to PostgreSQL"):
        database_settings(env=_env(DATABASE_URL="sqlite:///leads.db"), var_dir=tmp_path)


def test_embedded_start_failure_is_explained(tmp_path):
    (tmp_path / "postgres").write_text("not a folder")

    with pytest.raises(DatabaseStartError) as failure:
        database_settings(env=_env(), var_dir=tmp_path)

    message = str(failure.value)
    assert (
        f"Could not start the embedded PostgreSQL in {tmp_path / 'postgres'}" in message
    )
    assert "set DATABASE_URL" in message


def test_manage_py_prints_a_message_not_a_traceback(tmp_path):
    (tmp_path / "postgres").write_text("not a folder")
    env = {
        **os.environ,
        "LEADORCH_VAR_DIR": str(tmp_path),
        "SECRET_KEY": "test-only",
        "DATABASE_URL": "",
    }
    env.pop("DJANGO_SETTINGS_MODULE", None)

    result = subprocess.run(  # noqa: S603 - our own manage.py
        [sys.executable, str(ROOT / "manage.py"), "check"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert result.returncode == 1
    assert result.stderr.startswith("error: Could not start the embedded PostgreSQL")
    assert "Traceback" not in result.stderr


def _backend_pid_in_child(results) -> None:
    from django.db import connection

    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        results.put(cursor.fetchone()[0])
    connection.close()


def test_a_forked_worker_opens_its_own_connections(transactional_db):
    """django-q2 forks its workers. A child must not reuse the parent's pooled
    connections (one socket, two processes) nor its pool (whose threads did not
    survive the fork): it opens its own."""
    import multiprocessing

    from django.db import connection
    from django.db.backends.postgresql.base import DatabaseWrapper

    with connection.cursor() as cursor:
        cursor.execute("SELECT 1")
    connection.close()  # back to the pool, idle: what a child would pick up
    pool = DatabaseWrapper._connection_pools[connection.alias]
    parent_backends = {
        pooled.info.backend_pid for pooled in pool._pool
    }  # the pool's idle connections
    assert parent_backends
    context = multiprocessing.get_context("fork")
    results = context.Queue()
    child = context.Process(target=_backend_pid_in_child, args=(results,))

    child.start()
    child.join(timeout=30)

    assert child.exitcode == 0
    assert results.get(timeout=5) not in parent_backends
