"""Production settings: every deployment choice comes from the environment.

Without DATABASE_URL and CELERY_BROKER_URL the portal runs "embedded": SQLite in DATA_DIR and a
kombu filesystem broker in DATA_DIR/broker, so one machine runs web, worker and beat with no
servers. With them it runs on PostgreSQL (psycopg 3) and Redis or RabbitMQ.
"""

import json
from datetime import timedelta
from pathlib import Path
from urllib.parse import urlsplit

import dj_database_url
from django.core.exceptions import ImproperlyConfigured

from .env import env_bool, env_int, env_list, env_str

BASE_DIR = Path(__file__).resolve().parent.parent.parent
DATA_DIR = Path(env_str("PORTAL_DATA_DIR", str(BASE_DIR / "data")))

DEBUG = env_bool("DEBUG", False)
SECRET_KEY = env_str("SECRET_KEY", required=not DEBUG)
ALLOWED_HOSTS = env_list("ALLOWED_HOSTS", "localhost,127.0.0.1")
CSRF_TRUSTED_ORIGINS = env_list("CSRF_TRUSTED_ORIGINS")

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "django.contrib.humanize",
    "rest_framework",
    "django_filters",
    "drf_spectacular",
    "drf_spectacular_sidecar",
    "guardian",
    "simple_history",
    "django_htmx",
    "axes",
    "csp",
    "django_otp",
    "django_otp.plugins.otp_totp",
    "audit",
    "governance",
    "jit",
    "identity_sources",
    "portal",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "csp.middleware.CSPMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "portal.middleware.RejectNulCharactersMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "portal.middleware.SessionLifetimeMiddleware",
    # Times in the viewer's zone (their profile's, else their browser's); after the session, which keeps it.
    "portal.middleware.TimeZoneMiddleware",
    # The portal's own 404/403 pages for a missing object or a refusal, even with DEBUG on.
    "portal.middleware.FriendlyErrorPagesMiddleware",
    "portal.middleware.NoStoreForSignedInMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
    "django_htmx.middleware.HtmxMiddleware",
    "audit.middleware.AuditContextMiddleware",
    "simple_history.middleware.HistoryRequestMiddleware",
    "portal.middleware.AdminWritesAreStateChangesMiddleware",
    # A database connection lost during a view: 503 "try again" (portal/faults.py), not a 500.
    "portal.faults.DatabaseUnavailableMiddleware",
    # Last, as django-axes asks: it turns a lock-out flagged during sign-in into the lock-out page.
    "axes.middleware.AxesMiddleware",
]

ROOT_URLCONF = "portal.urls"
WSGI_APPLICATION = "portal.wsgi.application"
ASGI_APPLICATION = "portal.asgi.application"

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
                "portal.context_processors.navigation",
                "portal.context_processors.break_glass_banner",
            ],
        },
    },
]

#
# Database
#
SQLITE_PATH = DATA_DIR / "portal.sqlite3"
DATABASES = {
    "default": dj_database_url.parse(
        env_str("DATABASE_URL", f"sqlite:///{SQLITE_PATH}"),
        conn_max_age=env_int("DB_CONN_MAX_AGE", 60),
        conn_health_checks=True,
    )
}
# Prepared statements on PostgreSQL: a statement run DB_PREPARE_THRESHOLD times on a connection is
# prepared there, and PostgreSQL stops parsing and planning it again. A page's dozen-odd queries spent
# ~5 ms a request in planning; the approval queue's 8-client p95 went from ~200 to ~140 ms (bench/README,
# "Fourth pass"). Behind a pooler in transaction mode that does not track prepared statements (PgBouncer
# before 1.21), set DB_PREPARE_THRESHOLD=0: values are then bound on the server, nothing prepared.
DB_PREPARE_THRESHOLD = env_int("DB_PREPARE_THRESHOLD", 5)
if DATABASES["default"]["ENGINE"] == "django.db.backends.postgresql":
    DATABASES["default"].setdefault("OPTIONS", {}).update(
        server_side_binding=True, prepare_threshold=DB_PREPARE_THRESHOLD or None
    )
if DATABASES["default"]["ENGINE"] == "django.db.backends.sqlite3":
    # IMMEDIATE takes the write lock at BEGIN, so two writers never read the same audit chain head.
    DATABASES["default"]["OPTIONS"] = {"transaction_mode": "IMMEDIATE", "timeout": 20}
    DATABASES["default"]["CONN_MAX_AGE"] = 0
