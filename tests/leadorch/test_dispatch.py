import threading
import uuid
from datetime import timedelta

from django.utils import timezone

from leadorch import tasks
from leadorch.dispatch import (
    Dispatcher,
    DispatchJob,
    dispatch_tick,
    job_claim,
    registered_jobs,
)
from leadorch.models import PeriodicJob, ProcessHeartbeat, ProcessKind

CALLS: list[str] = []


def record_call() -> None:
    CALLS.append("ran")


def explode() -> None:
    raise RuntimeError("boom")


def test_a_due_job_runs_once_per_interval(public_schema):
    CALLS.clear()
    job = DispatchJob("test-once", 60, "tests.leadorch.test_dispatch.record_call")

    first = dispatch_tick(jobs=[job])
    second = dispatch_tick(jobs=[job])  # another dispatcher, same interval

    assert first == ["test-once"]
    assert second == []
    assert CALLS == ["ran"]
    row = PeriodicJob.objects.get(name="test-once")
    assert row.next_run_at > timezone.now()
    assert row.last_finished_at is not None
    assert row.last_error == ""


def test_concurrent_claims_have_one_winner(transactional_db):
    job = DispatchJob("test-race", 60, "tests.leadorch.test_dispatch.record_call")
    PeriodicJob.objects.create(name=job.name)
    results: list[bool] = []
    barrier = threading.Barrier(8)

    def claim() -> None:
        from django.db import connection

        barrier.wait()
        results.append(job_claim(job=job))
        connection.close()

    threads = [threading.Thread(target=claim) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert sorted(results) == [False] * 7 + [True]


def test_a_failing_job_is_recorded_and_does_not_stop_the_others(public_schema):
    CALLS.clear()
    bad = DispatchJob("test-bad", 60, "tests.leadorch.test_dispatch.explode")
    good = DispatchJob("test-good", 60, "tests.leadorch.test_dispatch.record_call")

    ran = dispatch_tick(jobs=[bad, good])

    assert ran == ["test-bad", "test-good"]
    assert CALLS == ["ran"]
    assert PeriodicJob.objects.get(name="test-bad").last_error == "RuntimeError: boom"


def test_dispatcher_reports_itself_and_forgets_itself_on_stop(transactional_db):
    dispatcher = Dispatcher(tick_seconds=0, jobs=[])
    seen = []

    def stop_after_first_tick() -> None:
        seen.append(
            ProcessHeartbeat.objects.filter(kind=ProcessKind.DISPATCHER).count()
        )
        dispatcher.request_stop()

    STOP_HOOK.append(stop_after_first_tick)
    try:
        dispatcher.jobs = [
            DispatchJob("test-stop", 0, "tests.leadorch.test_dispatch.stop_hook")
        ]
        ticks = dispatcher.run(max_ticks=5)
    finally:
        STOP_HOOK.clear()

    assert ticks == 1
    assert seen == [1]
    assert not ProcessHeartbeat.objects.filter(kind=ProcessKind.DISPATCHER).exists()


STOP_HOOK: list = []


def stop_hook() -> None:
    for hook in STOP_HOOK:
        hook()


def test_a_task_queued_in_a_transaction_commits_or_rolls_back_with_it(
    public_schema, settings, monkeypatch
):
    """With the database broker, the queue row is part of the caller's transaction."""
    from django.db import transaction
    from django_q.models import OrmQ

    from leadorch.tasks import enqueue_on_commit

    settings.Q_CLUSTER = {**settings.Q_CLUSTER, "sync": False}
    # Tests run tasks in-process; this one must be queued instead.
    monkeypatch.setattr("django_q.conf.Conf.SYNC", False)
    before = OrmQ.objects.count()

    with transaction.atomic():
        enqueue_on_commit("leadorch.tasks.worker_heartbeat")
        assert (
            OrmQ.objects.count() == before + 1
        )  # queued inside the transaction, no second commit
        transaction.set_rollback(True)

    assert OrmQ.objects.count() == before


def _result(*, success: bool, age_seconds: int) -> None:
    from django_q.models import Task

    stopped = timezone.now() - timedelta(seconds=age_seconds)
    Task.objects.create(
        id=uuid.uuid4().hex,
        name=f"result-{age_seconds}-{success}",
        func="math.floor",
        started=stopped - timedelta(seconds=1),
        stopped=stopped,
        success=success,
    )


def test_job_results_are_pruned_to_the_newest_successes(public_schema, settings):
    from django_q.models import Failure, Success

    settings.Q_SUCCESS_KEEP = 3
    for age in range(6):
        _result(success=True, age_seconds=age)
        _result(success=False, age_seconds=age)
    job = DispatchJob("test-prune", 60, "leadorch.tasks.job_results_prune")
    assert "job-results-prune" in {j.name for j in registered_jobs()}

    assert dispatch_tick(jobs=[job]) == ["test-prune"]

    kept = Success.objects.order_by("stopped").values_list("name", flat=True)
    assert list(kept) == ["result-2-True", "result-1-True", "result-0-True"]
    assert Failure.objects.count() == 6
    assert tasks.job_results_prune() == 0
