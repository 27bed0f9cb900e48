from django.urls import path

from leads import views

app_name = "leads"

urlpatterns = [
    path(
        "webhooks/shopmonkey/<uuid:connection_id>/",
        views.shopmonkey_webhook,
        name="shopmonkey_webhook",
    ),
]
