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


SWITCH_INTERVAL = (
    "import sys; from leadorch.web import CommandLineInterface; "
    "CommandLineInterface().load_asgi_app('leadorch.asgi:application'); "
    "print(sys.getswitchinterval())"
)


def test_the_server_lets_threads_take_turns_every_300_microseconds_by_default(
    tmp_path,
):
    env = application_env(tmp_path, AI_PROVIDER="scripted")
    env.pop("WEB_SWITCH_INTERVAL_MS", None)
    result = run_python(["-c", SWITCH_INTERVAL], env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) == 0.0003


def test_the_switch_interval_is_a_setting(tmp_path):
    env = application_env(
        tmp_path, AI_PROVIDER="scripted", WEB_SWITCH_INTERVAL_MS="2.5"
    )
    result = run_python(["-c", SWITCH_INTERVAL], env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert float(result.stdout) == 0.0025


def test_a_switch_interval_of_zero_stops_the_server_with_a_readable_message(
    tmp_path,
):
    env = application_env(tmp_path, AI_PROVIDER="scripted", WEB_SWITCH_INTERVAL_MS="0")
    result = run_python(["-c", SWITCH_INTERVAL], env, timeout=60)
    assert result.returncode == 1
    assert "WEB_SWITCH_INTERVAL_MS must be a number of milliseconds above 0" in (
        result.stderr
    )
    assert "Traceback" not in result.stderr


IDLE_COLLECTION = """
import gc, threading, time, weakref
from leadorch.web import CommandLineInterface
CommandLineInterface().load_asgi_app("leadorch.asgi:application")

class Node:
    pass

first, second = Node(), Node()
first.other, second.other = second, first
cycle = weakref.ref(first)
del first, second
kept = [[] for _ in range(2000)]
deadline = time.monotonic() + 10
while cycle() is not None and time.monotonic() < deadline:
    time.sleep(0.01)
collector = [t.name for t in threading.enumerate() if t.name == "idle-collector"]
print(gc.isenabled(), cycle() is None, collector)
"""


def test_the_server_collects_garbage_from_a_thread_of_its_own(tmp_path):
    env = application_env(tmp_path, AI_PROVIDER="scripted")
    result = run_python(["-c", IDLE_COLLECTION], env, timeout=60)
    assert result.returncode == 0, result.stderr
    assert result.stdout.split() == ["False", "True", "['idle-collector']"]
