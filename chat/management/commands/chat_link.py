from django.core.management.base import BaseCommand, CommandError, CommandParser
from django_tenants.utils import tenant_context

from chat import services as chat_services
from leads.models import Lead
from tenants.selectors import tenant_get_by_slug


class Command(BaseCommand):
    help = "Print a new chat link for a lead (by id or by email) of one brand."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--tenant", required=True, help="The brand's slug.")
        which = parser.add_mutually_exclusive_group(required=True)
        which.add_argument("--lead", type=int, help="The lead's id.")
        which.add_argument(
            "--email", help="The lead's email (its newest lead when several)."
        )

    def handle(self, *args: object, **options: object) -> None:
        tenant = tenant_get_by_slug(slug=str(options["tenant"]))
        if tenant is None:
            raise CommandError(f"No brand has the slug {options['tenant']!r}.")
        with tenant_context(tenant):
            leads = Lead.objects.order_by("-created_at", "-pk")
            if options["lead"] is not None:
                lead = leads.filter(pk=options["lead"]).first()
                missing = f"No lead with id {options['lead']} at {tenant.name}."
            else:
                email = str(options["email"]).strip().lower()
                lead = leads.filter(email__iexact=email).first()
                missing = f"No lead with email {email!r} at {tenant.name}."
            if lead is None:
                raise CommandError(missing)
            domain = tenant.get_primary_domain()
            url = chat_services.chat_link_for_lead(
                lead=lead, host=domain.domain if domain else ""
            )
        self.stdout.write(url)
