"""docs/benchmarks.md: the tables of one run, with what they mean around them."""

from __future__ import annotations

import datetime as dt
import os
import platform

from .common import Row
from .report import fmt, table_lines

INTRO = """\
# Benchmarks

*Written by `make bench` (`python -m bench`); do not edit by hand — the text comes from
`bench/page.py`, the figures from the run below.*

What the abstraction costs next to the engine itself. Every figure is a **ratio against a
baseline measured in the same run, on the same engine**: raw docker-py doing the same job.
Each repetition measures ours and the baseline back to back (the order rotates), the ratio is
taken per repetition, and the table shows the **median** ratio and the **spread** (smallest
and largest). `ours` and `baseline` are medians of the raw figures. A ratio below 1 means ours
was faster, which for the same engine calls is noise: read the spread before reading a
difference of a few per cent into anything.
"""

SECTION_1 = """\
## 1. Per-operation overhead

One fresh container per repetition goes through create+start, stop, start, suspend,
resume, exec and delete, four ways: through `Docker`; through `HttpRemote` → a real
`ipynbsrv_hostapi` process on 127.0.0.1 (gunicorn, 2 workers × 8 threads) → `Docker`; and two
docker-py baselines:

- **same calls** — docker-py sending exactly the requests `Docker` sends, in the same order
  (the ownership inspect before every action, the image and name checks before a create, the
  snapshot listing and image prune after a delete). The targets apply to this baseline: the
  difference is what the abstraction itself costs.
- **minimal calls** — what a hand-written docker-py script needs for the same effect, with no
  checks. The gap between the two is the engine's time for the backend's safety checks
  (one inspect is a few milliseconds), shown for information.

Suspend, resume and exec take the engine about 10–50 ms, so each cycle does them five times
and counts their median. Targets: `Docker` within 5 % of docker-py, `HttpRemote` within 15 %.
"""

SECTION_1_WHY = """\
**Where a target is missed, and why.** `Docker` adds almost nothing of its own: a CPU profile
of `exec_in_container` (pyinstrument) found about 0.3 ms of our code per call, the rest waiting
on the engine's socket, so its rows sit at 1.0 within the engine's jitter. This machine has 2
cores and an engine shared with other users, and single operations vary by 10–30 % from one
repetition to the next; a miss whose spread includes 1 is that jitter, not a cost.

`HttpRemote` adds one HTTP round trip per operation: `requests` on the master, gunicorn's
threaded worker and Django REST framework on the node, the JSON answer back. Measured alone on
an idle host API it is about **1.5 ms** a call (a state read: 2.2 ms through the host API
against 0.73 ms direct); a wall-clock profile of the host API worker (py-spy) during a run of
suspends and resumes put 96 % of each request's time inside the backend's own engine calls,
so the node's Python side is not where the time goes. That fixed cost disappears next to a
create, a stop or a delete (100–250 ms), but the engine pauses or unpauses a container in
about 10 ms, so there the same round trip is 15–35 % and the 15 % target is missed. That part
is ours — the price of reaching a node over the network, not the engine's — and in absolute
terms it is a millisecond or two per call.
"""

SECTION_2 = """\
## 2. Listing at scale

`get_containers()` with 10, 100 and 500 managed containers, against one raw list call with the
same label filter. The engine requests are counted on the backend's own docker-py client (as
the test suite's `counted` fixture does): they must not grow with the number of containers.
The containers are created, not started, with the labels the backend puts on its own (the
listing sees the same thing; starting 500 would take minutes and change nothing it does).
"""

SECTION_2_WHY = """\
One request at every size: the listing is one engine call however many containers there are.
The time ratio is our cost of turning the engine's answer into records (parsing each
container's labels for its ports and volumes, sorting).
"""

