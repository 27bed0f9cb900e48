from typing import Any

from django.apps import AppConfig
from django.db import connection, transaction
from django.db.models.signals import post_delete, post_save

# The models the assistant's view of a location (chat.ai.context.location_facts) is
# made of.
_LOCATION_FACTS = ("locations.LocationHours", "locations.ServiceOverride")
_BRAND_FACTS = ("locations.ServiceCatalogItem",)


def _forget_location_facts(sender: Any, instance: Any, **kwargs: Any) -> None:
    """Changed hours, prices or services reach the assistant's next answer, once
    the change is committed."""
    from chat.ai.context import location_facts_forget
    from locations.models import Location

    schema_name = connection.schema_name
    location_id = getattr(instance, "location_id", None)
    if location_id is not None:
        location_ids = [location_id]
    else:  # a brand-wide service: every location offers it
        location_ids = list(Location.objects.values_list("pk", flat=True))
    transaction.on_commit(
        lambda: location_facts_forget(
            schema_name=schema_name, location_ids=location_ids
        )
    )


class ChatConfig(AppConfig):
    name = "chat"
    verbose_name = "Chat"

    def ready(self) -> None:
        for model in (*_LOCATION_FACTS, *_BRAND_FACTS):
            for signal, event in ((post_save, "saved"), (post_delete, "deleted")):
                signal.connect(
                    _forget_location_facts,
                    sender=model,
                    dispatch_uid=f"chat.forget_location_facts.{model}.{event}",
                )
