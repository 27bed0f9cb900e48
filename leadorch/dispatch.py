"""The dispatcher: sub-minute periodic work that django-q2's scheduler cannot do.

django-q2 looks at its schedules about every 30 s, in whole minutes. The
dispatcher ticks every DISPATCHER_TICK_SECONDS and runs each registered job when
it is due. Jobs are short: they claim what is due (with SKIP LOCKED) and queue
tasks for the workers. Any number of dispatchers may run: a job is claimed for
its next interval with one conditional UPDATE, so each interval runs once.
"""

from __future__ import annotations

import logging
import signal
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from types import FrameType

from django.conf import settings
from django.db import DatabaseError, close_old_connections
from django.utils import timezone
from django.utils.module_loading import import_string
from django_tenants.utils import get_public_schema_name, schema_context

from leadorch.models import PeriodicJob, ProcessKind
from leadorch.tasks import process_heartbeat_clear, process_heartbeat_record

logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class DispatchJob:
    name: str
    interval_seconds: float
    func_path: str

    def run(self) -> None:
        func: Callable[[], object] = import_string(self.func_path)
        func()


def registered_jobs() -> list[DispatchJob]:
    """The jobs named in settings.DISPATCHER_JOBS as (name, interval seconds, dotted path)."""
    return [
        DispatchJob(name, float(interval), path)
        for name, interval, path in settings.DISPATCHER_JOBS
    ]


def job_claim(*, job: DispatchJob) -> bool:
    """Claim ``job`` for its next interval if it is due. True when this caller won it."""
    now = timezone.now()
    with schema_context(get_public_schema_name()):
        PeriodicJob.objects.get_or_create(name=job.name, defaults={"next_run_at": now})
        claimed = PeriodicJob.objects.filter(
            name=job.name, next_run_at__lte=now
        ).update(
            next_run_at=now + timedelta(seconds=job.interval_seconds),
            last_started_at=now,
        )
    return claimed == 1


def job_finish(*, job: DispatchJob, error: str = "") -> None:
    with schema_context(get_public_schema_name()):
        PeriodicJob.objects.filter(name=job.name).update(
            last_finished_at=timezone.now(), last_error=error[:2000]
        )


def dispatch_tick(*, jobs: list[DispatchJob]) -> list[str]:
    """Run every due job once; return the names of those this dispatcher ran.

    A failing job is logged and recorded on its row; it never stops the others.
    """
    ran = []
    for job in jobs:
        if not job_claim(job=job):
            continue
        try:
            job.run()
        except Exception as error:
            logger.exception("Dispatcher job %s failed", job.name)
            job_finish(job=job, error=f"{error.__class__.__name__}: {error}")
        else:
            job_finish(job=job)
        ran.append(job.name)
    return ran


class Dispatcher:
    """The loop behind `manage.py run_dispatcher`."""

    def __init__(
        self,
        *,
        tick_seconds: float | None = None,
        jobs: list[DispatchJob] | None = None,
    ) -> None:
        self.tick_seconds = (
            tick_seconds
            if tick_seconds is not None
            else settings.DISPATCHER_TICK_SECONDS
        )
        self.jobs = jobs if jobs is not None else registered_jobs()
        self.stopping = threading.Event()

    def request_stop(
        self, signum: int | None = None, frame: FrameType | None = None
    ) -> None:
        self.stopping.set()

    def install_signal_handlers(self) -> None:
        signal.signal(signal.SIGINT, self.request_stop)
        signal.signal(signal.SIGTERM, self.request_stop)

    def run(self, *, max_ticks: int | None = None) -> int:
        ticks = 0
        logger.info("Dispatcher started: %s", ", ".join(job.name for job in self.jobs))
        while not self.stopping.is_set() and (max_ticks is None or ticks < max_ticks):
            started = time.monotonic()
            try:
                close_old_connections()
                process_heartbeat_record(kind=ProcessKind.DISPATCHER)
                dispatch_tick(jobs=self.jobs)
            except DatabaseError:
                # The database is away (restart, failover): keep ticking, it comes back.
                logger.warning(
                    "Dispatcher tick skipped: database unavailable", exc_info=True
                )
            ticks += 1
            self.stopping.wait(
                max(0.0, self.tick_seconds - (time.monotonic() - started))
            )
        try:
            process_heartbeat_clear(kind=ProcessKind.DISPATCHER)
        except DatabaseError:
            logger.warning("Could not clear the dispatcher heartbeat on exit")
        logger.info("Dispatcher stopped after %d ticks", ticks)
        return ticks
