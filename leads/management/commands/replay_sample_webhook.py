import httpx
from django.core.management.base import BaseCommand, CommandError, CommandParser
from django.urls import reverse
from django_tenants.utils import tenant_context

from leads.management.commands._tenant_option import tenants_for
from leads.models import CRMConnection
from leads.sample_orders import encode, sample_order_event, sign_event
from locations.models import Location


class Command(BaseCommand):
    help = (
        "Send a sample ShopMonkey 'new quote' order, signed with the brand's webhook secret, "
        "to the running server's webhook endpoint. The lead appears once the worker has processed it."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--tenant",
            default="tintworld",
            help="The brand's slug (default: tintworld).",
        )
        parser.add_argument(
            "--server",
            default="http://127.0.0.1:8000",
            help="Where the web server listens.",
        )
        parser.add_argument(
            "--order-id", help="Replay this order id (default: a new order each time)."
        )
        parser.add_argument(
            "--location",
            help="CRM location id to use (default: the first mapped location).",
        )

    def handle(self, *args: object, **options: object) -> None:
        (tenant,) = tenants_for(str(options["tenant"]))
        with tenant_context(tenant):
            connection = (
                CRMConnection.objects.filter(is_active=True)
                .exclude(webhook_secret="")
                .first()
            )
            if connection is None:
                raise CommandError(
                    f"{tenant.name} has no active connection with a webhook secret."
                )
            location_crm_id = options["location"] or (
                Location.objects.filter(is_active=True)
                .exclude(crm_location_id="")
                .values_list("crm_location_id", flat=True)
                .first()
            )
            if not location_crm_id:
                raise CommandError(
                    f"{tenant.name} has no location with a CRM location id."
                )
            path = reverse(
                "leads:shopmonkey_webhook",
                kwargs={"connection_id": connection.public_id},
            )
            secret = connection.webhook_secret
            event = sample_order_event(
                location_crm_id=str(location_crm_id),
                workflow_status_id=connection.lead_workflow_status_id,
                order_id=options["order_id"],  # type: ignore[arg-type]
            )
        host = tenant.get_primary_domain().domain
        body = encode(event)
        headers = {**sign_event(secret=secret, body=body), "host": host}
        url = str(options["server"]).rstrip("/") + path
        try:
            response = httpx.post(url, content=body, headers=headers, timeout=10)
        except httpx.HTTPError as error:
            raise CommandError(
                f"Could not reach {url} ({error}). Is `make run` running?"
            ) from error
        customer = event["data"]["customer"]
        self.stdout.write(
            f"Sent order {event['data']['number']} for {customer['firstName']} {customer['lastName']} "
            f"({event['data']['id']}): HTTP {response.status_code} {response.text}"
        )
        if response.status_code >= 400:
            raise CommandError("The server refused the delivery.")
        port = url.split("//", 1)[1].split("/", 1)[0].rpartition(":")[2]
        self.stdout.write(
            f"The lead appears at http://{host}:{port}/admin/leads/lead/ once the worker has processed it."
        )
