"""The ``Docker`` backend's constructor options, declared once (see :mod:`..options`)."""

from __future__ import annotations

import os
import re
from typing import Any

from ... import errors
from ...validation import validate_cpu_limit, validate_mem_limit, validate_pids_limit
from ..options import Option, Options, boolean, choice, optional_string, positive_seconds
from .constants import DEFAULT_PORT_RANGE, INSTANCE_RE, PREFIX_RE, PULL_POLICIES, REGISTRY_RE

__all__ = ["DOCKER_OPTIONS"]


def _base_url(name: str, value: Any) -> str:
    if not isinstance(value, str) or not re.match(r"^(unix|tcp|http|https)://", value):
        raise errors.InvalidArgumentError(
            f"Invalid base_url {value!r}: use unix:///var/run/docker.sock or tcp://HOST:PORT."
        )
    return value


def _registry(name: str, value: Any) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not REGISTRY_RE.fullmatch(value.strip("/")):
        raise errors.InvalidArgumentError(
            f"Invalid registry {value!r}: use HOST:PORT or HOST:PORT/NAMESPACE, such as 10.0.0.1:5000."
        )
    return value.strip("/")


def _volume_roots(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)):
        raise errors.InvalidArgumentError("allowed_volume_roots must be a list of absolute host directories.")
    resolved = []
    for root in value:
        if not isinstance(root, str) or not root.startswith("/"):
            raise errors.InvalidArgumentError(f"Invalid allowed volume root {root!r}: use an absolute path.")
        real = os.path.realpath(root)
        if real == "/":
            raise errors.InvalidArgumentError("'/' cannot be an allowed volume root: that allows the whole host.")
        resolved.append(real)
    return tuple(resolved)


def _instance(name: str, value: Any) -> str:
    if not isinstance(value, str) or not INSTANCE_RE.fullmatch(value):
        raise errors.InvalidArgumentError(
            f"Invalid instance {value!r}: use letters, digits, '_', '.' and '-' (at most 63)."
        )
    return value


def _name_prefix(name: str, value: Any) -> str:
    if not isinstance(value, str) or not PREFIX_RE.fullmatch(value) or len(value) > 32:
        raise errors.InvalidArgumentError(
            f"Invalid name_prefix {value!r}: use lower-case letters and digits joined by '-'."
        )
    return value


def _version(name: str, value: Any) -> str | None:
    if value is not None and not (isinstance(value, str) and re.fullmatch(r"auto|\d+\.\d+", value, re.ASCII)):
        raise errors.InvalidArgumentError(f"Invalid version {value!r}: use 'auto' or an API version such as '1.41'.")
    return value


def _pool_size(name: str, value: Any) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise errors.InvalidArgumentError("max_pool_size must be a whole number from 1 up.")
    return value


def _patterns(name: str, value: Any) -> tuple[str, ...]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) \
            or not all(isinstance(p, str) and p for p in value):
        raise errors.InvalidArgumentError("allowed_images must be a list of image name patterns such as 'notebooks/*'.")
    return tuple(value)


def _port_range(name: str, value: Any) -> tuple[int, int]:
    if isinstance(value, str) or not isinstance(value, (list, tuple)) or len(value) != 2 \
            or not all(isinstance(p, int) and not isinstance(p, bool) for p in value) \
            or not 1024 <= value[0] <= value[1] <= 65535:
        raise errors.InvalidArgumentError(
            f"Invalid port_range {value!r}: use [LOW, HIGH], two port numbers with 1024 <= LOW <= HIGH <= 65535, "
            "such as [20000, 32767]."
        )
    return (value[0], value[1])


def _optional_seconds(name: str, value: Any) -> Any:
    return None if value is None else positive_seconds(name, value)


def _limit(validate: Any) -> Any:
    return lambda name, value: validate(value)


DOCKER_OPTIONS = Options(
    "Docker backend",
    Option("base_url", "unix://var/run/docker.sock", "The engine: a Unix socket (`unix:///path`) or `tcp://HOST:PORT`.",
           _base_url),
    Option("registry", None, "`HOST:PORT[/NAMESPACE]` of the registry committed images are pushed to and missing "
           "images are pulled from. Image pks then start with it.", _registry),
    Option("allowed_volume_roots", (), "Host directories under which bind-mount sources may lie (resolved, symlinks "
           "included). Empty: no host directories at all, only named volumes. `/` is refused. Paths are resolved on "
           "the machine running the backend, so with a remote `tcp://` engine use named volumes or run the backend "
           "on the node (the host API).", _volume_roots, shown_default="`()`"),
    Option("instance", "default", "The value of the `org.ipynbsrv.instance` label. Two installations sharing an "
           "engine use two instances and never see each other's containers.", _instance),
    Option("name_prefix", "ipynbsrv", "Prefix of every engine name the backend makes (`ipynbsrv-u2501-thesis`, "
           "`ipynbsrv-snapshots/...`).", _name_prefix),
    Option("version", None, "Engine API version; `None` or `\"auto\"` negotiates it on the first call.", _version),
    Option("timeout", 60, "Seconds to wait for the engine on each call (stop and restart add `stop_timeout`).",
           positive_seconds),
    Option("max_pool_size", 10, "Connections kept open to the engine.", _pool_size),
    Option("tls_ca_cert", None, "For `tcp://`: the CA that signed the engine's certificate (`--tlscert`); enables "
           "TLS. It alone decides: `REQUESTS_CA_BUNDLE`, `CURL_CA_BUNDLE` and proxy variables in the environment "
           "are ignored for the engine.", optional_string),
    Option("tls_client_cert", None, "For `tcp://`: the client certificate the engine requires (`--tlsverify`), "
           "signed by the CA the engine trusts (`--tlscacert`). Given together with `tls_client_key`.",
           optional_string),
    Option("tls_client_key", None, "The key of `tls_client_cert`. Given together with it.", optional_string,
           secret=True),
    Option("tls_verify", True, "Verify the engine's certificate against `tls_ca_cert`.", boolean),
    Option("port_range", DEFAULT_PORT_RANGE, "`[LOW, HIGH]` (1024 <= LOW <= HIGH <= 65535): where a port given as "
           "`external: None` is chosen, once per container. The default stays below Linux's ephemeral range "
           "(32768-60999), which outgoing connections use. Keep it clear of ports the node's own services use.",
           _port_range),
    Option("stop_timeout", 10, "Seconds between `SIGTERM` and `SIGKILL` when stopping.", positive_seconds),
    Option("volume_usage_every", None, "Seconds between measurements of this backend's named volumes (the engine's "
           "`system df`, in a background thread, never in a request); the node's status then reports each owner's "
           "bytes (`resources.volume_usage`) for the master's `volume_space` quota. `None`: never measured (the "
           "engine walks every volume's files to answer).", _optional_seconds),
    Option("default_mem_limit", None, "Memory limit for containers whose creation names none (`\"2g\"`, bytes).",
           _limit(validate_mem_limit)),
    Option("default_cpu_limit", None, "CPU limit in CPUs for containers whose creation names none.",
           _limit(validate_cpu_limit)),
    Option("default_pids_limit", None, "Process limit for containers whose creation names none.",
           _limit(validate_pids_limit)),
    Option("pull_policy", "if-not-present", "When `create_container` pulls its image: `\"if-not-present\"`, "
           "`\"always\"` or `\"never\"`.", choice(*PULL_POLICIES)),
    Option("registry_username", None, "The user name for the registry (push and pull). Given together with "
           "`registry_password`. Sent only for images in that registry (a reference whose first component, holding "
           "a `.` or `:` or being `localhost`, is exactly `registry`'s host); an image from any other registry a "
           "caller names is pulled without credentials.", optional_string),
    Option("registry_password", None, "The password for the registry; given together with `registry_username`, "
           "sent only where it is.", optional_string, secret=True),
    Option("registry_insecure", False, "The registry speaks plain HTTP: when the backend deletes an image from it "
           "(through the registry's own API) it may use `http://`. Pushes and pulls go through the engine, which "
           "must list the registry in `insecure-registries` (an address on 127.0.0.0/8 needs nothing).", boolean),
    Option("registry_ca_cert", None, "The CA bundle that signed the registry's certificate, for the backend's own "
           "calls to the registry (deleting images).", optional_string),
    Option("allowed_images", (), "Glob patterns (`\"notebooks/*\"`) of the images containers may be created from. "
           "Empty: any image the engine has.", _patterns, shown_default="`()`"),
    Option("no_new_privileges", True, "Run containers with `no-new-privileges`, so no setuid binary can raise a "
           "process's privileges.", boolean),
    Option("use_init", True, "Run an init process as PID 1, so signals reach the server and stop is graceful.",
           boolean),
    together=(("tls_client_cert", "tls_client_key"), ("registry_username", "registry_password")),
)
