from django.core.management.base import BaseCommand, CommandParser
from django_tenants.utils import tenant_context

from leads import intake
from leads.management.commands._tenant_option import tenants_for
from leads.models import CRMConnection


class Command(BaseCommand):
    help = "Poll ShopMonkey once for every active connection (of one brand with --tenant) and print a summary."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", help="The brand's slug (default: every brand).")

    def handle(self, *args: object, **options: object) -> None:
        polled = 0
        for tenant in tenants_for(options["tenant"]):  # type: ignore[arg-type]
            with tenant_context(tenant):
                connections = CRMConnection.objects.filter(is_active=True).exclude(
                    api_key=""
                )
                for connection in connections:
                    polled += 1
                    job = intake.connection_poll(connection=connection)
                    label = f"{tenant.slug} / {connection.name}"
                    if job is None:
                        self.stdout.write(f"{label}: skipped, another poll is running.")
                        continue
                    line = (
                        f"{label}: {job.get_status_display()} - {job.pages} page(s), {job.orders_seen} order(s) seen, "
                        f"{job.leads_created} lead(s) created, {job.orders_ignored} ignored, {job.errors} error(s); "
                        f"cursor {job.cursor_after:%Y-%m-%d %H:%M:%S} UTC"
                    )
                    self.stdout.write(
                        self.style.SUCCESS(line)
                        if job.errors == 0
                        else self.style.WARNING(line)
                    )
                    if job.error_detail:
                        self.stdout.write(f"  {job.error_detail.splitlines()[0]}")
        if not polled:
            self.stdout.write("No active connection with an API key to poll.")