SECTION_3 = """\
## 3. Spawn storm

A class logging in at once: {count} threads call `services.create_container` at the same
moment in one master process (a file SQLite database with `transaction_mode: IMMEDIATE`, as
`testproject` uses), on the two-node cluster test bed (`scripts/cluster.sh up 2`: network
namespaces, each with its own dockerd and `ipynbsrv_hostapi`), nodes reached only through
`HttpRemote`, placement `least-loaded`. The baseline: the same number of threads creating the
same containers with docker-py directly on the nodes' engines (their unix sockets), split
evenly. Throughput is containers per second until the last creation returned; each thread then
polls its container's port 8888 (the test image serves HTTP there) and the first and last
answers are timed from the start. Targets: every creation succeeds, containers per node differ
by at most one, throughput at least 80 % of docker-py's.
"""

SECTION_3_WHY = """\
The master does more per container than the baseline: a placement transaction in the
database, the backend's checks on the node (image, name, the record read back), one HTTP hop to
the node and the record saved afterwards — and on two cores its Python threads and the nodes'
host APIs compete with the two engines for the CPU and the disk. The database part is serial:
the placements and the records after creation take turns (see *Profiled and fixed*), and each
SQLite commit waits for the disk, which the two engines keep busy here. The row *time until
the master had placed every container* shows how long that serial part took. It is why the
first container answers HTTP later than the baseline's: its record waits its turn behind
placements still coming in, and only then does `create_container` return. The engines stay
busy meanwhile, so the throughput (until the last creation) stays close to theirs.
"""

SECTION_4 = """\
## 4. Host API cost

`HttpRemote.get_status()` (the host API's `status/`: the backend pings its engine and lists its
containers for the counts placement uses) against the engine's own ping, and against docker-py
making the same two engine calls itself, at 1 and at 32 concurrent clients (each with its own
connection; 40 calls each). Spread: medians of five equal slices of the calls.
"""

SECTION_4_WHY = """\
No target: a status call is not a ping. It does two engine calls (a ping, and a list for the
container counts), so against a bare ping it costs several times more; against the same two
engine calls made directly, the host API adds its HTTP round trip (about 1.5 ms, see section
1). At 32 clients every call waits its turn for the host API's 16 worker threads (2 gunicorn
workers × 8 threads) and for the engine, so both latencies grow; the engine's own list call
slows down under that load as much as the host API does.
"""

SECTION_5 = """\
## 5. Memory

Peak resident memory during the storm: of the master process (its own `VmHWM`, which also
holds the harness's polling threads and each thread's stack), and of one node's host API
(the gunicorn master and its workers, their RSS summed from `/proc` every 0.1 s).
"""

HISTORY = """\
## Profiled and fixed

**Spawn storm, master on SQLite (fixed).** The first runs of section 3 reached only **0.67** of
docker-py's throughput (100 containers in 21.0 s against 14.0 s; the first container
answered HTTP after 5.0 s against 1.5 s, a ratio of 3.3). A wall-clock profile of every
thread of the master (`py-spy record --threads --idle`, the `bench` extra) put **65 %** of the
threads' time in `BEGIN IMMEDIATE` of the placement transaction (`services._reserve`) and
another **13 %** in the `UPDATE` that saves the record after the node answered: waiting for
SQLite's write lock. SQLite's busy handler does not queue waiters, it sleeps between tries
(up to 100 ms at a time), so with a hundred threads the lock often stood free while every
waiter slept, and the nodes' engines were left idle at the start. The fix
(`ipynbsrv_backends/services.py`): those two short writes take turns on a lock in the process,
where a waiting thread is woken the moment the turn is free; other processes still take turns
through the database. After it: **0.90** of docker-py's throughput (14.6 s against 13.1 s),
first container answering after 1.46× the baseline's time instead of 3.3×. The same profile after the fix: about two
thirds of the threads' time waiting on the nodes (`HttpRemote.create_container`, the engines at
work), a quarter waiting for the turn; the thread holding the turn spends half its time in
SQLite's commit, that is waiting for the disk the two engines also write to. On a machine where
that matters, SQLite's WAL journal (`PRAGMA journal_mode=WAL`; a commit measured here took
0.17 ms against 0.73 ms with the default journal, on an idle disk) or PostgreSQL makes each
turn shorter; the benchmark keeps testproject's settings. Run again with
`BENCH_PROFILE_DIR=DIR python -m bench --only storm` to write the profile (collapsed stacks) to
`DIR`.

**exec through `Docker` (looked at, nothing to fix).** An early run showed `exec` 1.39× the
same docker-py calls. pyinstrument over twenty `exec_in_container` calls: 0.11 s of CPU in
all for 0.93 s of wall time, nearly all of it in docker-py waiting on the engine's socket;
run alone, twenty calls each way came out 55.8 ms against 51.5 ms. The difference in that run
was the engine's jitter, not our code.
"""


