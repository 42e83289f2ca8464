"""A pull's progress: the summary of the engine's pull stream (a recorded one), and real pulls
from a real registry reported through ``on_progress`` by ``Docker`` and, streamed through the
host API, by ``HttpRemote`` alike."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from ipynbsrv_backends import errors
from ipynbsrv_backends.backends import Docker
from ipynbsrv_backends.pullprogress import PullProgress, describe, valid_summary

from ..conftest import TEST_IMAGE, backend_options

#: What Docker 20.10 answered a pull of a four-layer image from a local registry (three layers
#: already there, one of 25 MB to fetch), as docker-py decodes it.
RECORDED = json.loads((Path(__file__).parent.parent / "data" / "engine-pull-stream.json").read_text())


# ---------------------------------------------------------------------------- the summary (pure logic)

def summaries(events: list) -> list[dict]:
    tracker, seen = PullProgress(), []
    for event in events:
        if tracker.feed(event):
            seen.append(tracker.summary())
    return seen


def test_the_recorded_stream_is_summed_up_layer_by_layer():
    seen = summaries(RECORDED)
    size = 25481098
    assert seen[0] == {"layers": 1, "layers_done": 1, "bytes_done": 0, "bytes_total": 0, "sizes_known": True}
    assert seen[2]["layers_done"] == 3  # three "Already exists"
    # the fourth layer is announced before its size is known
    assert seen[3] == {"layers": 4, "layers_done": 3, "bytes_done": 0, "bytes_total": 0, "sizes_known": False}
    assert seen[4] == {"layers": 4, "layers_done": 3, "bytes_done": 269312, "bytes_total": size, "sizes_known": True}
    assert describe(seen[4]) == "3 of 4 layers, 0.3 of 25 MB (1 %)"
    assert seen[-1] == {"layers": 4, "layers_done": 4, "bytes_done": size, "bytes_total": size, "sizes_known": True}
    assert describe(seen[-1]) == "4 of 4 layers, 25 of 25 MB (100 %)"
    # "Digest: ...", "Status: ..." and the "Pulling from" line change nothing
    assert all(valid_summary(s) for s in seen)


def test_sizes_not_yet_known_are_said_so():
    events = [
        {"status": "Pulling fs layer", "id": "a"}, {"status": "Pulling fs layer", "id": "b"},
        {"status": "Waiting", "id": "b"},
        {"status": "Downloading", "id": "a", "progressDetail": {"current": 120_000_000, "total": 200_000_000}},
    ]
    last = summaries(events)[-1]
    assert describe(last) == "0 of 2 layers, 120 MB of 200 MB known so far"
    events += [{"status": "Downloading", "id": "b", "progressDetail": {"current": 0, "total": 176_000_000}},
               {"status": "Download complete", "id": "a"}, {"status": "Extracting", "id": "a",
                                                            "progressDetail": {"current": 5, "total": 200_000_000}},
               {"status": "Pull complete", "id": "a"}]
    assert describe(summaries(events)[-1]) == "1 of 2 layers, 200 of 376 MB (53 %)"
    assert describe({"layers": 0, "layers_done": 0, "bytes_done": 0, "bytes_total": 0,
                     "sizes_known": True}) == "0 of 0 layers"


def test_odd_events_are_ignored_and_odd_summaries_refused():
    tracker = PullProgress()
    for event in ([], "text", {"status": 3, "id": "x"}, {"status": "Downloading"},
                  {"status": "Downloading", "id": "a", "progressDetail": {"current": -5, "total": "many"}},
                  {"error": "boom"}):
        tracker.feed(event)
    assert tracker.summary()["bytes_done"] == 0
    for bad in (None, [], {"layers": 1}, {"layers": -1, "layers_done": 0, "bytes_done": 0, "bytes_total": 0,
                                          "sizes_known": True},
                {"layers": True, "layers_done": 0, "bytes_done": 0, "bytes_total": 0, "sizes_known": True},
                {"layers": 1, "layers_done": 0, "bytes_done": 0, "bytes_total": 0, "sizes_known": "yes"}):
        assert not valid_summary(bad)


def test_docker_reports_the_recorded_stream_and_ends_with_the_whole_pull():
    backend = Docker(**backend_options())  # no engine is asked: the stream is the recorded one
    reports: list[dict] = []
    assert backend._stream_errors(iter(RECORDED), reports.append) is None
    assert reports and reports[-1]["layers_done"] == reports[-1]["layers"] == 4
    assert [r["layers_done"] for r in reports] == sorted(r["layers_done"] for r in reports)

    def broken(summary: dict) -> None:
        raise RuntimeError("observer failed")

    # a failing observer does not stop the pull; an error in the stream is still found
    assert backend._stream_errors(iter([*RECORDED[:3], {"error": "manifest unknown"}]), broken) == "manifest unknown"


# ---------------------------------------------------------------------------- real pulls

@pytest.fixture
def pushed(engine, registry):
    """An image in the real registry with a layer of its own (8 MB of random bytes) that the
    engine lacks: only its busybox layers are there already."""
    pusher = Docker(**backend_options(registry=registry))
    source = pusher.create_container("alice", 4242, "source", [], [], image=TEST_IMAGE)
    pusher.exec_in_container(source["pk"], ["sh", "-c", "head -c 8000000 /dev/urandom > /blob"])
    image = pusher.create_container_image(source["pk"], "with-progress")  # pushed to the registry
    engine.images.remove(image["pk"], force=True)
    pusher.delete_container(source["pk"])
    return image["pk"]


def test_a_real_pull_reports_its_layers_and_bytes(backend, pushed, engine):
    """Docker from the engine's stream; HttpRemote from the host API's streamed answer."""
    assert not backend.container_image_exists(pushed)
    reports: list[dict] = []
    record = backend.pull_container_image(pushed, on_progress=reports.append)
    assert record["pk"] == pushed and backend.container_image_exists(pushed)
    assert reports, "no progress was reported"
    assert all(valid_summary(r) for r in reports)
    last = reports[-1]
    assert last["layers"] >= 2 and last["layers_done"] == last["layers"]
    assert last["bytes_total"] >= 8_000_000 * 0.9 and last["bytes_done"] == last["bytes_total"]  # compressed
    # reported as it went: layer after layer (a local registry is too quick for more)
    assert len(reports) >= 2 and [r["layers_done"] for r in reports] == sorted(r["layers_done"] for r in reports)
    # once the engine has it, following the pull policy pulls nothing and reports nothing
    again: list[dict] = []
    assert backend.pull_container_image(pushed, on_progress=again.append, follow_pull_policy=True)["pk"] == pushed
    assert again == []


def test_a_failed_pull_is_the_same_error_through_both(backend, registry):
    reports: list[dict] = []
    with pytest.raises(errors.ContainerImageNotFoundError) as caught:
        backend.pull_container_image(f"{registry}/nothing/here:never", on_progress=reports.append)
    assert "could not be pulled" in str(caught.value)
    with pytest.raises(errors.InvalidArgumentError):
        backend.pull_container_image(f"{registry}/nothing/here:never", on_progress="not a function")


def test_the_pull_policy_never_refuses_when_asked_to_follow_it(backend, pushed):
    """The node's backend in these tests has pull_policy 'never': a creation's pull (which
    follows the policy) is refused, an explicit pull is not."""
    with pytest.raises(errors.ContainerImageNotFoundError) as caught:
        backend.pull_container_image(pushed, on_progress=lambda summary: None, follow_pull_policy=True)
    assert "pull policy is 'never'" in str(caught.value)
    assert not backend.container_image_exists(pushed)
