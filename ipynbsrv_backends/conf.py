"""The app's settings: one dict, ``IPYNBSRV_BACKENDS``, read lazily.

Read values through :data:`app_settings` (``app_settings.HOSTAPI_BACKEND``); never at import
time. The object drops its cache on ``setting_changed`` so ``override_settings`` works.
"""

from __future__ import annotations

import os
from typing import Any

from django.core.signals import setting_changed
from django.dispatch import receiver

SETTING_NAME = "IPYNBSRV_BACKENDS"

DEFAULTS: dict[str, Any] = {
    # The backend classes an admin may pick for a node: short name -> dotted path.
    # Nothing outside this allow-list is ever imported from a form or an API call.
    "BACKEND_CLASSES": {
        "Docker": "ipynbsrv_backends.backends.Docker",
        # Each container a one-replica service of a swarm, through a manager (docs/swarm.md).
        "DockerSwarm": "ipynbsrv_backends.backends.DockerSwarm",
        "HttpRemote": "ipynbsrv_backends.backends.HttpRemote",
        # In this process's memory, no engine: for development and tests (docs: README).
        "Memory": "ipynbsrv_backends.backends.Memory",
    },
    # --- The master -------------------------------------------------------------
    # How new containers are placed: a short name ("round-robin", "random",
    # "least-loaded") or the dotted path of a ServerSelectionAlgorithm subclass.
    "SERVER_SELECTION_ALGORITHM": "least-loaded",
    # A node's health older than this (seconds) is checked again before placing on it.
    "HEALTH_TTL": 30,
    # Users' containers get uid = UID_OFFSET + the Django user's id.
    "UID_OFFSET": 2000,
    # Ports every user container publishes, bound to its node's internal address.
    "CONTAINER_PORTS": [8888],
    # Volumes every user container gets; {uid}, {username} and {name} are filled in.
    # A source without "/" is a named volume (kept when the container is deleted).
    "CONTAINER_VOLUMES": [{"source": "u{uid}-{name}", "target": "/data"}],
    # Options every user container is created with (mem_limit, cpu_limit, pids_limit).
    "CONTAINER_OPTIONS": {},
    # The base URL a container is served under; {username} and {name} are filled in.
    "CONTAINER_BASE_URL": "/notebooks/{username}/{name}/",
    # The most containers one user may have (None: no limit).
    "MAX_CONTAINERS_PER_USER": None,
    # Quotas beyond MAX_CONTAINERS_PER_USER (docs/operations.md, "Quotas"). "default" holds every
    # user's limits; "groups" (group name -> limits) and "users" (username -> limits) replace
    # single keys of it. Keys: "containers", "memory" (bytes or "4g": the mem_limit of running
    # and suspended containers), "cpus" (the cpu_limit of running ones), "snapshots", "images"
    # (committed), "volume_space" (bytes or "20g": named volumes, where nodes measure them). A
    # missing key or None: no limit.
    "QUOTAS": {"default": {}, "groups": {}, "users": {}},
    # Threads per web process that create the users' API's new containers in the background
    # (POST containers/ answers 202 at once); more creations wait their turn.
    "CREATE_WORKERS": 4,
    # --- The reverse proxy in front of containers (ipynbsrv_backends.proxy, docs/proxy.md) ---
    # Whether staff may open every user's container through the proxy (else owners only).
    "PROXY_STAFF_ACCESS": False,
    # The container port the proxy forwards to; None: the container's first published port.
    "PROXY_PORT": None,
    # --- Idle culling (ipynbsrv_cull, docs/operations.md "Idle culling") --------------
    # Containers idle this long are suspended, then stopped; never one whose kernel is busy.
    # RULES: the first rule whose "images" (patterns of image names or references) and
    # "groups" (Django group names of the owner) match a container applies; a rule without
    # either matches every container. Durations: seconds, or "90s", "30m", "2h", "1d";
    # None: never. ACTIVITY_INTERVAL: the access path records a container's activity at most
    # once per this many seconds. RESUME_ON_REQUEST: the proxy's check resumes a container the
    # policy suspended before it answers. SERVER_TIMEOUT: seconds to wait for a notebook
    # server's own answer (api/status, kernels, terminals).
    "IDLE_CULLING": {
        "RULES": [],
        "ACTIVITY_INTERVAL": 60,
        "RESUME_ON_REQUEST": True,
        "SERVER_TIMEOUT": 5,
    },
    # The host API: which local backend a node serves, and with which options.
    "HOSTAPI_BACKEND": "ipynbsrv_backends.backends.Docker",
    "HOSTAPI_BACKEND_OPTIONS": {},
    # The token callers must present; ``None`` reads the IPYNBSRV_HOSTAPI_TOKEN environment
    # variable. An empty token refuses every request unless HOSTAPI_INSECURE_NO_TOKEN is set.
    "HOSTAPI_TOKEN": None,
    # Local development only: serve the host API without any authentication.
    "HOSTAPI_INSECURE_NO_TOKEN": False,
    # The node's initial signing key; ``None`` reads IPYNBSRV_HOSTAPI_SIGNING_KEY. With a
    # key every request but liveness must be signed (docs/security.md); without, the bearer
    # token alone is checked, as before signatures existed.
    "HOSTAPI_SIGNING_KEY": None,
    # Where the node keeps rotated keys and the nonces it has seen, shared by its workers;
    # ``None`` reads IPYNBSRV_HOSTAPI_STATE_DIR (else: this process's memory, no rotation).
    "HOSTAPI_STATE_DIR": None,
    # How far (seconds) a signed request's timestamp may be from the node's clock.
    "HOSTAPI_SIGNATURE_WINDOW": 60,
    # Seconds the replaced key is still accepted after a rotation, when the master names none.
    "HOSTAPI_KEY_GRACE": 300,
    # Events (docs/operations.md): days ipynbsrv_events keeps each container event for its owner's
    # stream; seconds one users' API event stream (api/events/) lasts before the client reconnects
    # (with Last-Event-ID, losing nothing), and seconds between its heartbeat comments.
    "EVENTS_KEEP_DAYS": 7,
    "EVENTS_STREAM_SECONDS": 300,
    "EVENTS_HEARTBEAT": 15,
}

