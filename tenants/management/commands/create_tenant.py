from django.core.management.base import BaseCommand, CommandError, CommandParser

from leadorch.errors import ApplicationError
from tenants import services
from tenants.models import OutboundMode


class Command(BaseCommand):
    help = "Create a brand: its schema, its tables and its host <slug>.<BASE_DOMAIN>."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--name", required=True, help="The brand's name, e.g. 'Tint World'."
        )
        parser.add_argument(
            "--slug",
            required=True,
            help="Lowercase letters, digits and hyphens; names the host.",
        )
        parser.add_argument(
            "--domain",
            action="append",
            default=[],
            help="An extra host for the brand (repeatable).",
        )
        parser.add_argument(
            "--outbound-mode",
            choices=OutboundMode.values,
            default=OutboundMode.DISABLED,
            help="What may be sent to customers (default: disabled).",
        )

    def handle(self, *args: object, **options: object) -> None:
        try:
            services.tenant_ensure_public()  # the platform admin's hosts, on first use
            tenant = services.tenant_create(
                name=str(options["name"]),
                slug=str(options["slug"]),
                domains=options["domain"],  # type: ignore[arg-type]
                outbound_mode=str(options["outbound_mode"]),
            )
        except ApplicationError as error:
            raise CommandError(error.message) from error
        hosts = ", ".join(
            tenant.domains.order_by("-is_primary", "domain").values_list(
                "domain", flat=True
            )
        )
        self.stdout.write(
            self.style.SUCCESS(
                f"Created brand {tenant.name} (schema {tenant.schema_name}) at {hosts}."
            )
        )
