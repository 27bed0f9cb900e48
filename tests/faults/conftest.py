"""Fault tests: a dedicated PostgreSQL for the session, a database per scenario.

Run with ``make test-faults`` (or ``pytest tests/faults -m faults --ds
tests.faults.settings``). The server's data is in ``.var/faults/pg`` (deleted
when the session ends), the processes' logs in ``.var/faults/logs``, the figures
in ``.var/faults/results`` and the outcomes in ``.var/faults/session.json``
(``tests/faults/report.py`` turns them into docs/reliability.md).
"""

from __future__ import annotations

import base64
import json
import shutil
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import pytest

from tests.faults import harness

WEBHOOK_SECRET = (
    "whsec_" + base64.b64encode(b"leadorch-fault-tests-webhook-key").decode()
)


SESSION_FILE = harness.FAULTS_DIR / "session.json"
_session: dict[str, Any] = {}


def _now() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    """Keep each fault test's outcome in .var/faults/session.json for the report."""
    if not _session or "tests/faults/" not in report.nodeid:
        return
    if report.when == "call" or (report.when == "setup" and not report.passed):
        if hasattr(report, "wasxfail"):
            outcome = "xfailed" if report.skipped else "xpassed"
        else:
            outcome = report.outcome
        _session["outcomes"][report.nodeid] = outcome
        _session["ran"] = sorted({*_session.get("ran", []), report.nodeid})
    _session["updated"] = _now()
    _session["seconds"] = round(time.monotonic() - _session["_began"], 1)
    SESSION_FILE.write_text(
        json.dumps(
            {k: v for k, v in _session.items() if not k.startswith("_")}, indent=2
        )
    )


@dataclass
class FaultCluster:
    pg: harness.FaultPostgres
    base: dict[str, Any]


@pytest.fixture(scope="session")
def fault_cluster() -> Iterator[FaultCluster]:
    """The fault tests' own PostgreSQL, with a migrated template database holding the
    brand ``faults``, a location and a ShopMonkey connection."""
    shutil.rmtree(harness.LOG_DIR, ignore_errors=True)
    harness.FAULTS_DIR.mkdir(parents=True, exist_ok=True)
    # Outcomes of tests this session does not run (-k) are kept from earlier ones.
    earlier = json.loads(SESSION_FILE.read_text()) if SESSION_FILE.is_file() else {}
    _session.update(
        started=_now(),
        machine=harness.machine(),
        outcomes=earlier.get("outcomes", {}),
        ran=[],
        _began=time.monotonic(),
    )
    pg = harness.FaultPostgres(harness.FAULTS_DIR / "pg")
    try:
        pg.init()
        pg.start()
        pg.create_database(harness.BASE_DATABASE)
        env = harness.product_env(pg, harness.BASE_DATABASE)
        migrated = subprocess.run(  # noqa: S603 - our own command
            [harness.PYTHON, "manage.py", "migrate_schemas", "--noinput", "-v", "0"],
            cwd=harness.REPO_ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        assert migrated.returncode == 0, migrated.stdout + migrated.stderr
        base = harness.ctl(env, "setup-base", webhook_secret=WEBHOOK_SECRET)
        yield FaultCluster(pg=pg, base=base)
    finally:
        pg.kill()
        shutil.rmtree(pg.data_dir, ignore_errors=True)


@dataclass
class Scenario:
    """One scenario's database (a copy of the template) and how to reach it."""

    name: str
    cluster: FaultCluster
    database: str

    @property
    def pg(self) -> harness.FaultPostgres:
        return self.cluster.pg

    @property
    def base(self) -> dict[str, Any]:
        return self.cluster.base

    @property
    def schema(self) -> str:
        return self.base["schema"]

    def env(self, **extra: str) -> dict[str, str]:
        return harness.product_env(self.pg, self.database, **extra)

    def sql(self, statement: str, params: Any = ()) -> list[tuple]:
        """A query in the brand's schema (its tables unqualified)."""
        with self.pg.connect(self.database) as conn, conn.cursor() as cursor:
            cursor.execute(f'SET search_path TO "{self.schema}", public')
            cursor.execute(statement, params)
            return cursor.fetchall() if cursor.description else []

    def scalar(self, statement: str, params: Any = ()) -> Any:
        return self.sql(statement, params)[0][0]


@pytest.fixture
def scenario(request: pytest.FixtureRequest, fault_cluster: FaultCluster) -> Scenario:
    name = request.node.name.removeprefix("test_").split("[")[0]
    database = f"faults_{name}"[:60]
    fault_cluster.pg.execute(f'DROP DATABASE IF EXISTS "{database}" WITH (FORCE)')
    fault_cluster.pg.create_database(database, template=harness.BASE_DATABASE)
    return Scenario(name=name, cluster=fault_cluster, database=database)
