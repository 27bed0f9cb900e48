"""The job worker: django-q2's cluster, started again whole when one of its processes dies.

A django-q2 cluster is a sentinel process guarding the workers, a pusher (broker →
task queue) and a monitor (result queue → database), joined by two
``multiprocessing`` queues. A process that reads from or writes to such a queue
holds the queue's lock (a semaphore shared by the processes) for as long as it
waits. When the OOM killer or an operator's ``kill -9`` takes a process while it
holds one, the lock is never released: the sentinel starts a new worker, but every
worker then waits for that lock forever, and the cluster takes no job until it is
restarted. Which process held which lock cannot be seen from outside.

So a sudden death is not repaired in place. :class:`SelfHealingSentinel` treats
the death of any cluster process other than the ones django-q2 ends itself (a
worker recycled after ``recycle`` tasks, or stopped after its task timed out) as
fatal: it kills the cluster's processes and exits with :data:`RESTART_EXIT_CODE`;
:func:`cluster_run` then starts a fresh cluster with fresh queues, in the same
process. Nothing is lost by it: jobs taken from the broker but not finished are
delivered again after ``Q_CLUSTER["retry"]`` seconds, and the work itself is
claimed with leases in the database (touch points, webhook deliveries), so a
restart sends nothing twice.

:func:`cluster_run` also restarts a cluster whose sentinel itself was killed, after
ending the processes that sentinel left behind.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import time
from collections.abc import Callable
from typing import Any

import psutil
from django_q import cluster as q_cluster

logger = logging.getLogger(__name__)

# The sentinel's exit code for "a process died; start a fresh cluster" (EX_TEMPFAIL).
RESTART_EXIT_CODE = 75
# What a worker's timer holds when django-q2 ended the worker itself.
WORKER_TIMED_OUT = 0
WORKER_RECYCLED = -2
# A cluster that fails again within this many seconds of starting waits before the
# next start, so that a process that dies at once does not make a busy loop.
RESTART_BACKOFF_SECONDS = (1, 2, 5, 10, 30)
STABLE_AFTER_SECONDS = 60


class SelfHealingSentinel(q_cluster.Sentinel):
    """django-q2's sentinel, ending the whole cluster when a process dies suddenly."""

    def reincarnate(self, process: Any) -> None:
        if not _died_suddenly(self, process):
            super().reincarnate(process)
            return
        role = (
            "monitor"
            if process is self.monitor
            else "pusher"
            if process is self.pusher
            else "worker"
        )
        logger.critical(
            "The cluster's %s (pid %s) died suddenly (exit code %s); a queue lock it "
            "held would stop every worker, so the whole cluster is restarted.",
            role,
            process.pid,
            process.exitcode,
        )
        for other in [*self.pool, self.monitor, self.pusher]:
            if other is not None and other.is_alive():
                other.kill()
        os._exit(RESTART_EXIT_CODE)


def _died_suddenly(sentinel: q_cluster.Sentinel, process: Any) -> bool:
    if process is sentinel.monitor or process is sentinel.pusher:
        return True  # the guard calls for these only when they are dead
    if process.is_alive():
        return False  # a worker whose task timed out: django-q2 ends it itself
    return process.timer.value not in (WORKER_TIMED_OUT, WORKER_RECYCLED)


class SelfHealingCluster(q_cluster.Cluster):
    """A django-q2 cluster whose sentinel is a :class:`SelfHealingSentinel`."""

    stopping = False

    def start(self) -> int:
        # Cluster.start forks the sentinel with the module's Sentinel as its target.
        original = q_cluster.Sentinel
        q_cluster.Sentinel = SelfHealingSentinel  # type: ignore[misc]
        try:
            return super().start()
        finally:
            q_cluster.Sentinel = original  # type: ignore[misc]

    def sig_handler(self, signum: int, frame: Any) -> None:
        self.stopping = True
        super().sig_handler(signum, frame)


def cluster_run(
    *,
    make_cluster: Callable[[], SelfHealingCluster] = SelfHealingCluster,
    poll_seconds: float = 1.0,
) -> int:
    """Run the cluster until SIGTERM or SIGINT; start a fresh one whenever it ends
    otherwise. Returns the exit code for the process (0 after a stop signal)."""
    failures = 0
    while True:
        cluster = make_cluster()
        started = time.monotonic()
        try:
            cluster.start()
        except RuntimeError as error:
            # The sentinel died while starting (say the database is still down and
            # a process could not open its connection): try again after the backoff.
            logger.error("The job cluster could not start: %s", error)
        if cluster.stopping:
            return 0
        left_behind = _wait(cluster, poll_seconds)
        if cluster.stopping:
            return 0
        code = cluster.sentinel.exitcode if cluster.sentinel is not None else None
        _end(left_behind)
        if time.monotonic() - started > STABLE_AFTER_SECONDS:
            failures = 0
        pause = RESTART_BACKOFF_SECONDS[min(failures, len(RESTART_BACKOFF_SECONDS) - 1)]
        failures += 1
        logger.warning(
            "The job cluster ended (sentinel exit code %s); starting a fresh one in %s s.",
            code,
            pause,
        )
        _restore_default_signals()
        time.sleep(pause)


def _wait(cluster: SelfHealingCluster, poll_seconds: float) -> list[psutil.Process]:
    """Wait for the sentinel to end; return the processes it started, as last seen."""
    me = psutil.Process()
    seen: dict[int, psutil.Process] = {}
    while cluster.sentinel is not None and cluster.sentinel.is_alive():
        try:
            for child in me.children(recursive=True):
                seen.setdefault(child.pid, child)
        except psutil.Error:
            pass
        cluster.sentinel.join(poll_seconds)
    return list(seen.values())


def _end(processes: list[psutil.Process]) -> None:
    """Kill what is left of a cluster (psutil checks a pid still names the same process)."""
    alive = [process for process in processes if process.is_running()]
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
    psutil.wait_procs(alive, timeout=5)


def _restore_default_signals() -> None:
    # A stop signal between two clusters ends the process at once.
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGINT, signal.default_int_handler)
