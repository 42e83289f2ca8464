"""The one error tree of ``ipynbsrv_backends``.

Every error a backend raises is a :class:`BackendError`. Each class carries the HTTP
status the host API answers with and a short machine ``code``; :func:`error_for_code`
turns a code received over HTTP back into the same class, so an error raised on a node
arrives on the master as the same type with the same message.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendUnavailableError",
    "BackendTimeoutError",
    "AuthenticationError",
    "InvalidArgumentError",
    "CapabilityNotSupportedError",
    "ContainerBackendError",
    "NotFoundError",
    "ContainerNotFoundError",
    "ContainerImageNotFoundError",
    "ContainerSnapshotNotFoundError",
    "ContainerAlreadyExistsError",
    "IllegalContainerStateError",
    "NoNodeAvailableError",
    "QuotaExceededError",
    "ERRORS_BY_CODE",
    "error_for_code",
]


class BackendError(Exception):
    """Base of every error raised by a container backend."""

    status_code: int = 500
    code: str = "backend_error"
    default_detail: str = "The container backend failed."

    def __init__(self, detail: str | None = None) -> None:
        self.detail = str(detail) if detail else self.default_detail
        super().__init__(self.detail)

    def __str__(self) -> str:
        return self.detail

    def as_dict(self) -> dict[str, str]:
        """The body of a host API error answer."""
        return {"code": self.code, "detail": self.detail}


class BackendUnavailableError(BackendError):
    """The engine or the node cannot be reached."""

    status_code = 503
    code = "backend_unavailable"
    default_detail = "The container backend cannot be reached."


class BackendTimeoutError(BackendError):
    """Connected, but no answer came in time."""

    status_code = 504
    code = "backend_timeout"
    default_detail = "The container backend did not answer in time."


class AuthenticationError(BackendError):
    """The host API refused the caller's credentials."""

    status_code = 401
    code = "authentication_failed"
    default_detail = "The node refused the credentials (check the host API token)."


class InvalidArgumentError(BackendError):
    """Bad or forbidden input: a name, port, volume or option."""

    status_code = 400
    code = "invalid_argument"
    default_detail = "Invalid argument."


class CapabilityNotSupportedError(BackendError):
    """The backend does not implement the requested sub-contract."""

    status_code = 501
    code = "not_supported"
    default_detail = "The backend does not support this operation."


class ContainerBackendError(BackendError):
    """Base of the errors about containers, images and snapshots."""

    status_code = 500
    code = "container_backend_error"
    default_detail = "The container operation failed."


class NotFoundError(ContainerBackendError):
    """Base of the three not-found errors."""

    status_code = 404
    code = "not_found"
    default_detail = "Not found."


class ContainerNotFoundError(NotFoundError):
    code = "container_not_found"
    default_detail = "No such container."


class ContainerImageNotFoundError(NotFoundError):
    code = "image_not_found"
    default_detail = "No such image."


class ContainerSnapshotNotFoundError(NotFoundError):
    code = "snapshot_not_found"
    default_detail = "No such snapshot."


class ContainerAlreadyExistsError(ContainerBackendError):
    status_code = 409
    code = "already_exists"
    default_detail = "The name is already taken."


class IllegalContainerStateError(ContainerBackendError):
    status_code = 409
    code = "illegal_state"
    default_detail = "The container is not in a state that allows this operation."


class NoNodeAvailableError(BackendUnavailableError):
    """The master found no node that may take a new container."""

    status_code = 503
    code = "no_node_available"
    default_detail = "No node can take a new container right now."


class QuotaExceededError(BackendError):
    """The user already has as many containers as they may."""

    status_code = 429
    code = "quota_exceeded"
    default_detail = "You have reached the most containers you may have."


def _all_subclasses(cls: type[BackendError]) -> list[type[BackendError]]:
    found = [cls]
    for sub in cls.__subclasses__():
        found.extend(_all_subclasses(sub))
    return found


#: Machine code -> error class. The one table both the host API and ``HttpRemote`` use.
ERRORS_BY_CODE: dict[str, type[BackendError]] = {
    cls.code: cls for cls in _all_subclasses(BackendError) if cls.__module__ == __name__
}


def error_for_code(code: str | None, detail: str | None = None, status: int | None = None) -> BackendError:
    """Rebuild the error a node answered with.

    An unknown code (a newer node) falls back on the status: 4xx/5xx classes whose status
    matches, else :class:`BackendError`, so a master and a node of different versions still
    understand each other.
    """
    cls = ERRORS_BY_CODE.get(code or "")
    if cls is None and status is not None:
        cls = {
            400: InvalidArgumentError,
            401: AuthenticationError,
            404: NotFoundError,
            409: ContainerBackendError,
            501: CapabilityNotSupportedError,
            503: BackendUnavailableError,
            504: BackendTimeoutError,
        }.get(status)
    return (cls or BackendError)(detail)
