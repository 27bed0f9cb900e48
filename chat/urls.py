from django.urls import path

from chat import api, views

app_name = "chat"

urlpatterns = [
    path("c/<str:token>", views.chat_page, name="page"),
    path(
        "api/chat/<str:token>/messages",
        api.ChatMessagesApi.as_view(),
        name="api_messages",
    ),
    path(
        "api/chat/<str:token>/context", api.ChatContextApi.as_view(), name="api_context"
    ),
    path(
        "api/chat/<str:token>/appointment",
        api.ChatAppointmentApi.as_view(),
        name="api_appointment",
    ),
]
