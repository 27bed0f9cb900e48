"""Our own Python in a subprocess: loading the settings or the application the way
a server process does, apart from the test run's already loaded Django."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def application_env(tmp_path: Path, **overrides: str) -> dict[str, str]:
    """This environment, with settings that load the application without a database."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "leadorch.settings",
        "LEADORCH_VAR_DIR": str(tmp_path),
        "SECRET_KEY": "test-only",
        # Loading the application opens no connection: any address will do.
        "DATABASE_URL": "postgres://leadorch@127.0.0.1:9/none",
        **overrides,
    }


def run_python(
    args: list[str], env: dict[str, str], *, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(  # noqa: S603 - our own interpreter and code
        [sys.executable, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )
