"""The ``Docker`` backend: containers on one Docker engine, through docker-py.

Everything it creates carries labels (``org.ipynbsrv.*``) naming the backend instance that
manages it, its owner and its name; it lists and acts only on what carries its instance
label. A container's pk is its engine name (``<prefix>-u<uid>-<name>``), which survives a
snapshot restore; image and snapshot pks are image references.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fnmatch
import json
import logging
import os
import re
import secrets
import ssl
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from typing import Any

import docker
import docker.errors
import requests.exceptions

from .. import errors
from ..contract import (
    ACCESS_SECRET_ENV,
    BACKEND_STATUS_ERROR,
    BACKEND_STATUS_OK,
    BACKEND_STATUS_STOPPED,
    ContainerRecord,
    ImagePullingContainerBackend,
    ImageRecord,
    NodeStatusContainerBackend,
    PortRecord,
    SnapshotRecord,
    SnapshotTransferContainerBackend,
    SuspendableContainerBackend,
    VolumeRecord,
)
from ..pullprogress import PullProgress
from ..validation import (
    NAME_RE,
    iso_utc,
    parse_engine_time,
    parse_since,
    validate_cmd,
    validate_cpu_limit,
    validate_env,
    validate_mem_limit,
    validate_name,
    validate_pids_limit,
    validate_pk,
    validate_ports,
    validate_tail,
    validate_uid,
    validate_username,
    validate_volumes,
)

logger = logging.getLogger(__name__)

__all__ = ["Docker", "LABEL_PREFIX"]

LABEL_PREFIX = "org.ipynbsrv."
L_INSTANCE = LABEL_PREFIX + "instance"
L_KIND = LABEL_PREFIX + "kind"
L_OWNER = LABEL_PREFIX + "owner"
L_UID = LABEL_PREFIX + "uid"
L_NAME = LABEL_PREFIX + "name"
L_IMAGE = LABEL_PREFIX + "image"
L_CREATED = LABEL_PREFIX + "created"
L_PORTS = LABEL_PREFIX + "ports"
L_VOLUMES = LABEL_PREFIX + "volumes"
L_CLONE_OF = LABEL_PREFIX + "clone-of"
L_CONTAINER = LABEL_PREFIX + "container"
L_SNAPSHOT = LABEL_PREFIX + "snapshot"
L_IMAGE_NAME = LABEL_PREFIX + "image-name"

KIND_CONTAINER = "container"
KIND_IMAGE = "image"
KIND_SNAPSHOT = "snapshot"
KIND_CLONE_BASE = "clone-base"
#: The short-lived, never started container that relabels an image for a snapshot's move
#: between nodes (see :meth:`Docker._commit_relabelled`); never a user's container.
KIND_TRANSFER = "transfer-helper"

#: Every label a container carries; all are set on each create so nothing is inherited
#: from the labels of the image it starts from (a snapshot or a committed image).
CONTAINER_LABELS = (
    L_INSTANCE, L_KIND, L_OWNER, L_UID, L_NAME, L_IMAGE, L_CREATED, L_PORTS, L_VOLUMES,
    L_CLONE_OF, L_CONTAINER, L_SNAPSHOT, L_IMAGE_NAME,
)

CREATE_OPTIONS = ("env", "mem_limit", "cpu_limit", "pids_limit")

#: Options a caller might try to smuggle in; each widens what a container may do on the
#: host, so each is refused by name rather than passed to the engine.
PRIVILEGED_OPTIONS = frozenset({
    "privileged", "cap_add", "cap_drop", "devices", "device_requests", "device_cgroup_rules",
    "network_mode", "network", "pid_mode", "ipc_mode", "uts_mode", "userns_mode", "cgroupns",
    "security_opt", "sysctls", "volumes_from", "cgroup_parent", "runtime", "host_config",
    "user", "binds", "mounts", "tmpfs", "extra_hosts", "dns", "oom_kill_disable",
    "restart_policy", "labels", "entrypoint", "working_dir", "init", "read_only", "shm_size",
})

PULL_POLICIES = ("if-not-present", "always", "never")
#: Seconds between two progress reports of one pull (a finished layer is reported at once).
PROGRESS_INTERVAL = 0.25
#: What ``pull_container_image(on_progress=...)`` calls with a pull's summary.
ProgressCallback = Callable[[dict[str, Any]], None]
REGISTRY_RE = re.compile(
    r"^(?P<host>[A-Za-z0-9.-]+|\[[0-9a-fA-F:]+\])(?::(?P<port>\d{1,5}))?(?P<ns>(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*)\Z",
    re.ASCII,
)
PREFIX_RE = re.compile(r"^[a-z0-9]+(?:-[a-z0-9]+)*\Z")
INSTANCE_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,62}\Z")
#: Where a port given as ``external: None`` is chosen (the ``port_range`` option's default):
#: below Linux's ephemeral range (32768-60999), which outgoing connections draw from.
DEFAULT_PORT_RANGE = (20000, 32767)
#: How often a create tries another host port when the engine finds the chosen one taken.
PORT_ATTEMPTS = 5
#: The host port the engine names when it cannot bind one ("Bind for 0.0.0.0:PORT failed:
#: port is already allocated", "listen tcp4 127.0.0.1:PORT: bind: address already in use").
PORT_CONFLICT_RE = re.compile(r"(?:bind for|listen tcp[46]?)\s+\S*?:(\d{1,5})\b")
IMAGE_NAME_RE = re.compile(r"^(?P<name>[a-z0-9]+(?:[._-][a-z0-9]+)*)(?::(?P<tag>[A-Za-z0-9_][A-Za-z0-9_.-]{0,127}))?\Z")


def _status_of(state: str) -> str:
    if state == "paused":
        return "suspended"
    if state in ("running", "restarting"):
        return "running"
    return "stopped"


def _port_conflict(exc: BaseException | None) -> int | None:
    """The host port an engine error says is taken, or None when it is about something else."""
    if not isinstance(exc, docker.errors.APIError):
        return None
    text = str(exc.explanation or exc).lower()
    if "port is already allocated" not in text and "address already in use" not in text:
        return None
    match = PORT_CONFLICT_RE.search(text)
    return int(match.group(1)) if match else None


def _causes(exc: BaseException) -> Iterator[BaseException]:
    """``exc`` and every exception it wraps (causes, contexts, and the ones requests and
    urllib3 keep in ``args`` or ``reason``), each once."""
    seen: set[int] = set()
    pending = [exc]
    while pending and len(seen) < 32:
        current = pending.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        yield current
        wrapped = [current.__cause__, current.__context__, getattr(current, "reason", None),
                   *getattr(current, "args", ())]
        pending += [item for item in wrapped if isinstance(item, BaseException)]


class _EngineClient(docker.APIClient):
    """docker-py's client, deaf to the environment: ``requests`` would otherwise let
    ``REQUESTS_CA_BUNDLE``/``CURL_CA_BUNDLE`` replace the engine's CA (``tls_ca_cert``) on
    every call, and ``HTTPS_PROXY`` and ``.netrc`` reach the engine's connection. A
    property, because the session turns it on in its constructor, before docker-py's first
    request (the version negotiation) is made."""

    @property
    def trust_env(self) -> bool:
        return False

    @trust_env.setter
    def trust_env(self, value: bool) -> None:
        pass


def _split_ref(ref: str) -> tuple[str, str]:
    """``host:5000/a/b:tag`` -> (``host:5000/a/b``, ``tag``); a missing tag is ``latest``."""
    if "@" in ref:
        return ref, ""
    slash = ref.rfind("/")
    colon = ref.rfind(":")
    if colon > slash:
        return ref[:colon], ref[colon + 1:]
    return ref, "latest"


def _with_env(environment: list[str], replaced: Mapping[str, str]) -> list[str]:
    """``KEY=VALUE`` lines with the keys of ``replaced`` set to its values (added if new)."""
    kept = [line for line in environment if line.split("=", 1)[0] not in replaced]
    return kept + [f"{key}={value}" for key, value in replaced.items()]


class Docker(SnapshotTransferContainerBackend, SuspendableContainerBackend, ImagePullingContainerBackend,
             NodeStatusContainerBackend):
    """Containers on one Docker engine.

    See the README for every constructor argument. The engine is not contacted until the
    first call, so building a backend never blocks and never fails on a down engine.
    """

    # Set by the constructor from OPTIONS (declared here for type checkers).
    instance: str
    name_prefix: str
    version: str | None
    timeout: float
    max_pool_size: int
    tls_verify: bool
    tls_ca_cert: str | None
    tls_client_cert: str | None
    tls_client_key: str | None
    stop_timeout: int
    default_mem_limit: int | str | None
    default_cpu_limit: float | None
    default_pids_limit: int | None
    pull_policy: str
    registry_username: str | None
    registry_password: str | None
    registry_insecure: bool
    registry_ca_cert: str | None
    allowed_images: tuple[str, ...]
    no_new_privileges: bool
    use_init: bool
    port_range: tuple[int, int]

    #: Constructor options and their defaults (besides the three positional ones).
    OPTIONS: dict[str, Any] = {
        "instance": "default",
        "name_prefix": "ipynbsrv",
        "version": None,
        "timeout": 60,
        "max_pool_size": 10,
        "tls_verify": True,
        "tls_ca_cert": None,
        "tls_client_cert": None,
        "tls_client_key": None,
        "stop_timeout": 10,
        "default_mem_limit": None,
        "default_cpu_limit": None,
        "default_pids_limit": None,
        "pull_policy": "if-not-present",
        "registry_username": None,
        "registry_password": None,
        "registry_insecure": False,
        "registry_ca_cert": None,
        "allowed_images": (),
        "no_new_privileges": True,
        "use_init": True,
        "port_range": DEFAULT_PORT_RANGE,
    }
    SECRET_OPTIONS = frozenset({"registry_password", "tls_client_key"})

    def __init__(
        self,
        base_url: str = "unix://var/run/docker.sock",
        registry: str | None = None,
        allowed_volume_roots: list[str] | tuple[str, ...] = (),
        **options: Any,
    ) -> None:
        config = self.validate_options(base_url=base_url, registry=registry,
                                       allowed_volume_roots=allowed_volume_roots, **options)
        self.base_url: str = config["base_url"]
        self.registry: str | None = config["registry"]
        self.allowed_volume_roots: tuple[str, ...] = config["allowed_volume_roots"]
        for key in self.OPTIONS:
            setattr(self, key, config[key])
        self._client: docker.APIClient | None = None
        self._client_lock = threading.Lock()
        self._name_lock = threading.Lock()

    # ------------------------------------------------------------------ configuration

    @classmethod
    def validate_options(cls, **config: Any) -> dict[str, Any]:
        """Check a constructor configuration without contacting anything.

        Returns the configuration with defaults filled in; raises InvalidArgumentError
        naming the first bad option. The admin form, the API and the checks all call this.
        """
        known = {"base_url", "registry", "allowed_volume_roots", *cls.OPTIONS}
        unknown = sorted(set(config) - known)
        if unknown:
            raise errors.InvalidArgumentError(
                f"Unknown Docker backend option(s): {', '.join(unknown)}. Known options: {', '.join(sorted(known))}."
            )
        result = {"base_url": "unix://var/run/docker.sock", "registry": None, "allowed_volume_roots": (),
                  **cls.OPTIONS, **config}

        base_url = result["base_url"]
        if not isinstance(base_url, str) or not re.match(r"^(unix|tcp|http|https)://", base_url):
            raise errors.InvalidArgumentError(
                f"Invalid base_url {base_url!r}: use unix:///var/run/docker.sock or tcp://HOST:PORT."
            )
        registry = result["registry"]
        if registry is not None:
            if not isinstance(registry, str) or not REGISTRY_RE.fullmatch(registry.strip("/")):
                raise errors.InvalidArgumentError(
                    f"Invalid registry {registry!r}: use HOST:PORT or HOST:PORT/NAMESPACE, such as 10.0.0.1:5000."
                )
            result["registry"] = registry.strip("/")
        roots = result["allowed_volume_roots"]
        if isinstance(roots, str) or not isinstance(roots, (list, tuple)):
            raise errors.InvalidArgumentError("allowed_volume_roots must be a list of absolute host directories.")
        resolved = []
        for root in roots:
            if not isinstance(root, str) or not root.startswith("/"):
                raise errors.InvalidArgumentError(f"Invalid allowed volume root {root!r}: use an absolute path.")
            real = os.path.realpath(root)
            if real == "/":
                raise errors.InvalidArgumentError("'/' cannot be an allowed volume root: that allows the whole host.")
            resolved.append(real)
        result["allowed_volume_roots"] = tuple(resolved)

        if not isinstance(result["instance"], str) or not INSTANCE_RE.fullmatch(result["instance"]):
            raise errors.InvalidArgumentError(
                f"Invalid instance {result['instance']!r}: use letters, digits, '_', '.' and '-' (at most 63)."
            )
        if not isinstance(result["name_prefix"], str) or not PREFIX_RE.fullmatch(result["name_prefix"]) \
                or len(result["name_prefix"]) > 32:
            raise errors.InvalidArgumentError(
                f"Invalid name_prefix {result['name_prefix']!r}: use lower-case letters and digits joined by '-'."
            )
        for key in ("timeout", "stop_timeout"):
            value = result[key]
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise errors.InvalidArgumentError(f"Invalid {key} {value!r}: use a positive number of seconds.")
        if isinstance(result["max_pool_size"], bool) or not isinstance(result["max_pool_size"], int) \
                or result["max_pool_size"] < 1:
            raise errors.InvalidArgumentError("max_pool_size must be a whole number from 1 up.")
        if result["version"] is not None and not (isinstance(result["version"], str)
                                                  and re.fullmatch(r"auto|\d+\.\d+", result["version"], re.ASCII)):
            raise errors.InvalidArgumentError(f"Invalid version {result['version']!r}: use 'auto' or an API version such as '1.41'.")
        result["default_mem_limit"] = validate_mem_limit(result["default_mem_limit"])
        result["default_cpu_limit"] = validate_cpu_limit(result["default_cpu_limit"])
        result["default_pids_limit"] = validate_pids_limit(result["default_pids_limit"])
        if result["pull_policy"] not in PULL_POLICIES:
            raise errors.InvalidArgumentError(
                f"Invalid pull_policy {result['pull_policy']!r}: use one of {', '.join(PULL_POLICIES)}."
            )
        patterns = result["allowed_images"]
        if isinstance(patterns, str) or not isinstance(patterns, (list, tuple)) \
                or not all(isinstance(p, str) and p for p in patterns):
            raise errors.InvalidArgumentError("allowed_images must be a list of image name patterns such as 'notebooks/*'.")
        result["allowed_images"] = tuple(patterns)
        for key in ("tls_ca_cert", "tls_client_cert", "tls_client_key", "registry_username", "registry_password",
                    "registry_ca_cert"):
            if result[key] is not None and not isinstance(result[key], str):
                raise errors.InvalidArgumentError(f"{key} must be a string.")
        if bool(result["tls_client_cert"]) != bool(result["tls_client_key"]):
            raise errors.InvalidArgumentError("tls_client_cert and tls_client_key go together: give both or neither.")
        if bool(result["registry_username"]) != bool(result["registry_password"]):
            raise errors.InvalidArgumentError("registry_username and registry_password go together: give both or neither.")
        for key in ("tls_verify", "no_new_privileges", "use_init", "registry_insecure"):
            if not isinstance(result[key], bool):
                raise errors.InvalidArgumentError(f"{key} must be true or false.")
        span = result["port_range"]
        if isinstance(span, str) or not isinstance(span, (list, tuple)) or len(span) != 2 \
                or not all(isinstance(p, int) and not isinstance(p, bool) for p in span) \
                or not 1024 <= span[0] <= span[1] <= 65535:
            raise errors.InvalidArgumentError(
                f"Invalid port_range {span!r}: use [LOW, HIGH], two port numbers with 1024 <= LOW <= HIGH <= 65535, "
                "such as [20000, 32767]."
            )
        result["port_range"] = (span[0], span[1])
        return result

    def __repr__(self) -> str:
        registry = f", registry={self.registry!r}" if self.registry else ""
        return f"Docker(base_url={self.base_url!r}{registry}, instance={self.instance!r})"

    # ------------------------------------------------------------------ the engine

    def _api(self) -> docker.APIClient:
        with self._client_lock:
            if self._client is None:
                tls: Any = False
                if self.base_url.startswith(("tcp://", "https://")) and (
                    self.tls_ca_cert or self.tls_client_cert or self.base_url.startswith("https://")
                ):
                    client_cert = (self.tls_client_cert, self.tls_client_key) if self.tls_client_cert else None
                    tls = docker.tls.TLSConfig(client_cert=client_cert, ca_cert=self.tls_ca_cert,
                                               verify=self.tls_verify)
                with self._engine():
                    self._client = _EngineClient(
                        base_url=self.base_url, version=self.version or "auto", timeout=self.timeout,
                        tls=tls, max_pool_size=self.max_pool_size,
                    )
            return self._client

    @contextlib.contextmanager
    def _engine(
        self,
        not_found: errors.BackendError | None = None,
        conflict: errors.BackendError | None = None,
    ) -> Iterator[None]:
        """Translate docker-py and requests errors into the error tree."""
        try:
            yield
        except errors.BackendError:
            raise
        except docker.errors.APIError as exc:
            explanation = str(exc.explanation or exc)
            status = exc.status_code
            if status == 400 and "http request to an https server" in explanation.lower():
                raise errors.BackendUnavailableError(self._unreachable(exc)) from exc
            if status == 404 and not_found is not None:
                raise not_found from exc
            if status == 409 and conflict is not None:
                raise conflict from exc
            lowered = explanation.lower()
            if "port is already allocated" in lowered or "address already in use" in lowered:
                raise errors.InvalidArgumentError(
                    f"A requested host port is already in use ({explanation}); pick another port or use external: null."
                ) from exc
            if status == 400 or (status == 500 and "range of cpus" in lowered):
                raise errors.InvalidArgumentError(f"The Docker engine refused the request: {explanation}") from exc
            if status == 404:
                raise errors.ContainerBackendError(f"Not found on the Docker engine: {explanation}") from exc
            raise errors.ContainerBackendError(f"The Docker engine refused the request: {explanation}") from exc
        except requests.exceptions.ConnectTimeout as exc:
            raise errors.BackendUnavailableError(self._unreachable(exc)) from exc
        except requests.exceptions.ReadTimeout as exc:
            raise errors.BackendTimeoutError(
                f"The Docker engine at {self.base_url} did not answer within {self.timeout} s."
            ) from exc
        except requests.exceptions.ConnectionError as exc:
            raise errors.BackendUnavailableError(self._unreachable(exc)) from exc
        except requests.exceptions.RequestException as exc:
            raise errors.BackendError(f"Talking to the Docker engine failed: {exc}") from exc
        except docker.errors.DockerException as exc:
            causes = list(_causes(exc))
            if any(isinstance(c, (requests.exceptions.ConnectionError, requests.exceptions.Timeout, OSError))
                   for c in causes[1:]) or "connection" in str(exc).lower() or "timed out" in str(exc).lower():
                raise errors.BackendUnavailableError(self._unreachable(exc)) from exc
            raise errors.BackendError(f"The Docker client failed: {exc}") from exc

    def _unreachable(self, exc: BaseException) -> str:
        """Why the engine could not be talked to, in words that say which option to fix:
        the TLS handshake (whose certificate), TLS against plain TCP, or no engine there."""
        where = f"the Docker engine at {self.base_url}"
        causes = list(_causes(exc))
        for cause in causes:
            if isinstance(cause, docker.errors.APIError) and "http request to an https server" in str(cause).lower():
                return (f"The Docker engine at {self.base_url} speaks TLS and this backend talked plain TCP to it: set tls_ca_cert "
                        "(the CA that signed the engine's certificate) and tls_client_cert/tls_client_key.")
        for cause in causes:
            if not isinstance(cause, ssl.SSLError):
                continue
            reason = (getattr(cause, "reason", None) or "").upper()
            text = str(cause)
            if isinstance(cause, ssl.SSLCertVerificationError) or reason == "CERTIFICATE_VERIFY_FAILED":
                detail = getattr(cause, "verify_message", None) or text
                if self.tls_ca_cert:
                    return (f"TLS with {where} failed: its certificate is not trusted ({detail}). It must be "
                            f"signed by the CA in tls_ca_cert ({self.tls_ca_cert}) and name the address in "
                            "base_url: give the CA that signed the engine's --tlscert.")
                return (f"TLS with {where} failed: its certificate is not trusted ({detail}). Set tls_ca_cert to "
                        "the CA that signed the engine's --tlscert.")
            if "ALERT" in reason and any(word in reason for word in ("CERTIFICATE", "UNKNOWN_CA", "HANDSHAKE")):
                if not self.tls_client_cert:
                    return (f"TLS with {where} failed: the engine requires a client certificate (--tlsverify) and "
                            "none was given: set tls_client_cert and tls_client_key to a certificate signed by the "
                            "CA the engine trusts (its --tlscacert).")
                return (f"TLS with {where} failed: the engine refused the client certificate in tls_client_cert "
                        f"({self.tls_client_cert}; {reason.lower() or text}): it must be signed by the CA the engine "
                        "trusts (its --tlscacert), be meant for client use, and not be expired.")
            if reason in ("WRONG_VERSION_NUMBER", "RECORD_LAYER_FAILURE", "PACKET_LENGTH_TOO_LONG", "HTTP_REQUEST",
                          "UNKNOWN_PROTOCOL") or "wrong version number" in text.lower():
                return (f"TLS with {where} failed: the other end does not speak TLS ({text}). Either the engine "
                        "listens without TLS there (then drop tls_ca_cert and the client certificate, or better, "
                        "start it with --tlsverify) or base_url names the wrong port.")
            return f"TLS with {where} failed ({text}): check tls_ca_cert, tls_client_cert and tls_client_key."
        for cause in causes:
            if isinstance(cause, (ConnectionRefusedError, FileNotFoundError)):
                return (f"Cannot reach {where}: nothing answers there ({cause.strerror or cause}): is dockerd "
                        "running and listening at that address (base_url)?")
            if isinstance(cause, PermissionError):
                return (f"Cannot reach {where}: this process may not use it ({cause.strerror or cause}): is dockerd "
                        "running and may this process use it (the docker group, or run the backend as a user that may)?")
            if isinstance(cause, (requests.exceptions.Timeout, TimeoutError)) or "timed out" in str(cause).lower():
                return (f"Cannot reach {where}: no connection within {self.timeout} s: is dockerd running there, "
                        "the address in base_url right, and no firewall in between?")
        return f"Cannot reach {where}: is dockerd running and may this process use it? ({exc})"

    def _labels_filter(self, kind: str, **extra: str) -> dict[str, Any]:
        labels = [f"{L_INSTANCE}={self.instance}", f"{L_KIND}={kind}"]
        labels += [f"{key}={value}" for key, value in extra.items()]
        return {"label": labels}

    def _is_ours(self, labels: Mapping[str, str] | None, kind: str) -> bool:
        labels = labels or {}
        return labels.get(L_INSTANCE) == self.instance and labels.get(L_KIND) == kind

    # ------------------------------------------------------------------ naming

    def engine_name(self, uid: int, name: str) -> str:
        """The engine name (and pk) of a user's container; the one place names are made."""
        return f"{self.name_prefix}-u{validate_uid(uid)}-{validate_name(name)}"

    def _repo_base(self) -> str:
        return f"{self.registry}/" if self.registry else ""

    def _image_ref(self, uid: int, name: str) -> str:
        match = IMAGE_NAME_RE.fullmatch(name) if isinstance(name, str) and len(name) <= 128 else None
        if not match:
            raise errors.InvalidArgumentError(
                f"Invalid image name {str(name)[:80]!r}: use a lower-case name with an optional tag, such as 'my-stack' or 'my-stack:v2'."
            )
        return f"{self._repo_base()}{self.name_prefix}-u{uid}/{match.group('name')}:{match.group('tag') or 'latest'}"

    def _snapshot_ref(self, container_pk: str, name: str) -> str:
        validate_name(name, "snapshot name")
        return f"{self.name_prefix}-snapshots/{container_pk}:{name}"

    # ------------------------------------------------------------------ records

    def _container_record(self, name: str, state: str, labels: Mapping[str, str],
                          bound: Mapping[int, list[tuple[str, int]]]) -> ContainerRecord:
        try:
            port_specs = json.loads(labels.get(L_PORTS) or "[]")
            volume_specs = json.loads(labels.get(L_VOLUMES) or "[]")
        except ValueError:
            port_specs, volume_specs = [], []
        ports: list[PortRecord] = []
        for spec in port_specs:
            external = spec.get("external")
            bindings = bound.get(int(spec["internal"]), [])
            if bindings:
                matching = [port for ip, port in bindings if ip == spec["address"]]
                external = (matching or [bindings[0][1]])[0]
            ports.append({"address": spec["address"], "external": external, "internal": int(spec["internal"])})
        record: dict[str, Any] = {
            "pk": name,
            "name": labels.get(L_NAME, ""),
            "status": _status_of(state),
            "image": labels.get(L_IMAGE, ""),
            "owner": labels.get(L_OWNER, ""),
            "uid": int(labels.get(L_UID) or 0),
            "created": labels.get(L_CREATED, ""),
            "ports": ports,
            "volumes": volume_specs,
            "clone_of": labels.get(L_CLONE_OF) or None,
        }
        return record  # type: ignore[return-value]

    def _record_from_list(self, item: Mapping[str, Any]) -> ContainerRecord:
        bound: dict[int, list[tuple[str, int]]] = {}
        for port in item.get("Ports") or []:
            if port.get("PublicPort"):
                bound.setdefault(int(port["PrivatePort"]), []).append((port.get("IP", ""), int(port["PublicPort"])))
        name = (item.get("Names") or ["/"])[0].lstrip("/")
        return self._container_record(name, item.get("State", ""), item.get("Labels") or {}, bound)

    def _record_from_inspect(self, info: Mapping[str, Any]) -> ContainerRecord:
        bound: dict[int, list[tuple[str, int]]] = {}
        for key, bindings in ((info.get("NetworkSettings") or {}).get("Ports") or {}).items():
            internal = int(key.split("/")[0])
            for binding in bindings or []:
                if binding.get("HostPort"):
                    bound.setdefault(internal, []).append((binding.get("HostIp", ""), int(binding["HostPort"])))
        state = (info.get("State") or {}).get("Status", "")
        return self._container_record(info["Name"].lstrip("/"), state, info["Config"].get("Labels") or {}, bound)

    def _image_record(self, info: Mapping[str, Any], pk: str) -> ImageRecord:
        labels = (info.get("Config") or {}).get("Labels") or info.get("Labels") or {}
        managed = self._is_ours(labels, KIND_IMAGE)
        return {  # type: ignore[typeddict-unknown-key]
            "pk": pk,
            "name": (labels.get(L_IMAGE_NAME) or pk) if managed else pk,
            "created": parse_engine_time(info.get("Created")),
            "size": int(info.get("Size") or 0),
            "owner": labels.get(L_OWNER) if managed else None,
            "container": labels.get(L_CONTAINER) if managed else None,
            "managed": managed,
            # the registry every node can pull this image from, if it is kept in one
            "registry": self.registry if self.registry and pk.startswith(self.registry + "/") else None,
        }

    def _snapshot_record(self, info: Mapping[str, Any], pk: str) -> SnapshotRecord:
        labels = (info.get("Config") or {}).get("Labels") or info.get("Labels") or {}
        return {  # type: ignore[typeddict-unknown-key]
            "pk": pk,
            "name": labels.get(L_SNAPSHOT, ""),
            "container": labels.get(L_CONTAINER, ""),
            "created": parse_engine_time(info.get("Created")),
            "size": int(info.get("Size") or 0),
        }

    # ------------------------------------------------------------------ lookups

    def _inspect_container(self, container: str) -> dict[str, Any]:
        """Inspect a container this backend manages; anything else is not found."""
        validate_pk(container)
        missing = errors.ContainerNotFoundError(f"No container {container!r} is managed by this backend.")
        with self._engine(not_found=missing):
            info = self._api().inspect_container(container)
        if not self._is_ours(info["Config"].get("Labels"), KIND_CONTAINER):
            raise missing
        return info

    def _inspect_image(self, image: str, kind: str | None, missing: errors.BackendError) -> dict[str, Any]:
        validate_pk(image, "snapshot" if kind == KIND_SNAPSHOT else "image")
        with self._engine(not_found=missing):
            info = self._api().inspect_image(image)
        if kind is not None and not self._is_ours((info.get("Config") or {}).get("Labels"), kind):
            raise missing
        return info

    def _inspect_snapshot(self, snapshot: str) -> dict[str, Any]:
        missing = errors.ContainerSnapshotNotFoundError(f"No snapshot {snapshot!r} is kept by this backend.")
        info = self._inspect_image(snapshot, KIND_SNAPSHOT, missing)
        if snapshot not in (info.get("RepoTags") or []):
            raise missing  # an id or a digest: snapshots are addressed by their pk only
        return info

    def _list_images(self, kind: str, **extra: str) -> list[tuple[str, dict[str, Any]]]:
        with self._engine():
            items = self._api().images(filters=self._labels_filter(kind, **extra))
        found = []
        for item in items:
            for tag in item.get("RepoTags") or []:
                if tag and not tag.startswith("<none>"):
                    found.append((tag, item))
        return sorted(found, key=lambda pair: (pair[1].get("Created") or 0, pair[0]))

    def _prune_images(self) -> None:
        """Remove untagged images this backend made that no container uses any more."""
        try:
            with self._engine():
                self._api().prune_images(filters={"dangling": True, "label": f"{L_INSTANCE}={self.instance}"})
        except errors.BackendError as exc:
            logger.warning("Could not prune unused images of instance %s: %s", self.instance, exc)

    # ------------------------------------------------------------------ the base contract

    def container_exists(self, container: str, **kwargs: Any) -> bool:
        self._no_options(kwargs)
        try:
            self._inspect_container(container)
        except errors.ContainerNotFoundError:
            return False
        return True

    def container_image_exists(self, image: str, **kwargs: Any) -> bool:
        self._no_options(kwargs)
        try:
            self._inspect_image(image, None, errors.ContainerImageNotFoundError())
        except errors.ContainerImageNotFoundError:
            return False
        return True

    def container_is_running(self, container: str, **kwargs: Any) -> bool:
        self._no_options(kwargs)
        return bool(self._inspect_container(container)["State"].get("Running"))

    def container_is_suspended(self, container: str, **kwargs: Any) -> bool:
        self._no_options(kwargs)
        return bool(self._inspect_container(container)["State"].get("Paused"))

    def get_container(self, container: str, **kwargs: Any) -> ContainerRecord:
        self._no_options(kwargs)
        return self._record_from_inspect(self._inspect_container(container))

    def get_containers(self, only_running: bool = False, **kwargs: Any) -> list[ContainerRecord]:
        """One engine call, however many containers there are."""
        self._no_options(kwargs)
        if not isinstance(only_running, bool):
            raise errors.InvalidArgumentError("only_running must be true or false.")
        with self._engine():
            items = self._api().containers(all=not only_running, filters=self._labels_filter(KIND_CONTAINER))
        records = [self._record_from_list(item) for item in items]
        return sorted(records, key=lambda record: record["pk"])

    def get_status(self, **kwargs: Any) -> int:
        try:
            with self._engine():
                self._api().ping()
        except errors.BackendUnavailableError:
            return BACKEND_STATUS_STOPPED
        except Exception:  # noqa: BLE001 - the contract: get_status never raises
            logger.warning("The Docker engine at %s answered its ping with an error", self.base_url, exc_info=True)
            return BACKEND_STATUS_ERROR
        return BACKEND_STATUS_OK

    def get_node_status(self, **kwargs: Any) -> dict[str, Any]:
        """The engine's resources and this backend's container counts, in the shape of the
        host API's status answer, for placement and the admin."""
        self._no_options(kwargs)
        with self._engine():
            info = self._api().info()
            items = self._api().containers(all=True, filters=self._labels_filter(KIND_CONTAINER))
        running = sum(1 for item in items if item.get("State") in ("running", "paused", "restarting"))
        return {
            "backend": {"status": BACKEND_STATUS_OK, "capabilities": ["suspend", "snapshot"],
                        "engine_version": info.get("ServerVersion"), "registry": self.registry},
            "resources": {
                "cpu_count": info.get("NCPU"),
                "memory_total": info.get("MemTotal"),
                "containers": {"running": running, "total": len(items)},
            },
        }

    # ------------------------------------------------------------------ create

    def _no_options(self, kwargs: Mapping[str, Any], allowed: tuple[str, ...] = ()) -> None:
        unknown = sorted(set(kwargs) - set(allowed))
        if not unknown:
            return
        forbidden = [key for key in unknown if key in PRIVILEGED_OPTIONS]
        if forbidden:
            raise errors.InvalidArgumentError(
                f"Option(s) {', '.join(forbidden)} are not allowed: they would widen what a container may do on the host."
            )
        accepted = f"; this call accepts {', '.join(allowed)}" if allowed else "; this call takes no options"
        raise errors.InvalidArgumentError(f"Unknown option(s) {', '.join(unknown)}{accepted}.")

    def _resolve_bind_source(self, source: str) -> str:
        if not self.allowed_volume_roots:
            raise errors.InvalidArgumentError(
                f"Host directory {source!r} cannot be mounted: this backend allows no bind mounts "
                "(set allowed_volume_roots, or use a named volume)."
            )
        try:
            real = os.path.realpath(source)
        except OSError as exc:  # e.g. /proc/1/root: a link this process may not even read
            raise errors.InvalidArgumentError(
                f"Host path {source[:200]!r} cannot be mounted: {exc.strerror or exc}."
            ) from exc
        if self._under_roots(real):
            if not os.path.isdir(real) and not os.path.isfile(real):
                raise errors.InvalidArgumentError(
                    f"Host path {source!r} does not exist: create it first (the engine would create it as root)."
                )
            return real
        raise errors.InvalidArgumentError(
            f"Host path {source!r} (resolved to {real!r}) is outside the allowed volume roots "
            f"({', '.join(self.allowed_volume_roots)})."
        )

    def _under_roots(self, real: str) -> bool:
        """Whether the resolved path ``real`` is an allowed volume root or lies under one."""
        return any(real == root or real.startswith(root.rstrip("/") + "/") for root in self.allowed_volume_roots)

    def _recheck_binds(self, info: Mapping[str, Any], action: str) -> None:
        """Resolve the bind sources of an existing container again before the engine mounts
        them (start, restart, restore): each must still be the path resolved at creation
        (a symlink anywhere in it means someone swapped a directory since), still exist and
        still be under an allowed root. Refused with IllegalContainerStateError: the call is
        fine, the host path the container was made with is not any more."""
        pk = str(info.get("Name") or "").lstrip("/")
        for bind in (info.get("HostConfig") or {}).get("Binds") or []:
            source = bind.split(":", 1)[0]
            if not source.startswith("/"):
                continue  # a named volume: the engine keeps it, no host path to swap
            problem = self._bind_problem(source)
            if problem:
                raise errors.IllegalContainerStateError(
                    f"The container {pk!r} cannot be {action}: its bind mount source {source!r} {problem}. "
                    f"Nothing was mounted. Put a real directory back at {source} (no symlink anywhere in the "
                    "path), or delete the container and create it again with a valid volume."
                )

    def _bind_problem(self, source: str) -> str | None:
        """What changed about a bind source resolved at creation, or ``None``."""
        if not self.allowed_volume_roots:
            return "is a host directory and this backend no longer allows bind mounts (allowed_volume_roots is empty)"
        try:
            real = os.path.realpath(source, strict=False)
        except OSError as exc:
            return f"cannot be resolved any more ({exc.strerror or exc})"
        if real != source:
            return f"now resolves to {real!r}: a symlink was put in its path since the container was created"
        if not self._under_roots(real):
            return f"is now outside the allowed volume roots ({', '.join(self.allowed_volume_roots)})"
        if not os.path.isdir(real) and not os.path.isfile(real):
            return "no longer exists (the engine would create it again, as root)"
        return None

    def _prepare_volumes(self, volumes: list[VolumeRecord], username: str) -> tuple[list[VolumeRecord], list[str]]:
        """Resolve bind sources; check named volumes. Returns the records and the names of
        volumes that do not exist yet (created by :meth:`_create_volumes`)."""
        prepared: list[VolumeRecord] = []
        missing: list[str] = []
        for volume in volumes:
            source = volume["source"]
            if source.startswith("/"):
                source = self._resolve_bind_source(source)
            else:
                try:
                    with self._engine():
                        info = self._api().inspect_volume(source)
                except errors.ContainerBackendError as exc:
                    if not isinstance(exc.__cause__, docker.errors.NotFound):
                        raise
                    info = None
                if info is None:
                    missing.append(source)
                else:
                    labels = info.get("Labels") or {}
                    if labels.get(L_INSTANCE) != self.instance or labels.get(L_OWNER) != username:
                        raise errors.InvalidArgumentError(
                            f"The volume {source!r} exists and does not belong to {username!r} on this backend; pick another name."
                        )
            prepared.append({"source": source, "target": volume["target"], "mode": volume.get("mode", "rw")})
        return prepared, missing

    def _create_volumes(self, names: list[str], username: str) -> list[str]:
        created = []
        for name in names:
            with self._engine():
                info = self._api().create_volume(name, labels={L_INSTANCE: self.instance, L_OWNER: username,
                                                               L_KIND: "volume"})
            labels = info.get("Labels") or {}
            if labels.get(L_OWNER) != username or labels.get(L_INSTANCE) != self.instance:
                raise errors.InvalidArgumentError(f"The volume {name!r} was just taken by someone else; pick another name.")
            created.append(name)
        return created

    def _image_allowed(self, image: str) -> None:
        if self.allowed_images and not any(fnmatch.fnmatchcase(image, p) for p in self.allowed_images):
            raise errors.InvalidArgumentError(
                f"The image {image!r} is not allowed on this backend (allowed: {', '.join(self.allowed_images)})."
            )

    def _auth_config_for(self, image: str) -> dict[str, str] | None:
        """The registry credentials, only when ``image`` lives in the configured registry.

        The registry of a reference is its first path component when that contains ``.`` or
        ``:`` or is ``localhost`` (Docker's rule; otherwise it is Docker Hub), compared with
        the configured registry's host exactly: credentials never go to a registry a caller
        names."""
        if not self.registry_username or not self.registry:
            return None
        first, slash, _rest = image.partition("/")
        if not slash or not ("." in first or ":" in first or first == "localhost"):
            return None
        if first != self._registry_base():
            return None
        return {"username": self.registry_username, "password": self.registry_password or ""}

    def _stream_errors(self, stream: Any, on_progress: ProgressCallback | None = None) -> str | None:
        """Read a pull or push stream to its end; the first error's message, if any. With
        ``on_progress``, a pull's summary (:mod:`..pullprogress`) is handed to it as it
        changes: at most every ``PROGRESS_INTERVAL`` seconds, at once when a layer is done,
        and once more at the end."""
        tracker = PullProgress() if on_progress is not None else None
        sent: dict[str, Any] | None = None
        last = 0.0

        def report(summary: dict[str, Any]) -> None:
            nonlocal sent, last, on_progress
            if on_progress is None:
                return
            sent, last = summary, time.monotonic()
            try:
                on_progress(dict(summary))
            except Exception:  # a broken observer must not break the pull
                logger.exception("The pull progress callback failed; the pull goes on without it")
                on_progress = None

        for chunk in stream:
            if isinstance(chunk, dict) and (chunk.get("error") or chunk.get("errorDetail")):
                return str(chunk.get("error") or chunk["errorDetail"].get("message"))
            if tracker is not None and tracker.feed(chunk):
                summary = tracker.summary()
                layer_done = sent is None or summary["layers_done"] != sent["layers_done"]
                if layer_done or time.monotonic() - last >= PROGRESS_INTERVAL:
                    report(summary)
        if tracker is not None and tracker.summary() != sent and tracker.summary()["layers"]:
            report(tracker.summary())
        return None

    def pull_container_image(self, image: str, on_progress: ProgressCallback | None = None,
                             follow_pull_policy: bool = False, **kwargs: Any) -> ImageRecord:
        """Pull ``image`` now (so a first start does not wait for it) and return its record.

        Not part of the contract: the master uses it, where a backend has it, to put an
        image on every node ahead of time, and to pull a new container's image with
        progress: ``on_progress(summary)`` is called as the pull goes (see
        :mod:`ipynbsrv_backends.pullprogress`). With ``follow_pull_policy`` it pulls only as
        ``create_container`` would: with the policy ``never`` an image the engine lacks is
        ``ContainerImageNotFoundError``, and one it has is not pulled again."""
        self._no_options(kwargs)
        validate_pk(image, "image")
        self._image_allowed(image)
        if on_progress is not None and not callable(on_progress):
            raise errors.InvalidArgumentError("on_progress must be a callable (it cannot travel as an option).")
        if not isinstance(follow_pull_policy, bool):
            raise errors.InvalidArgumentError("follow_pull_policy must be true or false.")
        if follow_pull_policy and self.pull_policy != "always" and self.container_image_exists(image):
            return self.get_container_image(image)
        if follow_pull_policy and self.pull_policy == "never":
            raise errors.ContainerImageNotFoundError(
                f"The image {image!r} is not on this engine (and the pull policy is 'never')."
            )
        self.pull_image(image, on_progress=on_progress)
        return self.get_container_image(image)

    def pull_image(self, image: str, on_progress: ProgressCallback | None = None) -> None:
        """Pull ``image`` (from the registry it names)."""
        repo, tag = _split_ref(image)
        missing = errors.ContainerImageNotFoundError(f"The image {image!r} could not be pulled.")
        with self._engine(not_found=missing):
            failure = self._stream_errors(self._api().pull(repo, tag=tag or None, stream=True, decode=True,
                                                           auth_config=self._auth_config_for(image)), on_progress)
        if failure:
            raise errors.ContainerImageNotFoundError(f"The image {image!r} could not be pulled: {failure}")

    def _ensure_image(self, image: str) -> None:
        present = self.container_image_exists(image)
        if self.pull_policy == "always" or (not present and self.pull_policy == "if-not-present"):
            try:
                self.pull_image(image)
                return
            except errors.ContainerImageNotFoundError:
                if not present:
                    raise
                logger.warning("Pulling %s failed; using the local copy", image)
                return
        if not present:
            raise errors.ContainerImageNotFoundError(
                f"The image {image!r} is not on this engine (and the pull policy is {self.pull_policy!r})."
            )

    def _limits(self, options: Mapping[str, Any]) -> dict[str, Any]:
        mem = validate_mem_limit(options["mem_limit"]) if "mem_limit" in options else self.default_mem_limit
        cpu = validate_cpu_limit(options["cpu_limit"]) if "cpu_limit" in options else self.default_cpu_limit
        pids = validate_pids_limit(options["pids_limit"]) if "pids_limit" in options else self.default_pids_limit
        return {"mem_limit": mem, "cpu_limit": cpu, "pids_limit": pids}

    def _host_config(self, port_bindings: Mapping[int, tuple[str, int | None]], binds: list[str],
                     limits: Mapping[str, Any]) -> dict[str, Any]:
        kwargs: dict[str, Any] = {
            "port_bindings": {internal: (address, external) if external else (address,)
                              for internal, (address, external) in port_bindings.items()},
            "binds": binds,
        }
        if limits.get("mem_limit"):
            kwargs["mem_limit"] = limits["mem_limit"]
        if limits.get("cpu_limit"):
            kwargs["nano_cpus"] = int(limits["cpu_limit"] * 1e9)
        if limits.get("pids_limit"):
            kwargs["pids_limit"] = limits["pids_limit"]
        if self.no_new_privileges:
            kwargs["security_opt"] = ["no-new-privileges"]
        if self.use_init:
            kwargs["init"] = True
        return self._api().create_host_config(**kwargs)

    def create_container(
        self,
        username: str,
        uid: int,
        name: str,
        ports: list[PortRecord],
        volumes: list[VolumeRecord],
        cmd: str | list[str] | None = None,
        base_url: str | None = None,
        image: str | None = None,
        clone_of: str | None = None,
        **kwargs: Any,
    ) -> ContainerRecord:
        # Everything is checked before the engine is asked to do anything.
        self._no_options(kwargs, CREATE_OPTIONS)
        username = validate_username(username)
        pk = self.engine_name(uid, name)
        port_specs = validate_ports(ports)
        volume_specs = validate_volumes(volumes)
        argv = validate_cmd(cmd)
        if base_url is not None and (not isinstance(base_url, str) or "\x00" in base_url or len(base_url) > 2048):
            raise errors.InvalidArgumentError("base_url must be a string such as '/user/alice/notebook/'.")
        if (image is None) == (clone_of is None):
            raise errors.InvalidArgumentError("Give exactly one of image and clone_of.")
        env = validate_env(kwargs.get("env"))
        limits = self._limits(kwargs)
        if image is not None:
            validate_pk(image, "image")
            self._image_allowed(image)

        source_info = self._inspect_container(clone_of) if clone_of is not None else None
        if self._name_taken(pk):
            raise errors.ContainerAlreadyExistsError(f"{username!r} already has a container named {name!r}.")
        volume_specs, missing_volumes = self._prepare_volumes(volume_specs, username)
        if image is not None:
            self._ensure_image(image)

        labels = {key: "" for key in CONTAINER_LABELS}
        labels.update({
            L_INSTANCE: self.instance, L_KIND: KIND_CONTAINER, L_OWNER: username, L_UID: str(uid),
            L_NAME: name, L_CREATED: iso_utc(dt.datetime.now(dt.UTC)),
            L_PORTS: json.dumps(port_specs), L_VOLUMES: json.dumps(volume_specs),
        })
        environment = {**env, "OWNER": username, "OWNER_UID": str(uid),
                       "BASE_URL": base_url if base_url is not None else "/"}
        auto_ports = [p for p in port_specs if p["external"] is None]
        avoid: set[int] = set()
        if port_specs:
            avoid, kept = self._kept_ports()
            for p in port_specs:
                if p["external"] is not None and p["external"] in kept:
                    raise errors.InvalidArgumentError(
                        f"The host port {p['external']} is kept by the container {kept[p['external']]!r} (running "
                        "or not): pick another port or use external: null."
                    )
            avoid.update(p["external"] for p in port_specs if p["external"] is not None)

        created_volumes: list[str] = []
        helper_image: str | None = None
        created = False
        try:
            created_volumes = self._create_volumes(missing_volumes, username)
            if source_info is not None:
                labels[L_IMAGE] = source_info["Config"]["Labels"].get(L_IMAGE, "")
                labels[L_CLONE_OF] = source_info["Name"].lstrip("/")
                helper_image = f"{self.name_prefix}-clones/{pk}:base"
                self._commit_clean(source_info["Id"], helper_image, pk, {
                    L_INSTANCE: self.instance, L_KIND: KIND_CLONE_BASE, L_CONTAINER: pk},
                    errors.ContainerNotFoundError(f"The container {clone_of!r} vanished."))
                run_image = helper_image
            else:
                assert image is not None
                labels[L_IMAGE] = image
                run_image = image
            binds = [f"{v['source']}:{v['target']}:{v.get('mode', 'rw')}" for v in volume_specs]
            # A port given as external: None is chosen here, once, and written into the
            # container's configuration, so a stop and start (or a restore) keeps it.
            for attempt in range(1, PORT_ATTEMPTS + 1):
                chosen = {p["internal"]: self._pick_port(avoid) for p in auto_ports}
                avoid.update(chosen.values())
                fixed: list[PortRecord] = [
                    {"address": p["address"], "external": chosen.get(p["internal"], p["external"]),
                     "internal": p["internal"]} for p in port_specs
                ]
                labels[L_PORTS] = json.dumps(fixed)
                bindings = {p["internal"]: (p["address"], p["external"]) for p in fixed}
                try:
                    with self._engine(
                        not_found=errors.ContainerImageNotFoundError(f"The image {run_image!r} is not on this engine."),
                        conflict=errors.ContainerAlreadyExistsError(f"{username!r} already has a container named {name!r}."),
                    ):
                        self._api().create_container(
                            run_image, command=argv, name=pk, environment=environment, labels=labels,
                            ports=[p["internal"] for p in port_specs],
                            host_config=self._host_config(bindings, binds, limits),
                        )
                        created = True
                        self._api().start(pk)
                    break
                except errors.InvalidArgumentError as exc:
                    port = _port_conflict(exc.__cause__)
                    if not created or port is None or port not in chosen.values():
                        raise
                    # The engine binds at start: the port was taken after all. Try another.
                    self._remove_quietly(pk)
                    created = False
                    if attempt == PORT_ATTEMPTS:
                        raise errors.BackendUnavailableError(
                            f"No free host port found for {pk!r} in {PORT_ATTEMPTS} attempts (the last, {port}, "
                            f"was taken at start): free ports in port_range {self.port_range[0]}-"
                            f"{self.port_range[1]} or widen it."
                        ) from exc.__cause__
                    logger.info("Host port %s was taken when %s started; trying another", port, pk)
            logger.info("Created container %s for %s from %s", pk, username, labels[L_IMAGE] or clone_of)
            return self.get_container(pk)
        except Exception:
            if created:
                self._remove_quietly(pk)
            for volume in created_volumes:
                with contextlib.suppress(Exception):
                    self._api().remove_volume(volume)
            raise
        finally:
            if helper_image is not None:
                # The clone keeps the layers; the tag goes, and the untagged image is pruned
                # when the clone is deleted.
                with contextlib.suppress(Exception):
                    self._api().remove_image(helper_image, force=True)
                if not created:
                    self._prune_images()

    def _kept_ports(self) -> tuple[set[int], dict[int, str]]:
        """Host ports containers on this engine hold: every port a running container has
        bound, and every port one of this backend's kind (of any instance) keeps in its
        configuration, running or stopped (the latter by container name). One engine call."""
        with self._engine():
            items = self._api().containers(all=True)
        taken: set[int] = set()
        kept: dict[int, str] = {}
        for item in items:
            taken.update(int(p["PublicPort"]) for p in item.get("Ports") or [] if p.get("PublicPort"))
            try:
                specs = json.loads((item.get("Labels") or {}).get(L_PORTS) or "[]")
            except ValueError:
                continue
            for spec in specs if isinstance(specs, list) else []:
                external = spec.get("external") if isinstance(spec, dict) else None
                if isinstance(external, int):
                    kept[external] = (item.get("Names") or ["/?"])[0].lstrip("/")
        return taken | set(kept), kept

    def _random_port(self) -> int:
        low, high = self.port_range
        return low + secrets.randbelow(high - low + 1)

    def _pick_port(self, avoid: set[int]) -> int:
        """A host port from ``port_range`` that is not in ``avoid``: random draws first, then
        a scan from a random point, so a nearly full range is still found."""
        low, high = self.port_range
        for _ in range(32):
            port = self._random_port()
            if port not in avoid:
                return port
        start = self._random_port()
        for offset in range(high - low + 1):
            port = low + (start - low + offset) % (high - low + 1)
            if port not in avoid:
                return port
        raise errors.BackendUnavailableError(
            f"No free host port left in port_range {low}-{high} on {self.base_url}: widen port_range or delete "
            "unused containers."
        )

    def _start_keeping_ports(self, container_id: str, pk: str, action: Any) -> None:
        """Run ``action`` (a start or restart); a host port the container keeps but cannot
        bind is a clear conflict, never a silent move to another port."""
        try:
            with self._engine(not_found=errors.ContainerNotFoundError(f"The container {pk!r} vanished.")):
                action()
        except errors.InvalidArgumentError as exc:
            port = _port_conflict(exc.__cause__)
            if port is None:
                raise
            raise errors.IllegalContainerStateError(
                f"The container {pk!r} cannot start: its host port {port} is now taken by another process or "
                "container on the node. The container keeps that port so its URL does not change: free the port "
                "(stop what listens there) and start it again, or recreate the container to get another port."
            ) from exc.__cause__

    def _name_taken(self, pk: str) -> bool:
        """Whether the engine has any container (managed or not) with this name."""
        with self._engine():
            items = self._api().containers(all=True, filters={"name": f"^/{re.escape(pk)}$"})
        return bool(items)

    def _remove_quietly(self, container: str) -> None:
        try:
            with self._engine():
                self._api().remove_container(container, force=True, v=False)
        except errors.BackendError as exc:
            logger.error("Could not remove the half-created container %s: %s", container, exc)

    # ------------------------------------------------------------------ lifecycle

    def start_container(self, container: str, **kwargs: Any) -> None:
        self._no_options(kwargs)
        info = self._inspect_container(container)
        if info["State"].get("Paused"):
            raise errors.IllegalContainerStateError(f"The container {container!r} is suspended: resume it instead.")
        if info["State"].get("Running"):
            return
        self._recheck_binds(info, "started")
        self._start_keeping_ports(info["Id"], container, lambda: self._api().start(info["Id"]))

    def stop_container(self, container: str, **kwargs: Any) -> None:
        self._no_options(kwargs)
        info = self._inspect_container(container)
        with self._engine(not_found=errors.ContainerNotFoundError(f"The container {container!r} vanished.")):
            if info["State"].get("Paused"):
                self._api().unpause(info["Id"])
            if info["State"].get("Running"):
                self._api().stop(info["Id"], timeout=self.stop_timeout)

    def restart_container(self, container: str, **kwargs: Any) -> None:
        self._no_options(kwargs)
        info = self._inspect_container(container)
        self._recheck_binds(info, "restarted")
        with self._engine(not_found=errors.ContainerNotFoundError(f"The container {container!r} vanished.")):
            if info["State"].get("Paused"):
                self._api().unpause(info["Id"])
        self._start_keeping_ports(info["Id"], container,
                                  lambda: self._api().restart(info["Id"], timeout=self.stop_timeout))

    def suspend_container(self, container: str, **kwargs: Any) -> None:
        self._no_options(kwargs)
        info = self._inspect_container(container)
        if info["State"].get("Paused"):
            return
        if not info["State"].get("Running"):
            raise errors.IllegalContainerStateError(f"The container {container!r} is stopped: only a running one can be suspended.")
        with self._engine(conflict=errors.IllegalContainerStateError(f"The container {container!r} cannot be suspended now.")):
            self._api().pause(info["Id"])

    def resume_container(self, container: str, **kwargs: Any) -> None:
        self._no_options(kwargs)
        info = self._inspect_container(container)
        if not info["State"].get("Paused"):
            if info["State"].get("Running"):
                return
            raise errors.IllegalContainerStateError(f"The container {container!r} is stopped, not suspended: start it instead.")
        with self._engine(conflict=errors.IllegalContainerStateError(f"The container {container!r} cannot be resumed now.")):
            self._api().unpause(info["Id"])

    def delete_container(self, container: str, **kwargs: Any) -> None:
        """Remove the container (in any state) and its snapshots. Volumes are kept."""
        self._no_options(kwargs)
        info = self._inspect_container(container)
        pk = info["Name"].lstrip("/")
        with self._engine(not_found=errors.ContainerNotFoundError(f"The container {container!r} vanished.")):
            self._api().remove_container(info["Id"], force=True, v=False)
        for ref, _item in self._list_images(KIND_SNAPSHOT, **{L_CONTAINER: pk}):
            try:
                with self._engine(not_found=errors.ContainerSnapshotNotFoundError()):
                    self._api().remove_image(ref, force=True)
            except errors.NotFoundError:
                pass
        self._prune_images()
        logger.info("Deleted container %s", pk)

    def exec_in_container(self, container: str, cmd: str | list[str], **kwargs: Any) -> str:
        self._no_options(kwargs)
        argv = validate_cmd(cmd, allow_none=False)
        info = self._inspect_container(container)
        if info["State"].get("Paused") or not info["State"].get("Running"):
            state = "suspended" if info["State"].get("Paused") else "stopped"
            raise errors.IllegalContainerStateError(f"Cannot run a command in {container!r}: it is {state}.")
        illegal = errors.IllegalContainerStateError(f"Cannot run a command in {container!r} now: it is not running.")
        with self._engine(conflict=illegal, not_found=errors.ContainerNotFoundError(f"The container {container!r} vanished.")):
            exec_id = self._api().exec_create(info["Id"], argv, stdout=True, stderr=True)
            output = self._api().exec_start(exec_id)
        return output.decode("utf-8", errors="replace") if isinstance(output, bytes) else str(output)

    def get_container_logs(self, container: str, tail: int | None = None, since: Any = None, **kwargs: Any) -> list[str]:
        self._no_options(kwargs)
        tail = validate_tail(tail)
        moment = parse_since(since)
        info = self._inspect_container(container)
        with self._engine(not_found=errors.ContainerNotFoundError(f"The container {container!r} vanished.")):
            output = self._api().logs(info["Id"], stdout=True, stderr=True, timestamps=False,
                                      tail="all" if tail is None else tail,
                                      since=int(moment.timestamp()) if moment else None)
        text = output.decode("utf-8", errors="replace") if isinstance(output, bytes) else str(output)
        return text.splitlines()

    # ------------------------------------------------------------------ images

    def create_container_image(self, container: str, name: str, **kwargs: Any) -> ImageRecord:
        self._no_options(kwargs)
        info = self._inspect_container(container)
        labels = info["Config"].get("Labels") or {}
        ref = self._image_ref(int(labels.get(L_UID) or 0), name)
        with self._name_lock:
            if self.container_image_exists(ref):
                raise errors.ContainerAlreadyExistsError(f"An image named {ref!r} already exists.")
            self._commit_clean(info["Id"], ref, info["Name"].lstrip("/"), {
                L_INSTANCE: self.instance, L_KIND: KIND_IMAGE, L_CONTAINER: info["Name"].lstrip("/"),
                L_IMAGE_NAME: name if ":" in name else f"{name}:latest",
                L_CREATED: iso_utc(dt.datetime.now(dt.UTC)),
            }, errors.ContainerNotFoundError(f"The container {container!r} vanished."))
        if self.registry:
            try:
                self.push_image(ref)
            except errors.BackendError:
                with contextlib.suppress(Exception):
                    self._api().remove_image(ref, force=True)
                raise
        logger.info("Committed container %s to image %s", container, ref)
        return self.get_container_image(ref)

    def push_image(self, image: str) -> None:
        """Push ``image`` to the registry it names."""
        repo, tag = _split_ref(image)
        with self._engine(not_found=errors.ContainerImageNotFoundError(f"No image {image!r} to push.")):
            failure = self._stream_errors(self._api().push(repo, tag=tag, stream=True, decode=True,
                                                           auth_config=self._auth_config_for(image)))
        if failure:
            raise errors.ContainerBackendError(f"Pushing {image!r} to the registry {self.registry} failed: {failure}")

    def get_container_image(self, image: str, **kwargs: Any) -> ImageRecord:
        """Any image the engine has (so a caller can check a base image before a create);
        ``managed`` tells whether this backend made it."""
        self._no_options(kwargs)
        info = self._inspect_image(image, None, errors.ContainerImageNotFoundError(f"No image {image!r} on this engine."))
        tags = info.get("RepoTags") or []
        pk = image
        if image not in tags:
            repo, tag = _split_ref(image)
            candidate = f"{repo}:{tag}"
            pk = candidate if candidate in tags else (tags[0] if tags else info["Id"])
        return self._image_record(info, pk)

    def get_container_images(self, **kwargs: Any) -> list[ImageRecord]:
        """The images this backend committed."""
        self._no_options(kwargs)
        return [self._image_record({**item, "Config": {"Labels": item.get("Labels")}}, ref)
                for ref, item in self._list_images(KIND_IMAGE)]

    def delete_container_image(self, image: str, **kwargs: Any) -> None:
        """Remove an image this backend committed, here and in the registry; base images
        are never touched."""
        self._no_options(kwargs)
        validate_pk(image, "image")
        missing = errors.ContainerImageNotFoundError(f"No image {image!r} was made by this backend.")
        local = True
        try:
            info = self._inspect_image(image, KIND_IMAGE, missing)
            if image not in (info.get("RepoTags") or []):
                raise missing
        except errors.ContainerImageNotFoundError:
            local = False
        in_registry = self._delete_from_registry(image)
        if not local and not in_registry:
            raise missing
        if local:
            with self._engine(not_found=missing):
                self._api().remove_image(image, force=True)
            self._prune_images()
        logger.info("Deleted image %s", image)

    def _registry_base(self) -> str | None:
        if not self.registry:
            return None
        return self.registry.split("/", 1)[0]

    def _delete_from_registry(self, image: str) -> bool:
        """Delete ``image`` (one of ours under the registry) from the registry's storage.

        Returns whether the registry had it. Only images named under this backend's
        registry and name prefix are ever deleted there."""
        host = self._registry_base()
        if not host or not image.startswith(f"{self.registry}/{self.name_prefix}-u"):
            return False
        repo, tag = _split_ref(image)
        name = repo[len(host) + 1:]
        accept = ", ".join([
            "application/vnd.docker.distribution.manifest.v2+json",
            "application/vnd.oci.image.manifest.v1+json",
            "application/vnd.docker.distribution.manifest.list.v2+json",
            "application/vnd.oci.image.index.v1+json",
        ])
        auth = (self.registry_username, self.registry_password or "") if self.registry_username else None
        session = requests.Session()
        session.verify = self.registry_ca_cert or True
        last_error: Exception | None = None
        schemes = ["https", "http"] if self.registry_insecure else ["https"]
        for scheme in schemes:
            base = f"{scheme}://{host}/v2/{name}/manifests"
            try:
                head = session.head(f"{base}/{tag}", headers={"Accept": accept}, auth=auth, timeout=self.timeout)
                if head.status_code == 404:
                    return False
                head.raise_for_status()
                digest = head.headers.get("Docker-Content-Digest")
                if not digest:
                    raise errors.ContainerBackendError(f"The registry {host} gave no digest for {image!r}.")
                gone = session.delete(f"{base}/{digest}", auth=auth, timeout=self.timeout)
                if gone.status_code == 405:
                    raise errors.ContainerBackendError(
                        f"The registry {host} does not allow deletes: enable storage.delete in its configuration."
                    )
                if gone.status_code not in (200, 202, 404):
                    gone.raise_for_status()
                return gone.status_code != 404
            except (requests.exceptions.SSLError, requests.exceptions.ConnectionError) as exc:
                last_error = exc
                continue
            except requests.exceptions.RequestException as exc:
                raise errors.ContainerBackendError(f"Deleting {image!r} from the registry {host} failed: {exc}") from exc
            finally:
                session.close()
        raise errors.BackendUnavailableError(
            f"Cannot reach the registry {host} to delete {image!r}: {last_error}"
        ) from last_error

    # ------------------------------------------------------------------ snapshots

    def container_snapshot_exists(self, snapshot: str, **kwargs: Any) -> bool:
        self._no_options(kwargs)
        try:
            self._inspect_snapshot(snapshot)
        except errors.ContainerSnapshotNotFoundError:
            return False
        return True

    def create_container_snapshot(self, container: str, name: str, **kwargs: Any) -> SnapshotRecord:
        self._no_options(kwargs)
        info = self._inspect_container(container)
        pk = info["Name"].lstrip("/")
        ref = self._snapshot_ref(pk, name)
        with self._name_lock:
            if self.container_image_exists(ref):
                raise errors.ContainerAlreadyExistsError(f"The container {pk!r} already has a snapshot named {name!r}.")
            self._commit_clean(info["Id"], ref, pk, {
                L_INSTANCE: self.instance, L_KIND: KIND_SNAPSHOT, L_CONTAINER: pk, L_SNAPSHOT: name,
            }, errors.ContainerNotFoundError(f"The container {container!r} vanished."))
        logger.info("Snapshot %s of container %s taken", name, pk)
        return self.get_container_snapshot(ref)

    def delete_container_snapshot(self, snapshot: str, **kwargs: Any) -> None:
        self._no_options(kwargs)
        self._inspect_snapshot(snapshot)
        with self._engine(not_found=errors.ContainerSnapshotNotFoundError(f"No snapshot {snapshot!r}.")):
            self._api().remove_image(snapshot, force=True)
        self._prune_images()

    def get_container_snapshot(self, snapshot: str, **kwargs: Any) -> SnapshotRecord:
        self._no_options(kwargs)
        return self._snapshot_record(self._inspect_snapshot(snapshot), snapshot)

    def get_container_snapshots(self, **kwargs: Any) -> list[SnapshotRecord]:
        self._no_options(kwargs)
        return [self._snapshot_record(item, ref) for ref, item in self._list_images(KIND_SNAPSHOT)]

    def get_containers_snapshots(self, container: str, **kwargs: Any) -> list[SnapshotRecord]:
        self._no_options(kwargs)
        pk = self._inspect_container(container)["Name"].lstrip("/")
        return [self._snapshot_record(item, ref) for ref, item in self._list_images(KIND_SNAPSHOT, **{L_CONTAINER: pk})]

    def restore_container_snapshot(self, container: str, snapshot: str, **kwargs: Any) -> ContainerRecord:
        """Recreate the container from the snapshot with the same name, ports, volumes,
        environment and limits. The pk does not change. On failure the old container is
        put back as it was.

        Option ``env``: variables to set or replace in the kept environment (the master gives
        the container a new access secret this way)."""
        self._no_options(kwargs, ("env",))
        replaced = validate_env(kwargs.get("env"))
        old = self._inspect_container(container)
        self._recheck_binds(old, "restored")
        pk = old["Name"].lstrip("/")
        snap = self._inspect_snapshot(snapshot)
        if (snap["Config"].get("Labels") or {}).get(L_CONTAINER) != pk:
            raise errors.ContainerSnapshotNotFoundError(f"{snapshot!r} is not a snapshot of the container {pk!r}.")
        labels = {key: (old["Config"].get("Labels") or {}).get(key, "") for key in CONTAINER_LABELS}
        was_running = bool(old["State"].get("Running"))
        host = old["HostConfig"]
        # Keep the external ports the container has now, so its URLs stay the same.
        bound = self._record_from_inspect(old)["ports"]
        bindings = {p["internal"]: (p["address"], p["external"]) for p in bound}
        limits = {
            "mem_limit": host.get("Memory") or None,
            "cpu_limit": (host.get("NanoCpus") or 0) / 1e9 or None,
            "pids_limit": host.get("PidsLimit") or None,
        }
        parked = f"{pk}-restoring-{int(time.time() * 1000)}"
        vanished = errors.ContainerNotFoundError(f"The container {pk!r} vanished during the restore.")
        with self._engine(not_found=vanished):
            if old["State"].get("Paused"):
                self._api().unpause(old["Id"])
            if was_running:
                self._api().stop(old["Id"], timeout=self.stop_timeout)
            self._api().rename(old["Id"], parked)
        created = False
        try:
            with self._engine(not_found=errors.ContainerSnapshotNotFoundError(f"The snapshot {snapshot!r} vanished.")):
                self._api().create_container(
                    snapshot, command=old["Config"].get("Cmd"), name=pk,
                    environment=_with_env(old["Config"].get("Env") or [], replaced), labels=labels,
                    ports=list(bindings), host_config=self._host_config(bindings, host.get("Binds") or [], limits),
                )
                created = True
                if was_running:
                    self._api().start(pk)
        except Exception:
            logger.error("Restoring %s from %s failed; putting the old container back", pk, snapshot)
            if created:
                self._remove_quietly(pk)
            with contextlib.suppress(Exception):
                self._api().rename(old["Id"], pk)
                if was_running:
                    self._api().start(old["Id"])
            raise
        self._remove_quietly(old["Id"])
        self._prune_images()
        logger.info("Restored container %s from snapshot %s", pk, snapshot)
        return self.get_container(pk)

    # ------------------------------------------------------------------ snapshots between nodes

    def _commit_clean(self, container_id: str, target: str, container_pk: str, labels: Mapping[str, str],
                      missing: errors.BackendError) -> None:
        """Commit the container to the image ``target`` with ``labels``, leaving no access
        secret (:data:`~ipynbsrv_backends.contract.ACCESS_SECRET_ENV`) in the image.

        A commit copies the container's environment into the image twice: into the image's
        configuration, where a blank value overrides it, and into its record of the container it
        came from (``ContainerConfig``), which nothing overrides. So the container is committed
        to an untagged intermediate image with the secret blanked, and that is committed again
        through a never-started helper (:meth:`_commit_relabelled`) whose configuration carries
        no secret. The intermediate shares its layers with ``target`` and stays as its untagged
        parent; it goes when ``target`` does (pruned with the dangling images)."""
        with self._engine(not_found=missing):
            first = self._api().commit(container_id, conf={
                "Env": [f"{ACCESS_SECRET_ENV}="],
                "Labels": {L_INSTANCE: self.instance, L_KIND: KIND_TRANSFER, L_CONTAINER: container_pk},
            })
        try:
            self._commit_relabelled(first["Id"], target, container_pk, labels, missing)
        except Exception:
            with contextlib.suppress(Exception):
                self._api().remove_image(first["Id"], force=True)
            raise

    def _commit_relabelled(self, source: str, target: str, container_pk: str, labels: Mapping[str, str],
                           missing: errors.BackendError) -> None:
        """Make the image ``target``: the filesystem and config of the image ``source`` with
        ``labels`` on top (the engine merges them with those ``source`` has).

        The engine relabels only by a commit, so a helper container is made from ``source``
        (never started; labelled with this backend's instance and :data:`KIND_TRANSFER`, so a
        crash leaves nothing unmanaged and it is never a user's container), committed, and
        always removed."""
        repo, tag = _split_ref(target)
        helper: str | None = None
        try:
            with self._engine(not_found=missing):
                created = self._api().create_container(
                    source, name=f"{self.name_prefix}-transfer-{uuid.uuid4().hex[:16]}",
                    labels={L_INSTANCE: self.instance, L_KIND: KIND_TRANSFER, L_CONTAINER: container_pk},
                )
                helper = created["Id"]
                self._api().commit(helper, repository=repo, tag=tag, conf={"Labels": dict(labels)})
        finally:
            if helper is not None:
                try:
                    with self._engine():
                        self._api().remove_container(helper, force=True, v=True)
                except errors.BackendError as exc:
                    logger.error("Could not remove the transfer helper container %s: %s", helper, exc)

    def _needs_registry(self, what: str) -> str:
        if not self.registry:
            raise errors.CapabilityNotSupportedError(
                f"{what} needs the backend's `registry` option: snapshots travel between nodes through a "
                "registry every node can reach."
            )
        return self.registry

    def export_container_snapshot(self, snapshot: str, **kwargs: Any) -> ImageRecord:
        """Push a copy of the snapshot to the registry, as an image of this backend, so another
        node can :meth:`import_container_snapshot` it; returns that image's record.

        Not part of the contract: the master uses it to move a container's snapshots with it.
        The image is managed like one from :meth:`create_container_image` (its pk is a new,
        unique reference under the registry); :meth:`delete_container_image` removes it here
        and from the registry once the move is done."""
        self._no_options(kwargs)
        validate_pk(snapshot, "snapshot")
        self._needs_registry("Exporting a snapshot")
        info = self._inspect_snapshot(snapshot)
        labels = (info.get("Config") or {}).get("Labels") or {}
        container_pk = labels.get(L_CONTAINER, "")
        uid_label = labels.get(L_UID) or "0"  # the snapshot carries its container's labels
        uid = int(uid_label) if uid_label.isdigit() and len(uid_label) < 11 else 0
        snapshot_name = _split_ref(snapshot)[1]  # the tag of a snapshot's pk is its name
        if not (len(snapshot_name) <= 63 and NAME_RE.fullmatch(snapshot_name)):
            snapshot_name = "snapshot"
        stamp = dt.datetime.now(dt.UTC).strftime("%Y%m%d%H%M%S%f")
        name = f"transfer-{snapshot_name}-{stamp}-{uuid.uuid4().hex[:6]}"
        ref = self._image_ref(uid, name)
        with self._name_lock:
            if self.container_image_exists(ref):
                raise errors.ContainerAlreadyExistsError(f"An image named {ref!r} already exists.")
            self._commit_relabelled(snapshot, ref, container_pk, {
                L_INSTANCE: self.instance, L_KIND: KIND_IMAGE, L_CONTAINER: container_pk,
                L_IMAGE_NAME: f"{name}:latest", L_CREATED: iso_utc(dt.datetime.now(dt.UTC)),
            }, errors.ContainerSnapshotNotFoundError(f"The snapshot {snapshot!r} vanished."))
        try:
            self.push_image(ref)
        except Exception:
            with contextlib.suppress(Exception):
                self._api().remove_image(ref, force=True)
            raise
        logger.info("Exported snapshot %s as %s", snapshot, ref)
        return self.get_container_image(ref)

    def import_container_snapshot(self, container: str, name: str, image: str, **kwargs: Any) -> SnapshotRecord:
        """Make the image ``image`` (what :meth:`export_container_snapshot` pushed, on this
        node or another) the snapshot ``name`` of ``container``; returns the snapshot's record.

        Not part of the contract. The image is pulled from the registry when the engine lacks
        it, and that pulled tag is removed again here (the registry keeps it: deleting it there
        is the caller's). The snapshot is like one :meth:`create_container_snapshot` takes."""
        self._no_options(kwargs)
        validate_name(name, "snapshot name")
        validate_pk(image, "image")
        registry = self._needs_registry("Importing a snapshot")
        if not image.startswith(registry + "/"):
            raise errors.InvalidArgumentError(
                f"The image {image[:200]!r} is not in this backend's registry ({registry}): import what "
                "export_container_snapshot pushed there."
            )
        info = self._inspect_container(container)
        pk = info["Name"].lstrip("/")
        ref = self._snapshot_ref(pk, name)
        taken = errors.ContainerAlreadyExistsError(f"The container {pk!r} already has a snapshot named {name!r}.")
        if self.container_image_exists(ref):
            raise taken  # before any pull
        pulled = False
        if not self.container_image_exists(image):
            self.pull_image(image)
            pulled = True
        try:
            with self._name_lock:
                if self.container_image_exists(ref):
                    raise taken
                self._commit_relabelled(image, ref, pk, {
                    L_INSTANCE: self.instance, L_KIND: KIND_SNAPSHOT, L_CONTAINER: pk, L_SNAPSHOT: name,
                    L_IMAGE_NAME: "",
                }, errors.ContainerImageNotFoundError(f"The image {image!r} vanished."))
        finally:
            if pulled:
                # Only the tag goes: the snapshot keeps the layers it shares with it.
                try:
                    with self._engine(not_found=errors.ContainerImageNotFoundError()):
                        self._api().remove_image(image)
                except errors.NotFoundError:
                    pass
                except errors.BackendError as exc:
                    logger.warning("Could not remove the pulled transfer image %s: %s", image, exc)
        logger.info("Imported %s as snapshot %s of container %s", image, name, pk)
        return self.get_container_snapshot(ref)
