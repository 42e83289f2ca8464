"""Minimal Django settings of the ``ipynbsrv_hostapi`` command (and of :mod:`.wsgi`).

No database, no sessions, no admin: just the host API at the root URL. The command fills
the environment variables read here; a WSGI server of your own can do the same:

``IPYNBSRV_HOSTAPI_TOKEN``
    The token callers must present (required unless the insecure flag below is set).
``IPYNBSRV_HOSTAPI_BACKEND``
    Dotted path of the backend class (default ``ipynbsrv_backends.backends.Docker``).
``IPYNBSRV_HOSTAPI_BACKEND_ARGS``
    Its keyword arguments as a JSON object (default ``{}``).
``IPYNBSRV_HOSTAPI_INSECURE_NO_TOKEN``
    ``1`` serves without any token: local development only.
``IPYNBSRV_HOSTAPI_SIGNING_KEY``
    The node's initial signing key: with one, every request must be signed (see
    ``docs/security.md``).
``IPYNBSRV_HOSTAPI_STATE_DIR``
    Where rotated keys and seen nonces are kept, shared by the workers.
``IPYNBSRV_HOSTAPI_SIGNATURE_WINDOW``
    Seconds a signed request's timestamp may be off the node's clock (default 60).
``IPYNBSRV_HOSTAPI_LOG_LEVEL``
    Log level of the package's loggers (default ``INFO``).

``DEBUG`` is always off: Django's debug pages would show request data to the network.
"""

from __future__ import annotations

import json
import os
import secrets

# Nothing is signed (no sessions, no CSRF cookies), so a per-process random key will do.
SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY") or secrets.token_urlsafe(50)
DEBUG = False
# Nodes are reached by address; the bearer token, not the Host header, is the protection.
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "rest_framework",
    "drf_spectacular",
    "ipynbsrv_backends",
]
MIDDLEWARE: list[str] = []
ROOT_URLCONF = "ipynbsrv_backends.hostapi.root_urls"
DATABASES: dict[str, dict[str, str]] = {}
USE_TZ = True
TIME_ZONE = "UTC"
USE_I18N = False
# Host API bodies are small JSON objects: anything larger is refused with 413 unread.
DATA_UPLOAD_MAX_MEMORY_SIZE = 1024 * 1024

# No django.contrib.auth here: the host API has no user accounts.
REST_FRAMEWORK = {
    "UNAUTHENTICATED_USER": None,
    "UNAUTHENTICATED_TOKEN": None,
}

IPYNBSRV_BACKENDS = {
    "HOSTAPI_BACKEND": os.environ.get("IPYNBSRV_HOSTAPI_BACKEND") or "ipynbsrv_backends.backends.Docker",
    "HOSTAPI_BACKEND_OPTIONS": json.loads(os.environ.get("IPYNBSRV_HOSTAPI_BACKEND_ARGS") or "{}"),
    "HOSTAPI_INSECURE_NO_TOKEN": os.environ.get("IPYNBSRV_HOSTAPI_INSECURE_NO_TOKEN") == "1",
    "HOSTAPI_SIGNATURE_WINDOW": int(os.environ.get("IPYNBSRV_HOSTAPI_SIGNATURE_WINDOW") or 60),
}

_LOG_LEVEL = os.environ.get("IPYNBSRV_HOSTAPI_LOG_LEVEL", "INFO").upper()
LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "formatters": {
        "plain": {"format": "%(asctime)s [%(process)d] [%(levelname)s] %(name)s: %(message)s"},
    },
    "handlers": {"stderr": {"class": "logging.StreamHandler", "formatter": "plain"}},
    "loggers": {
        "ipynbsrv_backends": {"handlers": ["stderr"], "level": _LOG_LEVEL, "propagate": False},
        "django": {"handlers": ["stderr"], "level": "WARNING", "propagate": False},
    },
}