def machine() -> str:
    try:
        import docker

        client = docker.APIClient(base_url="unix://var/run/docker.sock", version="auto", timeout=10)
        engine = client.version().get("Version", "?")
        client.close()
    except Exception:  # noqa: BLE001 - the page is written anyway
        engine = "?"
    load = ", ".join(f"{value:.1f}" for value in os.getloadavg())
    return (f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPU cores, "
            f"Linux {platform.release()}, Python {platform.python_version()}, Docker engine {engine}; "
            f"load average at the end {load} (above the number of cores, other work shared the machine "
            "and its engine, and the spreads widen accordingly).")


def misses(rows: list[Row]) -> list[str]:
    found = []
    for item in rows:
        if item.met is False and item.ratio is not None:
            extra = ""
            if item.ours is not None and item.base is not None and item.unit == "ms":
                extra = f" ({fmt(item.ours, 1)} ms against {fmt(item.base, 1)} ms, {item.ours - item.base:+.1f} ms)"
            noise = ""
            if item.low is not None and item.high is not None and item.low <= 1.0 <= item.high \
                    and not item.target.startswith("≥"):
                noise = (f"; the spread ({fmt(item.low, 3)}–{fmt(item.high, 3)}) includes 1: in this run "
                         "not told apart from the engine's own jitter")
            found.append(f"- {item.name}: ratio {fmt(item.ratio, 3)}, target {item.target}{extra}{noise}")
    return found


def headline(rows: list[Row]) -> list[str]:
    picks = []
    for item in rows:
        if item.name.startswith("create+start") and "(same calls)" in item.name:
            picks.append(f"- {item.name}: **{fmt(item.ratio, 3)}**")
        if item.name.startswith("throughput"):
            picks.append(f"- spawn storm {item.name[len('throughput (containers/s) '):]}: **{fmt(item.ratio, 3)}**")
        if item.name.startswith("engine requests per get_containers"):
            picks.append(f"- {item.name}: **{fmt(item.ratio, 3)}** ({item.note})")
    return picks


def render(rows: list[Row], facts: dict, *, quick: bool, reps: int) -> str:
    storm = facts.get("storm") or {}
    parts = [INTRO, machine() + f" {reps} repetitions per measurement; the whole run took {facts.get('seconds')} s.\n"]
    if quick:
        parts.append("**This page comes from a `--quick` run (tiny sizes, one repetition): its figures mean "
                     "nothing.**\n")
    parts.append("**Headline.**\n\n" + "\n".join(headline(rows)) + "\n")
    missed = misses(rows)
    parts.append("**Targets missed in this run.**\n\n" + ("\n".join(missed) if missed else "None.") + "\n")

    def section(prefix: str) -> str:
        chosen = [item for item in rows if item.section.startswith(prefix)]
        return "\n".join(table_lines(chosen)) + "\n" if chosen else "*Not run.*\n"

    parts += [SECTION_1, section("1"), SECTION_1_WHY, SECTION_2, section("2"), SECTION_2_WHY,
              SECTION_3.format(count=storm.get("count", 100)), section("3"), SECTION_3_WHY,
              SECTION_4, section("4"), SECTION_4_WHY, SECTION_5, section("5"), HISTORY]
    parts.append("## Running it\n\n`make bench` as root on a fresh machine: it sets up the virtualenv (with the "
                 "`bench` extra), the engine, the test image and the cluster test bed (honouring "
                 "`IPYNBSRV_CLUSTER_ID`), runs every section, takes the test bed down again if it brought it "
                 "up, and rewrites this page. Everything it creates carries its own labels and instances "
                 "(`bench-*`) and is removed. `python -m bench --help` for the options (`--only SECTION`, "
                 "`--reps`, `--storm`, `--quick`).\n")
    return "\n".join(parts)
