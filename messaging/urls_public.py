"""Messaging URLs of the platform host: SendGrid's Event Webhook, which is per account, not per brand.

Each event names its brand (the ``tenant`` custom arg), so one URL serves every brand.
"""

from django.urls import path

from messaging import views

app_name = "messaging"

urlpatterns = [
    path("webhooks/sendgrid/events", views.sendgrid_events, name="sendgrid_events"),
]
