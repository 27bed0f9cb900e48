"""Queueing helpers and the platform's own tasks."""

from __future__ import annotations

import os
import socket
from datetime import timedelta
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone
from django_q.models import Success
from django_q.tasks import async_task
from django_tenants.utils import get_public_schema_name, schema_context

from leadorch.models import ProcessHeartbeat, ProcessKind

HEARTBEAT_RETENTION = timedelta(days=1)


def enqueue_on_commit(func_path: str, **kwargs: Any) -> None:
    """Queue ``func_path(schema_name=<current schema>, **kwargs)`` to run once the transaction commits.

    The schema is captured now: a worker starts in the public schema and knows the
    tenant only from its arguments. Pass ids, never model instances.
    """
    schema_name = connection.schema_name
    if (
        connection.in_atomic_block
        and not settings.REDIS_URL
        and not settings.Q_CLUSTER.get("sync")
    ):
        # The database broker's queue row joins this transaction: it commits with
        # the work it is about (one commit instead of two) or not at all.
        async_task(func_path, schema_name=schema_name, **kwargs)
        return
    transaction.on_commit(
        lambda: enqueue_now(func_path, schema_name=schema_name, **kwargs)
    )


def enqueue_now(func_path: str, **kwargs: Any) -> None:
    """Queue a task at once, in a transaction of its own: django-q2's database broker
    closes the connection before enqueueing when it finds autocommit on, which would
    cost a reconnect on every request that queues something."""
    with transaction.atomic():
        async_task(func_path, **kwargs)


def process_heartbeat_record(*, kind: str) -> None:
    """Record that this process (a worker or a dispatcher) is alive; prune long-dead ones."""
    now = timezone.now()
    with schema_context(get_public_schema_name()):
        ProcessHeartbeat.objects.update_or_create(
            kind=kind,
            hostname=socket.gethostname(),
            pid=os.getpid(),
            defaults={"last_seen_at": now},
            create_defaults={"last_seen_at": now, "started_at": now},
        )
        ProcessHeartbeat.objects.filter(
            last_seen_at__lt=now - HEARTBEAT_RETENTION
        ).delete()


def process_heartbeat_clear(*, kind: str) -> None:
    """Forget this process's heartbeat on a clean shutdown."""
    with schema_context(get_public_schema_name()):
        ProcessHeartbeat.objects.filter(
            kind=kind, hostname=socket.gethostname(), pid=os.getpid()
        ).delete()


def job_results_prune() -> int:
    """Dispatcher job: delete the successful job results older than the newest
    Q_SUCCESS_KEEP, in one statement. Returns how many went."""
    with schema_context(get_public_schema_name()):
        kept = Success.objects.order_by("-stopped", "-pk").values("pk")[
            : settings.Q_SUCCESS_KEEP
        ]
        deleted, _ = Success.objects.exclude(pk__in=kept).delete()
    return deleted


def worker_heartbeat() -> None:
    """Task: proves that a worker takes jobs off the queue."""
    process_heartbeat_record(kind=ProcessKind.WORKER)


def worker_heartbeat_enqueue() -> None:
    """Dispatcher job: queue a heartbeat for whichever worker is free."""
    async_task("leadorch.tasks.worker_heartbeat", group="heartbeat", save=False)
