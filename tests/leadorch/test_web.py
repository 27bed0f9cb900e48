"""The web server's process (python -m leadorch.web)."""

from tests.processes import application_env, run_python

LOAD_THE_APPLICATION = (
    "import gc; from leadorch.web import CommandLineInterface; "
    "before = gc.get_freeze_count(); "
    "CommandLineInterface().load_asgi_app('leadorch.asgi:application'); "
    "print(before, gc.get_freeze_count(), len(gc.get_objects()))"
)


def test_what_the_loaded_application_holds_is_kept_out_of_the_collectors_walks(
    tmp_path,
):
    env = application_env(tmp_path, AI_PROVIDER="scripted")
    result = run_python(["-c", LOAD_THE_APPLICATION], env, timeout=60)
    assert result.returncode == 0, result.stderr
    before, frozen, tracked = map(int, result.stdout.split())
    assert before == 0
    # Django and the project loaded: well over a hundred thousand objects, frozen,
    # with next to nothing left for the collector to walk.
    assert frozen > 100_000
    assert tracked < frozen / 100
