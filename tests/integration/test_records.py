"""Records declared once (``contract.py``): the host API's serializers agree with them, and
the ``Docker`` backend's real records (built from engine JSON, and from a real engine) carry
exactly the declared keys with the declared types."""

from __future__ import annotations

import types
import typing
from typing import Any, Literal

import pytest

from ipynbsrv_backends.backends.docker.records import image_record, record_from_inspect, snapshot_record
from ipynbsrv_backends.contract import RECORDS, ContainerRecord, ImageRecord, SnapshotRecord, record_fields
from ipynbsrv_backends.hostapi import serializers as s

from ..conftest import TEST_IMAGE


def conforms(value: Any, hint: Any) -> list[str]:
    """What in ``value`` does not match the type ``hint`` (empty when it all does)."""
    origin, args = typing.get_origin(hint), typing.get_args(hint)
    if origin in (typing.Union, types.UnionType):
        problems = [conforms(value, arg) for arg in args]
        return [] if any(not p for p in problems) else [f"{value!r} is none of {hint}"]
    if origin is Literal:
        return [] if value in args else [f"{value!r} not in {args}"]
    if origin is list:
        if not isinstance(value, list):
            return [f"{value!r} is not a list"]
        return [problem for item in value for problem in conforms(item, args[0])]
    if hint is type(None):
        return [] if value is None else [f"{value!r} is not None"]
    if isinstance(hint, type) and hint.__name__ in RECORDS:
        return record_problems(value, hint)
    if hint is int:
        return [] if isinstance(value, int) and not isinstance(value, bool) else [f"{value!r} is not an int"]
    return [] if isinstance(value, hint) else [f"{value!r} is not a {hint.__name__}"]


def record_problems(record: Any, record_type: type) -> list[str]:
    if not isinstance(record, dict):
        return [f"{record!r} is not a dict"]
    fields = record_fields(record_type)
    problems = [f"undeclared key {key!r}" for key in record if key not in fields]
    problems += [f"missing key {key!r}" for key, (_, required) in fields.items() if required and key not in record]
    for key, (hint, _) in fields.items():
        if key in record:
            problems += [f"{key}: {problem}" for problem in conforms(record[key], hint)]
    return problems


@pytest.mark.parametrize("name", sorted(RECORDS))
def test_the_response_serializers_are_the_records(name):
    serializer = getattr(s, f"{name}Response")()
    fields = record_fields(RECORDS[name])
    assert set(serializer.fields) == set(fields)
    assert {key: field.required for key, field in serializer.fields.items()} == {
        key: required for key, (_, required) in fields.items()}


@pytest.mark.parametrize(("serializer", "record"), [
    (s.PortRecordSerializer, "PortRecord"), (s.VolumeRecordSerializer, "VolumeRecord"),
])
def test_the_request_serializers_know_the_records_keys(serializer, record):
    assert set(serializer().fields) == set(record_fields(RECORDS[record]))


def test_the_extras_are_declared_not_required():
    assert record_fields(ContainerRecord)["clone_of"][1] is False
    assert record_fields(ImageRecord)["managed"][1] is False
    assert record_fields(SnapshotRecord)["size"][1] is False
    assert record_fields(ContainerRecord)["pk"][1] is True


def test_records_built_from_engine_json_are_the_declared_ones():
    labels = {"org.ipynbsrv.ports": '[{"address": "127.0.0.1", "external": null, "internal": 8888}]',
              "org.ipynbsrv.volumes": '[{"source": "data", "target": "/data", "mode": "rw"}]',
              "org.ipynbsrv.uid": "7", "org.ipynbsrv.clone-of": "ipynbsrv-u7-a"}
    container = record_from_inspect({"Name": "/ipynbsrv-u7-b", "State": {"Status": "paused"},
                                     "Config": {"Labels": labels}, "NetworkSettings": {"Ports": {}}})
    assert record_problems(container, ContainerRecord) == []
    image = image_record({"Labels": {}, "Created": "2026-01-01T00:00:00.123456789Z", "Size": 5}, "busybox:latest",
                         "site", "10.0.0.1:5000")
    assert record_problems(image, ImageRecord) == []
    assert record_problems(snapshot_record({"Labels": {}}, "x:y"), SnapshotRecord) == []
    assert record_problems({**image, "colour": "blue"}, ImageRecord) == ["undeclared key 'colour'"]


def test_the_docker_backends_real_records_are_the_declared_ones(docker_backend, engine):
    container = docker_backend.create_container("carol", 5252, "records", [
        {"address": "127.0.0.1", "external": None, "internal": 8888}], [], image=TEST_IMAGE)
    assert record_problems(container, ContainerRecord) == []
    snapshot = docker_backend.create_container_snapshot(container["pk"], "s1")
    image = docker_backend.create_container_image(container["pk"], "records")
    clone = docker_backend.create_container("carol", 5252, "clone", [], [], clone_of=container["pk"])
    for record, record_type in [(snapshot, SnapshotRecord), (image, ImageRecord), (clone, ContainerRecord),
                                *[(r, ContainerRecord) for r in docker_backend.get_containers()],
                                *[(r, ImageRecord) for r in docker_backend.get_container_images()],
                                *[(r, SnapshotRecord) for r in docker_backend.get_container_snapshots()],
                                (docker_backend.get_container_image(TEST_IMAGE), ImageRecord)]:
        assert record_problems(record, record_type) == [], record
