"""Test settings: the real settings, with speed and isolation overrides only."""

import os

from leadorch.settings import *  # noqa: F403
from leadorch.settings import DATABASES, Q_CLUSTER

# One test database per run, so that two runs on one server (two terminals, CI and a
# developer) do not drop each other's database.
DATABASES["default"]["TEST"] = {
    "NAME": f"test_{DATABASES['default']['NAME']}_{os.getpid()}"
}

DEBUG = False
PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]
# Queued tasks run in-process, at once, so tests see their effects.
Q_CLUSTER = {**Q_CLUSTER, "sync": True}
CACHES = {
    "default": {
        "BACKEND": "django.core.cache.backends.locmem.LocMemCache",
        "KEY_FUNCTION": "django_tenants.cache.make_key",
        "REVERSE_KEY_FUNCTION": "django_tenants.cache.reverse_key",
    }
}
CHANNEL_LAYERS = {
    "default": {"BACKEND": "leadorch.channel_layers.InMemoryChannelLayer"}
}
EMAIL_BACKEND = "django.core.mail.backends.locmem.EmailBackend"
WHITENOISE_USE_FINDERS = True
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "django.contrib.staticfiles.storage.StaticFilesStorage"},
}
# Brands come and go between tests; routing must see that at once.
DOMAIN_CACHE_SECONDS = 0
WEBHOOK_CONNECTION_CACHE_SECONDS = 0
# Catalog and spend changes must be seen by the next answer.
CHAT_CONTEXT_CACHE_SECONDS = 0
AI_SPEND_CACHE_SECONDS = 0
