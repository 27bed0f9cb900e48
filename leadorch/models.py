"""Shared building blocks and the platform's own operational tables (public schema)."""

from __future__ import annotations

from django.db import models
from django.db.models import Q
from django.utils import timezone


class BaseModel(models.Model):
    created_at = models.DateTimeField(
        default=timezone.now, db_index=True, editable=False
    )
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        abstract = True


class ProcessKind(models.TextChoices):
    WORKER = "worker", "Worker"
    DISPATCHER = "dispatcher", "Dispatcher"


class ProcessHeartbeat(models.Model):
    """The last sign of life of one worker or dispatcher process; read by /api/health."""

    kind = models.CharField(max_length=16, choices=ProcessKind)
    hostname = models.CharField(max_length=255)
    pid = models.PositiveIntegerField()
    started_at = models.DateTimeField(default=timezone.now)
    last_seen_at = models.DateTimeField(default=timezone.now)

    class Meta:
        constraints = [
            models.UniqueConstraint(
                fields=["kind", "hostname", "pid"],
                name="leadorch_heartbeat_unique_process",
            ),
            models.CheckConstraint(
                condition=Q(kind__in=ProcessKind.values),
                name="leadorch_heartbeat_kind_valid",
            ),
        ]
        indexes = [  # serves health.worker_status: the newest heartbeat of a kind
            models.Index(
                fields=["kind", "-last_seen_at"], name="leadorch_heartbeat_recent_idx"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.kind} {self.hostname}:{self.pid}"


class PeriodicJob(models.Model):
    """When a dispatcher job may next run; claimed with a conditional update so that
    any number of dispatchers run each job once per interval."""

    name = models.CharField(max_length=100, unique=True)
    next_run_at = models.DateTimeField(default=timezone.now)
    last_started_at = models.DateTimeField(null=True, blank=True)
    last_finished_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)

    def __str__(self) -> str:
        return self.name
