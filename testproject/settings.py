"""Settings of the project the tests, the demo and `manage.py runserver` use."""

import os
from pathlib import Path
from typing import Any

BASE_DIR = Path(__file__).resolve().parent

SECRET_KEY = os.environ.get("DJANGO_SECRET_KEY", "testproject-only-not-a-secret")
DEBUG = os.environ.get("DJANGO_DEBUG", "") == "1"
ALLOWED_HOSTS = ["*"]

INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "django.contrib.staticfiles",
    "rest_framework",
    "drf_spectacular",
    "ipynbsrv_backends",
]

MIDDLEWARE = [
    "django.middleware.security.SecurityMiddleware",
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.middleware.common.CommonMiddleware",
    "django.middleware.csrf.CsrfViewMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
    "django.middleware.clickjacking.XFrameOptionsMiddleware",
]

ROOT_URLCONF = "testproject.urls"

TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "DIRS": [BASE_DIR / "templates"],  # a plain sign-in page for users (accounts/login/)
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

WSGI_APPLICATION = "testproject.wsgi.application"

DATABASES = {
    "default": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": os.environ.get("TESTPROJECT_DB", str(BASE_DIR / "db.sqlite3")),
        # BEGIN IMMEDIATE: concurrent placements queue up instead of failing with "locked".
        "OPTIONS": {"transaction_mode": "IMMEDIATE", "timeout": 20},
        # A file, not memory: tests start other processes that share the database.
        # One per test process, so two test runs on one machine never share it.
        "TEST": {"NAME": os.environ.get("TESTPROJECT_TEST_DB", f"/tmp/ipynbsrv-testproject-test-{os.getpid()}.sqlite3")},
    }
}

# The master's concurrency tests also run on PostgreSQL (scripts/postgres.sh starts one):
# TESTPROJECT_DB_ENGINE=postgresql with TESTPROJECT_PG_PORT (and optionally _HOST, _USER).
if os.environ.get("TESTPROJECT_DB_ENGINE") == "postgresql":
    DATABASES = {
        "default": {
            "ENGINE": "django.db.backends.postgresql",
            "HOST": os.environ.get("TESTPROJECT_PG_HOST", "127.0.0.1"),
            "PORT": os.environ["TESTPROJECT_PG_PORT"],
            "USER": os.environ.get("TESTPROJECT_PG_USER", "postgres"),
            "NAME": os.environ.get("TESTPROJECT_PG_NAME", "ipynbsrv"),
            "TEST": {"NAME": f"ipynbsrv_test_{os.getpid()}"},
        }
    }

USE_TZ = True
TIME_ZONE = "UTC"
STATIC_URL = "static/"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"

IPYNBSRV_BACKENDS: dict[str, Any] = {
    "HOSTAPI_BACKEND_OPTIONS": {},
}
# The demo and the tests' helper processes pass their settings as JSON.
if os.environ.get("IPYNBSRV_BACKENDS_JSON"):
    import json

    IPYNBSRV_BACKENDS = json.loads(os.environ["IPYNBSRV_BACKENDS_JSON"])

LOGGING = {
    "version": 1,
    "disable_existing_loggers": False,
    "handlers": {"console": {"class": "logging.StreamHandler"}},
    "loggers": {"ipynbsrv_backends": {"handlers": ["console"], "level": "INFO"}},
}
