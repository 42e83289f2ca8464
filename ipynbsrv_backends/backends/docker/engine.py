"""Engine access: the one place the ``Docker`` backend talks to docker-py.

The client (deaf to the environment), the translation of docker-py and ``requests`` errors
into the error tree (with words that say which option to fix), and the lookups every
operation starts from: a container, image or snapshot this backend instance manages.
"""

from __future__ import annotations

import contextlib
import logging
import re
import ssl
import threading
from collections.abc import Iterator, Mapping
from typing import Any

import docker
import docker.errors
import requests.exceptions

from ... import errors
from ...contract import (
    ImagePullingContainerBackend,
    NodeStatusContainerBackend,
    SnapshotTransferContainerBackend,
    SuspendableContainerBackend,
)
from ...validation import validate_pk
from ..options import MethodOptions
from .constants import KIND_CONTAINER, KIND_SNAPSHOT, L_INSTANCE, L_KIND, PORT_CONFLICT_RE
from .records import is_ours

logger = logging.getLogger(__name__)

__all__ = ["DockerEngine", "EngineAccess", "port_conflict"]


def port_conflict(exc: BaseException | None) -> int | None:
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


class EngineAccess(MethodOptions):
    """The connection to one engine and the translation of its errors, claiming no
    capability: the ``Docker`` backend and the ``DockerSwarm`` backend (which talks to a
    swarm manager's engine) both stand on it."""

    # Set by the constructor from its options.
    base_url: str
    version: str | None
    timeout: float
    max_pool_size: int
    tls_verify: bool
    tls_ca_cert: str | None
    tls_client_cert: str | None
    tls_client_key: str | None

    _client: docker.APIClient | None
    _client_lock: threading.Lock
    _name_lock: threading.Lock

    def _configure(self, names: list[str], config: dict[str, Any]) -> None:
        """Keep a validated configuration as attributes; no engine is contacted yet."""
        for key in names:
            setattr(self, key, config[key])
        self._client = None
        self._client_lock = threading.Lock()
        self._name_lock = threading.Lock()

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
            raise self._refused(exc, not_found, conflict) from exc
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

    def _refused(self, exc: docker.errors.APIError, not_found: errors.BackendError | None,
                 conflict: errors.BackendError | None) -> errors.BackendError:
        """The error an engine's refusal (an HTTP error answer) stands for."""
        explanation = str(exc.explanation or exc)
        status = exc.status_code
        lowered = explanation.lower()
        if status == 400 and "http request to an https server" in lowered:
            return errors.BackendUnavailableError(self._unreachable(exc))
        if status == 404 and not_found is not None:
            return not_found
        if status == 409 and conflict is not None:
            return conflict
        if "port is already allocated" in lowered or "address already in use" in lowered:
            return errors.InvalidArgumentError(
                f"A requested host port is already in use ({explanation}); pick another port or use external: null."
            )
        if status == 400 or (status == 500 and "range of cpus" in lowered):
            return errors.InvalidArgumentError(f"The Docker engine refused the request: {explanation}")
        if status == 404:
            return errors.ContainerBackendError(f"Not found on the Docker engine: {explanation}")
        return errors.ContainerBackendError(f"The Docker engine refused the request: {explanation}")

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
            if isinstance(cause, ssl.SSLError):
                return self._tls_failure(cause, where)
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

    def _tls_failure(self, cause: ssl.SSLError, where: str) -> str:
        """What a failed TLS handshake with the engine says about the TLS options."""
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


class DockerEngine(EngineAccess, SnapshotTransferContainerBackend, SuspendableContainerBackend,
                   ImagePullingContainerBackend, NodeStatusContainerBackend):
    """The engine connection and lookups the parts of the ``Docker`` backend share."""

    # Set by the constructor from its options (see ``docker/options.py``).
    registry: str | None
    allowed_volume_roots: tuple[str, ...]
    instance: str
    name_prefix: str
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
    volume_usage_every: float | None

    _name_lock: threading.Lock

    # ------------------------------------------------------------------ lookups

    def _labels_filter(self, kind: str, **extra: str) -> dict[str, Any]:
        labels = [f"{L_INSTANCE}={self.instance}", f"{L_KIND}={kind}"]
        labels += [f"{key}={value}" for key, value in extra.items()]
        return {"label": labels}

    def _is_ours(self, labels: Mapping[str, str] | None, kind: str) -> bool:
        return is_ours(labels, self.instance, kind)

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
