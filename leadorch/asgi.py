"""ASGI entry point: HTTP through Django (tenant routing in middleware)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leadorch.settings")

from channels.routing import ProtocolTypeRouter
from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

application = ProtocolTypeRouter({"http": django_asgi_app})