# History tables index only what their readers use (governance.models.Grant): rows are read by object.
SIMPLE_HISTORY_DATE_INDEX = False
# The owner role `manage.py migrate` connects as (audit/management/commands/migrate.py); the web and the
# workers use DATABASE_URL, a role that may only SELECT and INSERT on the audit trail (README, "Two database roles").
MIGRATE_DATABASE_URL = env_str("MIGRATE_DATABASE_URL", "")
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTHENTICATION_BACKENDS = [
    # First: refuses a sign-in of a locked-out account or client before any password is checked.
    "axes.backends.AxesStandaloneBackend",
    # Django's ModelBackend, refusing passwords when LOCAL_PASSWORDS is off (but for the break-glass login).
    "identity_sources.sso.backends.LocalPasswordBackend",
    # OpenID Connect sign-in (inert until OIDC_ISSUER and OIDC_RP_CLIENT_ID are set).
    "identity_sources.sso.backends.SsoBackend",
    "guardian.backends.ObjectPermissionBackend",
]
AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "dashboard"
LOGOUT_REDIRECT_URL = "login"
ANONYMOUS_USER_NAME = None  # django-guardian: no anonymous object permissions

LANGUAGE_CODE = "en-gb"
TIME_ZONE = env_str("TIME_ZONE", "UTC")
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = Path(env_str("STATIC_ROOT", str(DATA_DIR / "staticfiles")))
STATICFILES_DIRS = [BASE_DIR / "static"]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedManifestStaticFilesStorage"},
}

#
# Security (production defaults; `check --deploy --fail-level WARNING` passes with these)
#
SECURE_SSL_REDIRECT = env_bool("SECURE_SSL_REDIRECT", not DEBUG)
# Load balancers probe /health/ over plain HTTP: answer it rather than redirect it to https.
SECURE_REDIRECT_EXEMPT = [r"^health/(ready/)?$"]
# Proxies in front of the portal: their headers are believed only when configured. With N proxies the
# client's address is the N-th X-Forwarded-For entry from the right (audit.middleware.client_ip); the
# entries left of it are whatever the client sent. AUDIT_TRUST_X_FORWARDED_FOR=1 (older name) means one.
TRUSTED_PROXY_COUNT = env_int("TRUSTED_PROXY_COUNT", 1 if env_bool("AUDIT_TRUST_X_FORWARDED_FOR", False) else 0)
if TRUSTED_PROXY_COUNT < 0:
    raise ImproperlyConfigured("TRUSTED_PROXY_COUNT must be 0 (no proxy) or more.")
SECURE_PROXY_SSL_HEADER = (
    ("HTTP_X_FORWARDED_PROTO", "https") if env_bool("BEHIND_PROXY", TRUSTED_PROXY_COUNT > 0) else None
)
SECURE_HSTS_SECONDS = env_int("SECURE_HSTS_SECONDS", 0 if DEBUG else 31536000)
SECURE_HSTS_INCLUDE_SUBDOMAINS = not DEBUG
SECURE_HSTS_PRELOAD = env_bool("SECURE_HSTS_PRELOAD", not DEBUG)
SECURE_CONTENT_TYPE_NOSNIFF = True
SESSION_COOKIE_SECURE = not DEBUG
CSRF_COOKIE_SECURE = not DEBUG
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"
SECURE_REFERRER_POLICY = "same-origin"
# Content-Security-Policy (django-csp): every asset is vendored and served from here, no inline script
# or style; the admin and the API docs live with it too.
CONTENT_SECURITY_POLICY = {
    "DIRECTIVES": {
        "default-src": ["'self'"],
        "img-src": ["'self'", "data:"],  # Pico draws its checkboxes and select arrows as data: SVG
        "base-uri": ["'self'"],
        "form-action": ["'self'"],
        "frame-ancestors": ["'none'"],
        "object-src": ["'none'"],
    }
}
#
# Sessions: signed out after SESSION_IDLE_TIMEOUT_SECONDS without a request, and at the latest
# SESSION_ABSOLUTE_LIFETIME_SECONDS after signing in (portal.middleware.SessionLifetimeMiddleware).
#
SESSION_IDLE_TIMEOUT_SECONDS = env_int("SESSION_IDLE_TIMEOUT_SECONDS", 30 * 60)
SESSION_ABSOLUTE_LIFETIME_SECONDS = env_int("SESSION_ABSOLUTE_LIFETIME_SECONDS", 12 * 60 * 60)
if not 0 < SESSION_IDLE_TIMEOUT_SECONDS <= SESSION_ABSOLUTE_LIFETIME_SECONDS:
    raise ImproperlyConfigured("SESSION_IDLE_TIMEOUT_SECONDS must be above 0 and at most the absolute lifetime.")
