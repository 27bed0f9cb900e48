from typing import Any

from django.apps import AppConfig
from django.db.models.signals import post_delete, post_save


def _forget_webhook_connection(sender: Any, instance: Any, **kwargs: Any) -> None:
    """A saved or deleted connection is read again by the next delivery to it."""
    from leads.webhooks import webhook_connection_forget

    webhook_connection_forget(public_id=instance.public_id)


class LeadsConfig(AppConfig):
    name = "leads"
    verbose_name = "Leads"

    def ready(self) -> None:
        post_save.connect(
            _forget_webhook_connection,
            sender="leads.CRMConnection",
            dispatch_uid="leads.forget_webhook_connection.saved",
        )
        post_delete.connect(
            _forget_webhook_connection,
            sender="leads.CRMConnection",
            dispatch_uid="leads.forget_webhook_connection.deleted",
        )
