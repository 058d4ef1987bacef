"""Settings of the iNode-like test server. Configured by server.py through env vars."""
import os
from pathlib import Path

STATE_DIR = Path(os.environ["INODE_STATE_DIR"])
ACCESS_TTL = int(os.environ.get("INODE_ACCESS_TTL", "36000"))
REFRESH_TTL = os.environ.get("INODE_REFRESH_TTL") or None  # None: refresh tokens never expire

# Fixed client ids (secrets are random, see server.py).
PASSWORD_CLIENT_ID = "inode-sync-client"
AUTHCODE_CLIENT_ID = "inode-authcode-client"

SECRET_KEY = "test-only-not-secret"
DEBUG = False
ALLOWED_HOSTS = ["127.0.0.1", "localhost"]
USE_TZ = True
TIME_ZONE = "UTC"
ROOT_URLCONF = "inode_site.urls"
DEFAULT_AUTO_FIELD = "django.db.models.AutoField"
STATIC_URL = "/static/"
LOGIN_URL = "/accounts/login/"
LOGIN_REDIRECT_URL = "/api/"

INSTALLED_APPS = [
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.staticfiles",
    "rest_framework",
    "rest_framework.authtoken",
    "oauth2_provider",
    "inode",
]

MIDDLEWARE = [
    "inode.middleware.TokenCounterMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
]

TEMPLATES = [{
    "BACKEND": "django.template.backends.django.DjangoTemplates",
    "APP_DIRS": True,
    "OPTIONS": {"context_processors": [
        "django.template.context_processors.request",
        "django.contrib.auth.context_processors.auth",
    ]},
}]

DATABASES = {"default": {
    "ENGINE": "django.db.backends.sqlite3",
    "NAME": STATE_DIR / "inode.sqlite3",
    # IMMEDIATE: concurrent token requests queue for the write lock instead of failing.
    "OPTIONS": {"timeout": 20, "transaction_mode": "IMMEDIATE"},
}}

# Same hash format as Django's default (pbkdf2_sha256$...), fewer iterations so that a
# token request costs milliseconds, not 0.3 s per secret check.
PASSWORD_HASHERS = ["inode.hashers.FastPBKDF2PasswordHasher"]


def _pkce_required(client_id):
    # DOT 3 requires PKCE for every client by default; here only the auth-code app needs it.
    return client_id == AUTHCODE_CLIENT_ID


OAUTH2_PROVIDER = {
    "ACCESS_TOKEN_EXPIRE_SECONDS": ACCESS_TTL,
    "REFRESH_TOKEN_EXPIRE_SECONDS": int(REFRESH_TTL) if REFRESH_TTL else None,
    "ROTATE_REFRESH_TOKEN": True,
    "REFRESH_TOKEN_GRACE_PERIOD_SECONDS": 0,  # a reused refresh token is invalid_grant at once
    "SCOPES": {"sync": "Synchronise links and devices"},
    "DEFAULT_SCOPES": ["sync"],
    "PKCE_REQUIRED": _pkce_required,
    "ALLOWED_REDIRECT_URI_SCHEMES": ["http", "https"],
    # DOT 3.x allows the password grant (iNode's flow) but logs an RFC 9700 warning on every
    # use; DOT 4.0 plans to flip this default to True, which refuses the password grant.
    "COMPLIANT_BCP_RFC9700_PASSWORD_GRANT": False,
}

REST_FRAMEWORK = {
    "DEFAULT_RENDERER_CLASSES": ["rest_framework.renderers.JSONRenderer"],
    "DEFAULT_PARSER_CLASSES": ["rest_framework.parsers.JSONParser"],
}

LOGGING = {  # server errors (tracebacks) to stderr; request lines come from server.py
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"stderr": {"class": "logging.StreamHandler"}},
    "loggers": {
        "django.request": {"handlers": ["stderr"], "level": "ERROR", "propagate": False},
        # silences the per-request RFC 9700 "password grant is discouraged" warning
        "oauth2_provider": {"handlers": ["stderr"], "level": "ERROR", "propagate": False},
    },
}