SESSION_COOKIE_AGE = SESSION_ABSOLUTE_LIFETIME_SECONDS
SESSION_ENGINE = "portal.sessions"  # Django's database sessions, read with SQL built once per process
#
# Sign-in throttling (django-axes): AXES_FAILURE_LIMIT failed sign-ins for one login, or from one
# client address, lock that login or address out for AXES_COOLOFF_MINUTES; each lock-out is audited.
#
AXES_FAILURE_LIMIT = env_int("AXES_FAILURE_LIMIT", 5)
AXES_COOLOFF_TIME = timedelta(minutes=env_int("AXES_COOLOFF_MINUTES", 15))
AXES_LOCKOUT_PARAMETERS = ["username", "ip_address"]
AXES_LOCKOUT_TEMPLATE = "registration/locked_out.html"
AXES_CLIENT_IP_CALLABLE = "audit.middleware.client_ip"  # the same address the audit trail records
AXES_DISABLE_ACCESS_LOG = True  # successful sign-ins are in the audit trail already
AXES_ENABLE_ADMIN = False  # no unaudited way to lift a lock in the admin; `manage.py axes_reset_username`
AXES_VERBOSE = False
# The SSO callback is never counted or locked: the provider vouched for whoever reaches it.
AXES_WHITELIST_CALLABLE = "identity_sources.sso.throttling.sso_callback_exempt"
#
# Cache: API throttling counts requests here, so production with several processes sets CACHE_URL
# (redis://host:6379/1); without it each process counts on its own (local memory).
#
CACHE_URL = env_str("CACHE_URL", "")
CACHES = {
    "default": (
        {"BACKEND": "django.core.cache.backends.redis.RedisCache", "LOCATION": CACHE_URL}
        if CACHE_URL
        else {"BACKEND": "django.core.cache.backends.locmem.LocMemCache"}
    )
}

#
# Email: every notification leaves through the outbox, then this backend.
#
EMAIL_BACKEND = env_str("EMAIL_BACKEND", "django.core.mail.backends.smtp.EmailBackend")
EMAIL_FILE_PATH = env_str("EMAIL_FILE_PATH", str(DATA_DIR / "mail"))
EMAIL_HOST = env_str("EMAIL_HOST", "localhost")
EMAIL_PORT = env_int("EMAIL_PORT", 25)
EMAIL_HOST_USER = env_str("EMAIL_HOST_USER", "")
EMAIL_HOST_PASSWORD = env_str("EMAIL_HOST_PASSWORD", "")
EMAIL_USE_TLS = env_bool("EMAIL_USE_TLS", False)
# Seconds an SMTP connect or reply may take: a dead mail host fails the delivery (retried) rather than hang it.
EMAIL_TIMEOUT = env_int("EMAIL_TIMEOUT", 10)
DEFAULT_FROM_EMAIL = env_str("DEFAULT_FROM_EMAIL", "access-portal@localhost")
PORTAL_BASE_URL = env_str("PORTAL_BASE_URL", "http://localhost:8000")

