"""ASGI entry point: HTTP through Django (tenant routing in middleware), except
ShopMonkey deliveries, which leads.asgi answers ahead of Django with the same
service and answers; WebSockets through Channels (tenant from the Host header,
origin checked against ALLOWED_HOSTS)."""

import os

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "leadorch.settings")

from channels.routing import ProtocolTypeRouter
from django.core.asgi import get_asgi_application

django_asgi_app = get_asgi_application()

from channels.routing import URLRouter  # noqa: E402 - needs the apps loaded
from channels.security.websocket import AllowedHostsOriginValidator  # noqa: E402

from chat.ai.providers import providers_preload  # noqa: E402
from chat.routing import websocket_urlpatterns  # noqa: E402
from leadorch.channels_tenancy import TenantWebsocketMiddleware  # noqa: E402
from leads.asgi import ShopMonkeyWebhookRoute  # noqa: E402

websocket_app = AllowedHostsOriginValidator(
    TenantWebsocketMiddleware(URLRouter(websocket_urlpatterns))
)

providers_preload()

application = ProtocolTypeRouter(
    {"http": ShopMonkeyWebhookRoute(django_asgi_app), "websocket": websocket_app}
)
