"""The idle policy's pure logic (services/idlepolicy.py): reading IDLE_CULLING, matching a
container to a rule, and the one decision (leave, suspend, stop) with its reason."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from ipynbsrv_backends.checks import check_settings
from ipynbsrv_backends.services.idlepolicy import (
    LEAVE,
    STOP,
    SUSPEND,
    Rule,
    ServerState,
    decide,
    load_policy,
    parse_duration,
    words,
)

NOW = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)


def ago(seconds: float) -> datetime:
    return NOW - timedelta(seconds=seconds)


@pytest.mark.parametrize(("value", "seconds"), [
    (None, None), (90, 90.0), (2.5, 2.5), ("45s", 45.0), ("30m", 1800.0), ("30 min", 1800.0), ("2h", 7200.0),
    ("1d", 86400.0), ("600", 600.0),
])
def test_durations(value, seconds):
    assert parse_duration(value, "x") == seconds


@pytest.mark.parametrize("value", [0, -5, True, "2 hours", "", "h", [60], "0m"])
def test_a_duration_that_is_none_says_what_to_write(value):
    with pytest.raises(ValueError, match=r"x must be .*(3600|more than 0)"):
        parse_duration(value, "x")


@pytest.mark.parametrize(("seconds", "text"), [
    (0, "0 s"), (45, "45 s"), (60, "1 min"), (125, "2 min 5 s"), (7200, "2 h"), (7320, "2 h 2 min"),
    (93784, "1 d 2 h"),
])
def test_words(seconds, text):
    assert words(seconds) == text


def test_the_first_matching_rule_applies_images_and_groups_both_narrow_it():
    policy = load_policy({"RULES": [
        {"images": ["ipynbsrv/notebook:*"], "groups": ["students"], "suspend_after": "30m", "stop_after": "2h"},
        {"groups": ["staff"], "suspend_after": None, "stop_after": None},
        {"suspend_after": "2h"},
    ]})
    image = ["ipynbsrv/notebook:latest"]
    assert policy.rule_for(image, ["students"]).number == 0
    assert policy.rule_for(["other:1"], ["students"]).number == 2  # the image narrows rule 0
    assert policy.rule_for(image, ["staff"]).number == 1
    assert policy.rule_for(image, []).number == 2
    assert policy.rules[0].suspend_after == 1800 and policy.rules[0].stop_after == 7200
    assert policy.rules[0].describe() == "rule 0 (images ipynbsrv/notebook:*; groups students)"
    assert load_policy(None).rules == () and load_policy({}).rule_for(image, []) is None


@pytest.mark.parametrize(("raw", "message"), [
    ([], "must be a dict"),
    ({"RULE": []}, "unknown keys RULE"),
    ({"RULES": {}}, "must be a list of rules"),
    ({"RULES": [{"suspend": "2h"}]}, r"\['RULES'\]\[0\] has unknown keys suspend"),
    ({"RULES": [{"suspend_after": "2h", "stop_after": "1h"}]}, "stop_after .1 h. must be longer than suspend_after"),
    ({"RULES": [{"images": "", "suspend_after": 1}]}, "must be a list of non-empty strings"),
    ({"RULES": [{"groups": [3]}]}, "must be a list of non-empty strings"),
    ({"RESUME_ON_REQUEST": "yes"}, "must be True or False"),
    ({"ACTIVITY_INTERVAL": "soon"}, "ACTIVITY_INTERVAL'] must be a duration"),
])
def test_a_policy_that_does_not_hold_together_is_refused_with_what_is_wrong(raw, message):
    with pytest.raises(ValueError, match=message):
        load_policy(raw)


@pytest.mark.django_db
def test_manage_py_check_reports_a_bad_policy_as_e030(settings):
    settings.IPYNBSRV_BACKENDS = {"IDLE_CULLING": {"RULES": [{"suspend_after": "2 hours"}]}}
    [message] = [m for m in check_settings() if m.id == "ipynbsrv_backends.E030"]
    assert "IPYNBSRV_BACKENDS['IDLE_CULLING']['RULES'][0]['suspend_after']" in message.msg and "2h" in message.msg
    settings.IPYNBSRV_BACKENDS = {"IDLE_CULLING": {"RULES": [{"suspend_after": "2h"}]}}
    assert not [m for m in check_settings() if m.id == "ipynbsrv_backends.E030"]


RULE = Rule(0, suspend_after=3600, stop_after=4 * 3600)
IDLE_SERVER = ServerState(True, ago(7200), kernels=1)


def test_an_idle_running_container_is_suspended_then_stopped():
    verdict = decide("running", ago(7200), NOW, RULE, IDLE_SERVER)
    assert (verdict.action, verdict.reason) == (SUSPEND, "suspended after 2 h idle")
    verdict = decide("running", ago(5 * 3600), NOW, RULE, ServerState(True, ago(5 * 3600)))
    assert (verdict.action, verdict.reason) == (STOP, "stopped after 5 h idle")
    verdict = decide("suspended", ago(5 * 3600), NOW, RULE, None)
    assert (verdict.action, verdict.reason) == (STOP, "stopped after 5 h idle")


def test_the_latest_of_the_record_and_the_server_counts():
    verdict = decide("running", ago(7200), NOW, RULE, ServerState(True, ago(600)))
    assert verdict.action == LEAVE and verdict.reason == "idle for 10 min; suspended once idle for 1 h"
    verdict = decide("running", ago(60), NOW, RULE, IDLE_SERVER)  # a visit through the proxy a minute ago
    assert verdict.action == LEAVE and verdict.idle_seconds == 60
    verdict = decide("suspended", ago(7200), NOW, RULE, None)
    assert verdict.action == LEAVE and verdict.reason == "idle for 2 h; stopped once idle for 4 h"


def test_a_busy_kernel_or_a_server_that_does_not_answer_is_never_culled():
    busy = ServerState(True, ago(10 * 3600), kernels=2, busy_kernels=1)
    verdict = decide("running", ago(10 * 3600), NOW, RULE, busy)
    assert verdict.action == LEAVE and verdict.reason.startswith("a kernel is busy (2 kernel(s), 1 busy")
    verdict = decide("running", ago(10 * 3600), NOW, RULE, ServerState(False, error="ConnectTimeout"))
    assert verdict.action == LEAVE and "did not answer (ConnectTimeout): left alone" in verdict.reason
    assert decide("running", ago(10 * 3600), NOW, RULE, None).action == LEAVE


def test_no_rule_or_a_rule_that_never_culls_leaves_it():
    assert decide("running", ago(10**6), NOW, None, IDLE_SERVER).reason == "no rule of the idle policy covers it"
    assert decide("running", ago(10**6), NOW, Rule(3), IDLE_SERVER).reason == "its rule never culls it"
    assert decide("running", None, NOW, RULE, ServerState(True)).reason == "no activity is known yet"