#
# Celery. The database is the queue of record (outbox, sweeps); the broker only wakes workers.
#
BROKER_DIR = DATA_DIR / "broker"
CELERY_BROKER_URL = env_str("CELERY_BROKER_URL", "filesystem://")
# task_time_limit: a worker kills a task still running after this many seconds; the soft limit below
# it raises SoftTimeLimitExceeded in the task first, so it can end cleanly.
CELERY_TASK_TIME_LIMIT = env_int("CELERY_TASK_TIME_LIMIT", 300)
CELERY_TASK_SOFT_TIME_LIMIT = env_int(
    "CELERY_TASK_SOFT_TIME_LIMIT", max(CELERY_TASK_TIME_LIMIT - 30, CELERY_TASK_TIME_LIMIT * 9 // 10)
)
if not 0 < CELERY_TASK_SOFT_TIME_LIMIT < CELERY_TASK_TIME_LIMIT:
    raise ImproperlyConfigured("CELERY_TASK_SOFT_TIME_LIMIT must be above 0 and below CELERY_TASK_TIME_LIMIT.")
# The queued-import task's own hard limit (its soft limit is 30 s less): a big file takes minutes.
IMPORT_TASK_TIME_LIMIT = env_int("IMPORT_TASK_TIME_LIMIT", 1150)
if IMPORT_TASK_TIME_LIMIT <= 60:
    raise ImproperlyConfigured("IMPORT_TASK_TIME_LIMIT must be above 60 seconds.")
# A task unacknowledged this long is handed to another worker (acks_late): keep it above the longest
# hard limit of any task, so a task still running is never run twice at once.
BROKER_VISIBILITY_TIMEOUT = max(CELERY_TASK_TIME_LIMIT, IMPORT_TASK_TIME_LIMIT) + 300
# Bounded broker time: a broker that refuses, or accepts and never answers, costs whoever talks to it
# these many seconds, never forever (redis-py waits forever without a socket timeout). Requests never
# talk to it: the outbox's wake-up is sent from a thread with its own tighter bounds (audit/outbox.py).
BROKER_CONNECT_TIMEOUT_SECONDS = env_int("BROKER_CONNECT_TIMEOUT_SECONDS", 2)
BROKER_SOCKET_TIMEOUT_SECONDS = env_int("BROKER_SOCKET_TIMEOUT_SECONDS", 10)
CELERY_BROKER_CONNECTION_TIMEOUT = BROKER_CONNECT_TIMEOUT_SECONDS
CELERY_BROKER_TRANSPORT_OPTIONS = (
    {
        "data_folder_in": str(BROKER_DIR / "queue"),
        "data_folder_out": str(BROKER_DIR / "queue"),
        "processed_folder": str(BROKER_DIR / "processed"),
        "control_folder": str(BROKER_DIR / "control"),
        "store_processed": False,
    }
    if CELERY_BROKER_URL.startswith("filesystem")
    else {"visibility_timeout": BROKER_VISIBILITY_TIMEOUT}
)
if CELERY_BROKER_URL.startswith(("redis", "rediss", "sentinel")):
    CELERY_BROKER_TRANSPORT_OPTIONS |= {
        "socket_connect_timeout": BROKER_CONNECT_TIMEOUT_SECONDS,
        "socket_timeout": BROKER_SOCKET_TIMEOUT_SECONDS,
    }
if CELERY_BROKER_URL.startswith("filesystem"):
    (BROKER_DIR / "queue").mkdir(parents=True, exist_ok=True)
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_IGNORE_RESULT = True
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_TIMEZONE = "UTC"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BEAT_SCHEDULE_FILENAME = str(DATA_DIR / "celerybeat-schedule")
# The beat schedule lives in one place: portal/celery.py (BEAT_SCHEDULE).

#
# Outbox
#
OUTBOX_MAX_ATTEMPTS = env_int("OUTBOX_MAX_ATTEMPTS", 8)
# A system whose target failed this many calls in a row is not called for this long (governance.connectors.circuit).
CONNECTOR_CIRCUIT_TRIP_AFTER = env_int("CONNECTOR_CIRCUIT_TRIP_AFTER", 5)
CONNECTOR_CIRCUIT_OPEN_SECONDS = env_int("CONNECTOR_CIRCUIT_OPEN_SECONDS", 60)
OUTBOX_BACKOFF_BASE_SECONDS = env_int("OUTBOX_BACKOFF_BASE_SECONDS", 10)
OUTBOX_BACKOFF_MAX_SECONDS = env_int("OUTBOX_BACKOFF_MAX_SECONDS", 3600)
OUTBOX_BATCH_SIZE = env_int("OUTBOX_BATCH_SIZE", 100)
# The on-commit wake-up's one attempt (connect, then each socket read or write) gives up after this.
OUTBOX_WAKE_TIMEOUT_SECONDS = 1
# A claimed message is not handed out again for this long: past the hard limit of the task delivering
# it, so only a worker that died (its attempt already counted) leaves it to be claimed again.
OUTBOX_CLAIM_SECONDS = CELERY_TASK_TIME_LIMIT + 60

#
# REST framework
#
REST_FRAMEWORK = {
    "DEFAULT_VERSIONING_CLASS": "rest_framework.versioning.URLPathVersioning",
    "ALLOWED_VERSIONS": ["v1"],
    # Bearer tokens (governance.models.ApiToken: people's scripts, machines, agents) or the browser's session.
    "DEFAULT_AUTHENTICATION_CLASSES": [
        "governance.api.authentication.ApiTokenAuthentication",
        "rest_framework.authentication.SessionAuthentication",
    ],
    # A token reaches only the endpoints that name the scope it needs, and a machine only those built for it.
    "DEFAULT_PERMISSION_CLASSES": [
        "rest_framework.permissions.IsAuthenticated",
        "governance.api.permissions.TokenScopes",
    ],
    "DEFAULT_FILTER_BACKENDS": ["django_filters.rest_framework.DjangoFilterBackend"],
    # drf-spectacular, with the error answers every operation documents (400/401/403/404/409/429).
    "DEFAULT_SCHEMA_CLASS": "governance.api.schema.AutoSchema",
    "EXCEPTION_HANDLER": "governance.api.exceptions.exception_handler",
    # Page numbers counted up to 10,000 ("count_capped" beyond); the big lists page by cursor (NewestFirst).
    "DEFAULT_PAGINATION_CLASS": "audit.kernel.pagination.CappedPageNumberPagination",
    "PAGE_SIZE": 50,
    # Over the rate: 429 with Retry-After and code "throttled" (governance.api.exceptions). Rates are per
    # API token, per user or machine identity (all its tokens together), or per client address
    # (audit.middleware.client_ip) for callers not signed in, counted in the cache (CACHE_URL).
    "DEFAULT_THROTTLE_CLASSES": [
        "governance.api.throttling.AnonRateThrottle",
        "governance.api.throttling.UserRateThrottle",
        "governance.api.throttling.TokenRateThrottle",
    ],
    "DEFAULT_THROTTLE_RATES": {
        "anon": env_str("API_THROTTLE_ANON_RATE", "60/minute"),
        "user": env_str("API_THROTTLE_USER_RATE", "600/minute"),
        "token": env_str("API_THROTTLE_TOKEN_RATE", "600/minute"),
        "connector_callback": env_str("API_THROTTLE_CONNECTOR_CALLBACK_RATE", "6000/minute"),
    },
}
FILTERS_EMPTY_CHOICE_LABEL = "Any"
FILTERS_NULL_CHOICE_LABEL = "None"

SPECTACULAR_SETTINGS = {
    "TITLE": "Access portal API",
    "VERSION": "v1",
    "SWAGGER_UI_DIST": "SIDECAR",
    "SWAGGER_UI_FAVICON_HREF": "SIDECAR",
    "REDOC_DIST": "SIDECAR",
    "SCHEMA_PATH_PREFIX": r"/api/v1",
    # The map of the API is for its callers: signed-in people and authenticated machines.
    "SERVE_PERMISSIONS": ["rest_framework.permissions.IsAuthenticated"],
    "ENUM_NAME_OVERRIDES": {
        "IdentityKindEnum": "governance.choices.IdentityKind",
        "IdentityStatusEnum": "governance.choices.IdentityStatus",
        "LifecycleStatusEnum": "governance.choices.LifecycleStatus",
        "RiskLevelEnum": "governance.choices.RiskTier",
        "GrantKindEnum": "governance.choices.GrantKind",
        "GrantStatusEnum": "governance.choices.GrantStatus",
        "FindingKindEnum": "governance.choices.FindingKind",
        "FindingStatusEnum": "governance.choices.FindingStatus",
        "RequestStatusEnum": "jit.choices.RequestStatus",
        "StageStatusEnum": "jit.choices.StageStatus",
        "DecisionEnum": "jit.choices.Decision",
        "DelegationStatusEnum": "jit.choices.DelegationStatus",
    },
}

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {"plain": {"format": "%(asctime)s %(levelname)s %(name)s %(message)s"}},
    "handlers": {"console": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "root": {"handlers": ["console"], "level": env_str("LOG_LEVEL", "INFO")},
}

#
# Domain settings
#
# /health/ and /health/ready/ report a broker that has not answered within this long as down.
HEALTH_BROKER_TIMEOUT_SECONDS = 1
EXPIRY_SWEEP_INTERVAL = timedelta(minutes=1)
# Default and maximum grant durations by risk tier (an entitlement may set a shorter maximum).
MAX_DURATION_BY_RISK = {
    "low": timedelta(days=env_int("MAX_DAYS_LOW", 30)),
    "medium": timedelta(days=env_int("MAX_DAYS_MEDIUM", 7)),
    "high": timedelta(hours=env_int("MAX_HOURS_HIGH", 24)),
    "critical": timedelta(hours=env_int("MAX_HOURS_CRITICAL", 4)),
}
DEFAULT_DURATION_BY_RISK = {
    "low": timedelta(days=7),
    "medium": timedelta(days=1),
    "high": timedelta(hours=8),
    "critical": timedelta(hours=1),
}
# The riskiest tier each identity kind may hold before hygiene flags excessive privilege.
MAX_RISK_TIER_BY_KIND = {
    "human": "critical",
    "service_account": "high",
    "api_key": "medium",
    "workload": "high",
    "ai_agent": "medium",
}
HYGIENE_STALE_AFTER_DAYS = env_int("HYGIENE_STALE_AFTER_DAYS", 90)
HYGIENE_UNUSED_GRANT_DAYS = env_int("HYGIENE_UNUSED_GRANT_DAYS", 60)
# Files above this size are imported by a worker (the page follows the job), not inside the request.
IMPORT_INLINE_MAX_BYTES = env_int("IMPORT_INLINE_MAX_BYTES", 2 * 1024 * 1024)
# Access a system owner must put in place or remove by hand (the manual connector): chased, then escalated.
MANUAL_WORK_REMIND_AFTER = timedelta(hours=env_int("MANUAL_WORK_REMIND_AFTER_HOURS", 8))
MANUAL_WORK_ESCALATE_AFTER = timedelta(hours=env_int("MANUAL_WORK_ESCALATE_AFTER_HOURS", 24))

#
# Just-in-time access
#
JIT_MIN_QUORUM_BY_RISK = {"low": 1, "medium": 1, "high": 1, "critical": 2}
JIT_EXTRA_STAGE_GROUP = env_str("JIT_EXTRA_STAGE_GROUP", "approver")  # SoD and step-up stages
JIT_FALLBACK_GROUP = env_str("JIT_FALLBACK_GROUP", "admin")  # when nobody else may approve; escalation
JIT_MAX_START_AHEAD = timedelta(days=env_int("JIT_MAX_START_AHEAD_DAYS", 14))
JIT_ACTIVATION_WINDOW_BY_RISK = {"high": timedelta(hours=8), "critical": timedelta(hours=2)}
JIT_RENEWAL_WINDOW = timedelta(days=env_int("JIT_RENEWAL_WINDOW_DAYS", 30))
JIT_RENEWAL_STEP_UP_AFTER = env_int("JIT_RENEWAL_STEP_UP_AFTER", 3)  # renewals in the window
JIT_CUMULATIVE_STEP_UP_AFTER = timedelta(days=env_int("JIT_CUMULATIVE_STEP_UP_DAYS", 14))
JIT_REMIND_AFTER = timedelta(hours=env_int("JIT_REMIND_AFTER_HOURS", 4))
JIT_ESCALATE_AFTER = timedelta(hours=env_int("JIT_ESCALATE_AFTER_HOURS", 24))
JIT_TIMEOUT_AFTER = timedelta(hours=env_int("JIT_TIMEOUT_AFTER_HOURS", 72))
JIT_EXPIRY_WARNING_LEAD = timedelta(minutes=env_int("JIT_EXPIRY_WARNING_MINUTES", 60))
JIT_SWEEP_BATCH_SIZE = env_int("JIT_SWEEP_BATCH_SIZE", 1000)

#
# Audit checkpoints: the chain's head signed with Ed25519 every few minutes and kept outside the
# database (README, "The audit trail"). Keys are base64 (raw 32 bytes) or PEM; a missing signing key
# is logged by the task and shown by /health/, it never stops the web.
#
AUDIT_CHECKPOINT_SIGNING_KEY = env_str("AUDIT_CHECKPOINT_SIGNING_KEY", "")
# Public keys checkpoints may be signed with, comma-separated: keep a rotated-out key listed.
AUDIT_CHECKPOINT_VERIFY_KEYS = env_list("AUDIT_CHECKPOINT_VERIFY_KEYS")
# Development only: without a signing key, one is made and kept here (never in production).
AUDIT_CHECKPOINT_DEV_KEY_FILE = DATA_DIR / "audit-checkpoint-dev-key.pem" if DEBUG else None
AUDIT_CHECKPOINT_STORE = env_str("AUDIT_CHECKPOINT_STORE", "audit.checkpoints.DirectoryCheckpointStore")
AUDIT_CHECKPOINT_DIR = Path(env_str("AUDIT_CHECKPOINT_DIR", str(DATA_DIR / "audit-checkpoints")))
AUDIT_CHECKPOINT_INTERVAL = timedelta(seconds=env_int("AUDIT_CHECKPOINT_INTERVAL_SECONDS", 300))
# /health/ turns red when the newest checkpoint is older than this (three missed runs).
AUDIT_CHECKPOINT_MAX_AGE = timedelta(
    seconds=env_int("AUDIT_CHECKPOINT_MAX_AGE_SECONDS", 3 * int(AUDIT_CHECKPOINT_INTERVAL.total_seconds()))
)

#
# Retention: delivered outbox rows and read notifications are purged after these many days (0 keeps
# them); pending and dead outbox rows, unread notifications and the audit trail never are.
#
OUTBOX_RETENTION_DAYS = env_int("OUTBOX_RETENTION_DAYS", 30)
NOTIFICATION_RETENTION_DAYS = env_int("NOTIFICATION_RETENTION_DAYS", 90)
RETENTION_BATCH_SIZE = env_int("RETENTION_BATCH_SIZE", 1000)

# Certification: a campaign whose preview holds more items than this is launched by a worker.
CERTIFICATION_LAUNCH_INLINE_MAX = env_int("CERTIFICATION_LAUNCH_INLINE_MAX", 5000)

# Certification on a schedule: reviewers hear of their open items at most once a day, every this many
# hours; undecided items are escalated to the campaign's fallback group when fewer hours than this
# remain before the due date; cadence and change-triggered reviews are due this many days after launch.
CERTIFICATION_REMINDER_HOURS = env_int("CERTIFICATION_REMINDER_HOURS", 48)
CERTIFICATION_ESCALATE_BEFORE_HOURS = env_int("CERTIFICATION_ESCALATE_BEFORE_HOURS", 24)
CERTIFICATION_CADENCE_REVIEW_DAYS = env_int("CERTIFICATION_CADENCE_REVIEW_DAYS", 14)
CERTIFICATION_EVENT_REVIEW_DAYS = env_int("CERTIFICATION_EVENT_REVIEW_DAYS", 14)

# Break-glass: the emergency duration an eligibility gives (default) and the global hard cap no
# eligibility, page or API input can exceed; every activation is reviewed within the review window.
BREAK_GLASS_DEFAULT_DURATION = timedelta(minutes=env_int("BREAK_GLASS_DEFAULT_MINUTES", 60))
BREAK_GLASS_MAX_DURATION = timedelta(minutes=env_int("BREAK_GLASS_MAX_MINUTES", 240))
BREAK_GLASS_REVIEW_WITHIN = timedelta(hours=env_int("BREAK_GLASS_REVIEW_WITHIN_HOURS", 24))
BREAK_GLASS_REMIND_EVERY = timedelta(hours=env_int("BREAK_GLASS_REMIND_EVERY_HOURS", 4))
BREAK_GLASS_SECURITY_GROUP = env_str("BREAK_GLASS_SECURITY_GROUP", "security")
BREAK_GLASS_ELIGIBILITY_WARNING = timedelta(days=env_int("BREAK_GLASS_ELIGIBILITY_WARNING_DAYS", 14))
OTP_TOTP_ISSUER = env_str("OTP_TOTP_ISSUER", "Access portal")

# API tokens: kept as HMAC-SHA256 under this key (a stolen table alone cannot be tried offline); by
# default derived from SECRET_KEY. Their life is bounded by the riskiest access their identity holds.
API_TOKEN_HASH_KEY = env_str("API_TOKEN_HASH_KEY", "") or ""
API_TOKEN_DEFAULT_DAYS = env_int("API_TOKEN_DEFAULT_DAYS", 90)
API_TOKEN_MAX_DAYS_BY_RISK = {"low": 365, "medium": 180, "high": 90, "critical": 30}
API_TOKEN_ROTATION_OVERLAP = timedelta(hours=env_int("API_TOKEN_ROTATION_OVERLAP_HOURS", 24))
# Workload federation: OIDC issuers whose signed JWTs a workload may exchange for a short-lived token
# (governance.services.federation). A JSON list of {"issuer", "audience", "jwks_url" or "jwks_file",
# optional "algorithms" (default RS256, ES256) and "max_token_minutes" (default 60)}.
WORKLOAD_ISSUERS = json.loads(env_str("WORKLOAD_ISSUERS", "") or "[]")
WORKLOAD_JWKS_CACHE_SECONDS = env_int("WORKLOAD_JWKS_CACHE_SECONDS", 300)
# Delegations (jit.models_delegations): how long one may run at most, and how many hops a chain an agent
# declares may have, from the initiator's delegation to the one naming the caller.
DELEGATION_MAX_DAYS = env_int("DELEGATION_MAX_DAYS", 30)
DELEGATION_MAX_DEPTH = env_int("DELEGATION_MAX_DEPTH", 3)
# Signed callbacks of access requests (jit.services.callbacks): https only unless allowed (local
# development), and, when set, only to these hosts (lower case).
REQUEST_CALLBACK_ALLOW_HTTP = env_bool("REQUEST_CALLBACK_ALLOW_HTTP", DEBUG)
REQUEST_CALLBACK_HOSTS = [host.lower() for host in env_list("REQUEST_CALLBACK_HOSTS")]

# Connectors (governance.connectors). Secrets in their settings are encrypted with these Fernet keys,
# newest first (`python -c "from cryptography.fernet import Fernet; print(Fernet.generate_key().decode())"`);
# rotate by putting a new key first and running `manage.py connector_secrets_rotate`. Required in
# production; in development the key is derived from SECRET_KEY.
CONNECTOR_SECRET_KEYS = env_list("CONNECTOR_SECRET_KEYS")
if not DEBUG and not CONNECTOR_SECRET_KEYS:
    raise ImproperlyConfigured("Set CONNECTOR_SECRET_KEYS (comma-separated Fernet keys, newest first).")
# Webhook connectors: https only unless allowed (local development and tests), and, when set, only these hosts.
CONNECTOR_WEBHOOK_ALLOW_HTTP = env_bool("CONNECTOR_WEBHOOK_ALLOW_HTTP", DEBUG)
CONNECTOR_WEBHOOK_HOSTS = [host.lower() for host in env_list("CONNECTOR_WEBHOOK_HOSTS")]
# How long a connector waits for its target before the attempt counts as failed (and is retried).
CONNECTOR_TIMEOUT_SECONDS = env_int("CONNECTOR_TIMEOUT_SECONDS", 10)
# Failed revocations are asked again by the sweep this often, until the target confirms.
REVOKE_FAILED_RETRY_MINUTES = env_int("REVOKE_FAILED_RETRY_MINUTES", 30)
# Reconciliation: each reachable system's holdings are compared with the grants in force this often.
RECONCILE_INTERVAL_MINUTES = env_int("RECONCILE_INTERVAL_MINUTES", 60)

#
# Single sign-on with OpenID Connect (identity_sources.sso, on mozilla-django-oidc). On when OIDC_ISSUER and
# OIDC_RP_CLIENT_ID are set. Endpoints come from the issuer's discovery document (fetched once, cached);
# an OIDC_OP_*_ENDPOINT variable overrides one where a provider's document is wrong or unreachable.
#
OIDC_ISSUER = (env_str("OIDC_ISSUER", "") or "").rstrip("/")
OIDC_PROVIDER_NAME = env_str("OIDC_PROVIDER_NAME", "your organisation")
OIDC_RP_CLIENT_ID = env_str("OIDC_RP_CLIENT_ID", "")
OIDC_RP_CLIENT_SECRET = env_str("OIDC_RP_CLIENT_SECRET", "")
OIDC_RP_SIGN_ALGO = env_str("OIDC_RP_SIGN_ALGO", "RS256")
OIDC_RP_SCOPES = env_str("OIDC_RP_SCOPES", "openid email profile")
for _endpoint in ("AUTHORIZATION", "TOKEN", "USER", "JWKS", "END_SESSION"):
    if env_str(f"OIDC_OP_{_endpoint}_ENDPOINT"):
        globals()[f"OIDC_OP_{_endpoint}_ENDPOINT"] = env_str(f"OIDC_OP_{_endpoint}_ENDPOINT")
OIDC_USE_PKCE = True
OIDC_USE_NONCE = True
OIDC_STORE_ID_TOKEN = True  # the id_token_hint that ends the provider's session at sign-out
OIDC_TIMEOUT = env_int("OIDC_TIMEOUT_SECONDS", 10)
OIDC_CLOCK_SKEW_SECONDS = env_int("OIDC_CLOCK_SKEW_SECONDS", 60)
OIDC_DISCOVERY_CACHE_SECONDS = env_int("OIDC_DISCOVERY_CACHE_SECONDS", 3600)
OIDC_AUTHENTICATE_CLASS = "identity_sources.sso.views.SsoStartView"
OIDC_CALLBACK_CLASS = "identity_sources.sso.views.SsoCallbackView"
LOGIN_REDIRECT_URL_FAILURE = "login"
# First sign-in only: a person whose (issuer, sub) is not linked yet is matched to an active human Identity
# by a verified e-mail in one of these domains. Empty: nobody is matched; an admin links them (no login is made).
OIDC_LINK_EMAIL_DOMAINS = [d.lower().lstrip("@") for d in env_list("OIDC_LINK_EMAIL_DOMAINS")]
# Roles from the provider's group claim: {"provider group": "portal role"}. The roles named here are kept by
# the provider (given and taken at each sign-in); the others stay with the portal. Empty: all stay with the portal.
OIDC_GROUPS_CLAIM = env_str("OIDC_GROUPS_CLAIM", "groups")
try:
    OIDC_ROLE_MAP = json.loads(env_str("OIDC_ROLE_MAP", "{}") or "{}")
except ValueError as exc:
    raise ImproperlyConfigured(f'OIDC_ROLE_MAP must be JSON like {{"provider group": "portal role"}}: {exc}') from exc
# Local passwords: "off" refuses every password sign-in but the break-glass login's (audited each time).
LOCAL_PASSWORDS = (env_str("LOCAL_PASSWORDS", "on") or "on").lower() not in ("off", "0", "false", "no")
BREAK_GLASS_USERNAME = env_str("BREAK_GLASS_USERNAME", "")
# First sign-in by e-mail needs the provider to say it verified the address (`email_verified: true`);
# off only for a provider that never sends the claim but owns the domain (Entra ID work accounts).
OIDC_REQUIRE_EMAIL_VERIFIED = env_bool("OIDC_REQUIRE_EMAIL_VERIFIED", True)

#
# SCIM 2.0 provisioning (identity_sources.scim, on django-scim2) at /scim/v2/: identity providers push
# joiners, movers and leavers with a SCIM source's own bearer token (`manage.py scim_source create NAME`).
#
SCIM_SERVICE_PROVIDER = {
    "USER_MODEL_GETTER": "identity_sources.scim.settings_hooks.user_model",
    "GROUP_MODEL": "identity_sources.models_scim.ScimGroup",
    "USER_ADAPTER": "identity_sources.scim.adapters.ScimUserAdapter",
    "GROUP_ADAPTER": "identity_sources.scim.adapters.ScimGroupAdapter",
    "USER_FILTER_PARSER": "identity_sources.scim.filters.ScimUserFilter",
    "GROUP_FILTER_PARSER": "identity_sources.scim.filters.ScimGroupFilter",
    "SERVICE_PROVIDER_CONFIG_MODEL": "identity_sources.scim.schemas.ServiceProviderConfig",
    "BASE_LOCATION_GETTER": "identity_sources.scim.settings_hooks.base_location",
    "GET_EXTRA_MODEL_FILTER_KWARGS_GETTER": "identity_sources.scim.views.source_filter_kwargs_getter",
    "AUTH_CHECK_MIDDLEWARE": "identity_sources.scim.auth.ScimBearerAuth",
    # Locations are built from the request's own host; this is only the fallback outside a request.
    "NETLOC": env_str("SCIM_NETLOC", "localhost:8000"),
    "SCHEME": env_str("SCIM_SCHEME", "https"),
    "DOCUMENTATION_URI": None,
    "AUTHENTICATION_SCHEMES": [
        {
            "type": "oauthbearertoken",
            "name": "Bearer token",
            "description": "A SCIM source's token (scim_...), made with `manage.py scim_source create NAME`.",
            "primary": True,
        }
    ],
    "WWW_AUTHENTICATE_HEADER": 'Bearer realm="scim"',
}
# Sign-out posts to the portal, which sends the browser on to the provider's end_session_endpoint: a form's
# redirect, which the pages' CSP form-action must allow.
for _url in (OIDC_ISSUER, env_str("OIDC_OP_END_SESSION_ENDPOINT", "")):
    _origin = "{0.scheme}://{0.netloc}".format(urlsplit(_url)) if _url else ""
    if _origin and _origin not in CONTENT_SECURITY_POLICY["DIRECTIVES"]["form-action"]:
        CONTENT_SECURITY_POLICY["DIRECTIVES"]["form-action"].append(_origin)
