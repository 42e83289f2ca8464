"""The error table of CONTRACT.md, exactly."""

from __future__ import annotations

import pytest

from ipynbsrv_backends import errors

TABLE = [
    ("BackendError", 500, "backend_error", None),
    ("BackendUnavailableError", 503, "backend_unavailable", "BackendError"),
    ("BackendTimeoutError", 504, "backend_timeout", "BackendError"),
    ("AuthenticationError", 401, "authentication_failed", "BackendError"),
    ("InvalidArgumentError", 400, "invalid_argument", "BackendError"),
    ("CapabilityNotSupportedError", 501, "not_supported", "BackendError"),
    ("ContainerBackendError", 500, "container_backend_error", "BackendError"),
    ("ContainerNotFoundError", 404, "container_not_found", "ContainerBackendError"),
    ("ContainerImageNotFoundError", 404, "image_not_found", "ContainerBackendError"),
    ("ContainerSnapshotNotFoundError", 404, "snapshot_not_found", "ContainerBackendError"),
    ("ContainerAlreadyExistsError", 409, "already_exists", "ContainerBackendError"),
    ("IllegalContainerStateError", 409, "illegal_state", "ContainerBackendError"),
]


@pytest.mark.parametrize("name,status,code,parent", TABLE)
def test_table(name, status, code, parent):
    cls = getattr(errors, name)
    assert cls.status_code == status
    assert cls.code == code
    if parent:
        assert issubclass(cls, getattr(errors, parent))
    assert issubclass(cls, errors.BackendError)
    assert errors.ERRORS_BY_CODE[code] is cls


@pytest.mark.parametrize("name", ["ContainerNotFoundError", "ContainerImageNotFoundError", "ContainerSnapshotNotFoundError"])
def test_not_found_share_a_base(name):
    assert issubclass(getattr(errors, name), errors.NotFoundError)


def test_codes_are_unique():
    codes = [cls.code for cls in errors.ERRORS_BY_CODE.values()]
    assert len(codes) == len(set(codes))


@pytest.mark.parametrize("name,status,code,parent", TABLE)
def test_round_trip_through_a_code(name, status, code, parent):
    original = getattr(errors, name)("what went wrong, and what to do")
    again = errors.error_for_code(**{"code": original.as_dict()["code"], "detail": original.as_dict()["detail"]})
    assert type(again) is type(original)
    assert str(again) == str(original)


def test_unknown_code_falls_back_on_the_status():
    assert type(errors.error_for_code("from_the_future", "x", 404)) is errors.NotFoundError
    assert type(errors.error_for_code("from_the_future", "x", 503)) is errors.BackendUnavailableError
    assert type(errors.error_for_code("from_the_future", "x", 418)) is errors.BackendError
    assert type(errors.error_for_code(None, None, None)) is errors.BackendError


def test_default_detail():
    assert str(errors.ContainerNotFoundError()) == "No such container."
