"""The web server's process (python -m leadorch.web)."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
LOAD_THE_APPLICATION = (
    "import gc; from leadorch.web import CommandLineInterface; "
    "before = gc.get_freeze_count(); "
    "CommandLineInterface().load_asgi_app('leadorch.asgi:application'); "
    "print(before, gc.get_freeze_count(), len(gc.get_objects()))"
)


def test_what_the_loaded_application_holds_is_kept_out_of_the_collectors_walks(
    tmp_path,
):
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "leadorch.settings",
        "LEADORCH_VAR_DIR": str(tmp_path),
        "SECRET_KEY": "test-only",
        # Loading the application opens no connection: any address will do.
        "DATABASE_URL": "postgres://leadorch@127.0.0.1:9/none",
        "AI_PROVIDER": "scripted",
    }
    result = subprocess.run(  # noqa: S603 - our own application
        [sys.executable, "-c", LOAD_THE_APPLICATION],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    before, frozen, tracked = map(int, result.stdout.split())
    assert before == 0
    # Django and the project loaded: well over a hundred thousand objects, frozen,
    # with next to nothing left for the collector to walk.
    assert frozen > 100_000
    assert tracked < frozen / 100
