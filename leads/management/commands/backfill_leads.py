from datetime import UTC, date, datetime, time, timedelta

from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.utils import timezone
from django_tenants.utils import tenant_context
from tqdm import tqdm

from leads import intake
from leads.management.commands._tenant_option import tenants_for
from leads.models import CRMConnection, JobStatus


def _day(value: str) -> datetime:
    try:
        day = date.fromisoformat(value)
    except ValueError as error:
        raise CommandError(f"{value!r} is not a date (use YYYY-MM-DD).") from error
    return datetime.combine(day, time.min, tzinfo=UTC)


class Command(BaseCommand):
    help = (
        "Ingest the leads among ShopMonkey orders created between two dates. "
        "Safe to repeat; an interrupted run resumes where it stopped."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="The brand's slug.")
        parser.add_argument(
            "--since", required=True, help="First day, YYYY-MM-DD (UTC)."
        )
        parser.add_argument(
            "--until", help="Last day, YYYY-MM-DD, inclusive (default: today)."
        )
        parser.add_argument(
            "--dry-run",
            action="store_true",
            help="Report what would be created; write no leads.",
        )

    def handle(self, *args: object, **options: object) -> None:
        since = _day(str(options["since"]))
        until = (
            _day(str(options["until"])) + timedelta(days=1)
            if options["until"]
            else timezone.now()
        )
        if until <= since:
            raise CommandError("--until must not be before --since.")
        (tenant,) = tenants_for(str(options["tenant"]))
        dry_run = bool(options["dry_run"])
        with tenant_context(tenant):
            connections = list(
                CRMConnection.objects.filter(is_active=True).exclude(api_key="")
            )
            if not connections:
                raise CommandError(
                    f"{tenant.name} has no active connection with an API key."
                )
            for connection in connections:
                self._backfill(connection, since, until, dry_run)

    def _backfill(
        self, connection: CRMConnection, since: datetime, until: datetime, dry_run: bool
    ) -> None:
        job, resumed = intake.backfill_start(
            connection=connection, since=since, until=until, dry_run=dry_run
        )
        if resumed:
            self.stdout.write(
                f"Resuming the run started {job.started_at:%Y-%m-%d %H:%M} ({job.orders_seen} orders done)."
            )
        bar = tqdm(
            desc=connection.name,
            unit="order",
            initial=job.orders_seen,
            file=self.stderr._out,
        )
        try:
            intake.backfill_run(connection=connection, job=job, on_page=bar.update)
        except KeyboardInterrupt:
            bar.close()
            raise CommandError(
                "Interrupted. Run the same command again to resume."
            ) from None
        bar.close()
        verb = "would be created" if dry_run else "created"
        line = (
            f"{connection.name}: {job.orders_seen} order(s) seen on {job.pages} page(s), "
            f"{job.leads_created} lead(s) {verb}, {job.orders_ignored} ignored, {job.errors} error(s)."
        )
        if job.status == JobStatus.SUCCEEDED:
            self.stdout.write(self.style.SUCCESS(line))
        else:
            self.stdout.write(self.style.WARNING(line))
            self.stdout.write(
                job.error_detail.splitlines()[0] if job.error_detail else ""
            )
            self.stdout.write(
                "Run the same command again to retry; finished orders are skipped quickly."
            )
