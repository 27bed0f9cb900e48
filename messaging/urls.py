from django.urls import path

from messaging import views

app_name = "messaging"

urlpatterns = [
    path("webhooks/twilio/sms", views.twilio_inbound_sms, name="twilio_inbound"),
    path("webhooks/twilio/status", views.twilio_status, name="twilio_status"),
    path("webhooks/sendgrid/events", views.sendgrid_events, name="sendgrid_events"),
    path("u/<str:token>/", views.unsubscribe, name="unsubscribe"),
]