TOKEN_ENV = "IPYNBSRV_HOSTAPI_TOKEN"
SIGNING_KEY_ENV = "IPYNBSRV_HOSTAPI_SIGNING_KEY"
STATE_DIR_ENV = "IPYNBSRV_HOSTAPI_STATE_DIR"


class AppSettings:
    """Attribute access to ``settings.IPYNBSRV_BACKENDS`` with defaults filled in."""

    def __init__(self, defaults: dict[str, Any] | None = None) -> None:
        self._defaults = defaults or DEFAULTS
        self._cache: dict[str, Any] = {}

    @property
    def user_settings(self) -> dict[str, Any]:
        from django.conf import settings

        value = getattr(settings, SETTING_NAME, {}) or {}
        if not isinstance(value, dict):
            from django.core.exceptions import ImproperlyConfigured

            raise ImproperlyConfigured(f"{SETTING_NAME} must be a dict, not {type(value).__name__}.")
        return value

    def __getattr__(self, name: str) -> Any:
        if name.startswith("_") or name not in self._defaults:
            raise AttributeError(f"Invalid {SETTING_NAME} setting: {name!r}")
        if name not in self._cache:
            self._cache[name] = self.user_settings.get(name, self._defaults[name])
        return self._cache[name]

    @property
    def hostapi_token(self) -> str:
        """The host API token: the setting, else the environment variable, else ''."""
        token = self.HOSTAPI_TOKEN
        if token is None:
            token = os.environ.get(TOKEN_ENV, "")
        return str(token)

    @property
    def hostapi_signing_key(self) -> str:
        """The node's initial signing key: the setting, else the environment, else ''."""
        key = self.HOSTAPI_SIGNING_KEY
        if key is None:
            key = os.environ.get(SIGNING_KEY_ENV, "")
        return str(key)

    @property
    def hostapi_state_dir(self) -> str:
        """The node's state directory: the setting, else the environment, else ''."""
        value = self.HOSTAPI_STATE_DIR
        if value is None:
            value = os.environ.get(STATE_DIR_ENV, "")
        return str(value)

    def reload(self) -> None:
        self._cache.clear()


app_settings = AppSettings()


@receiver(setting_changed)
def _reload_app_settings(*, setting: str, **kwargs: Any) -> None:
    if setting == SETTING_NAME:
        app_settings.reload()
