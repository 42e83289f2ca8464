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

Each repetition puts one fresh container per way through create+start, stop, start, suspend,
resume, exec and delete, the ways taking turns at every operation (so a slow moment of the
engine falls on all of them, not on one), four ways: through `Docker`; through `HttpRemote` → a real
`ipynbsrv_hostapi` process on 127.0.0.1 (gunicorn, 2 workers × 8 threads) → `Docker`; and two
docker-py baselines:

- **same calls** — docker-py sending exactly the requests `Docker` sends (the ownership
  inspect before every action; the image and name checks and the listing of taken host ports
  before a create, whose port is then chosen once and kept; the snapshot listing and image
  prune after a delete). The targets apply to this baseline: the difference is what the
  abstraction itself costs.
- **minimal calls** — what a hand-written docker-py script needs for the same effect, with no
  checks (and a port the engine picks at each start). The gap between the two is the engine's
  time for the backend's safety checks
  (one inspect is a few milliseconds), shown for information.

A fifth way runs docker-py's same calls but sends suspend and resume through a **bare hop**
(below), to show what one HTTP round trip costs on this machine whoever answers it.

Suspend, resume and exec take the engine about 10–50 ms, so each repetition does them 15
times, every way in turn (in an order that rotates), and counts each way's median. Targets:
`Docker` within 5 % of docker-py, `HttpRemote` within 15 %.
"""

SECTION_1_WHY = """\
**Where a target is missed, and why.** `Docker` adds almost nothing of its own: a CPU profile
of `exec_in_container` (pyinstrument) found about 0.3 ms of our code per call, the rest waiting
on the engine's socket, so its rows sit at 1.0 within the engine's jitter. This machine has 2
cores and an engine shared with other users, and single operations vary by 10–30 % from one
repetition to the next; a miss whose spread includes 1 is that jitter, not a cost.

`HttpRemote` adds one HTTP round trip per operation: `requests` on the master, gunicorn's
threaded worker and Django REST framework on the node, the JSON answer back. That fixed cost
disappears next to a create, a stop or a delete (100–250 ms), but the engine pauses or
unpauses a container in under 10 ms, and there a round trip is a visible share. To tell the
hop itself from our code, the same run also makes docker-py's very calls for suspend and resume
behind a **bare hop**: a WSGI app of a dozen lines (`bench/hop_app.py`: no Django, no DRF, no
token, no checks) under gunicorn with the host API's worker settings, called with keep-alive.
Whatever a remote API does, it cannot be cheaper than that on this machine.

That floor itself moves from run to run (one hop has measured 1.04 to 1.16 of a suspend on
this machine), so a ratio against docker-py cannot say whether a change made our code slower.
`python -m bench.against REV` answers that instead: it runs this tree's code and an earlier
commit's side by side, taking turns, in one run — suspend + resume through two real host API
processes (150 rounds), and with `--storm N` the spawn storm's master of each onto the same
test bed — and prints the paired ratio of the two.
"""


def hop_lines(rows: list[Row]) -> list[str]:
    """What the bare hop shows for each fast operation measured behind it, from the rows."""
    by_name = {item.name: item for item in rows}
    lines = []
    for op in ("suspend", "resume"):
        remote = by_name.get(f"{op}: HttpRemote→host API→Docker vs docker-py (same calls)")
        hop = by_name.get(f"{op}: docker-py behind a bare WSGI app under gunicorn vs docker-py (same calls)")
        ours = by_name.get(f"{op}: HttpRemote→host API→Docker vs the bare hop")
        if not (remote and hop and ours) or None in (remote.ours, remote.base, hop.ours, remote.ratio, hop.ratio):
            continue
        assert remote.ours is not None and remote.base is not None and hop.ours is not None
        total, floor = remote.ours - remote.base, hop.ours - remote.base
        lines.append(
            f"- **{op}**: docker-py {fmt(remote.base, 1)} ms; behind the bare hop {fmt(hop.ours, 1)} ms "
            f"({floor:+.1f} ms, ratio {fmt(hop.ratio, 3)}); through `HttpRemote` {fmt(remote.ours, 1)} ms "
            f"({total:+.1f} ms, ratio {fmt(remote.ratio, 3)}, target {remote.target or '—'}). Our code's "
            f"share is the difference, {total - floor:+.1f} ms: `HttpRemote` against the bare hop is "
            f"{fmt(ours.ratio, 3)} (spread {fmt(ours.low, 3)}–{fmt(ours.high, 3)})."
        )
    return lines


HOP_AFTER = """\
The bare hop's cost is the sockets, gunicorn handing each request from its listening thread to
a worker thread, and the scheduler waking three more processes per call on a 2-core virtual
machine (with a trivial app that answers at once the same hop is about 0.4 ms; with the app
blocked on the engine for a few milliseconds in between, the wake-ups cost more). Profiling the
node and the master found what of the rest was ours, and it was trimmed (see *Profiled and
fixed*). What remains is the host API's real work — authenticating the token, routing, parsing
and checking the body, the JSON answer — about 0.3 ms per call on the node, and `HttpRemote`'s
own request handling on the master. In absolute terms the whole round trip is a millisecond or
two per call; a master that needs cheaper suspends than that should run `Docker` on the node
itself.
"""


def hop_budget(rows: list[Row]) -> str:
    """How much of the 15 % the bare hop alone took, per fast operation, in the targets' own
    terms (medians of per-repetition ratios)."""
    by_name = {item.name: item for item in rows}
    parts = []
    for op in ("suspend", "resume"):
        hop = by_name.get(f"{op}: docker-py behind a bare WSGI app under gunicorn vs docker-py (same calls)")
        ours = by_name.get(f"{op}: HttpRemote→host API→Docker vs the bare hop")
        if not (hop and ours) or hop.ratio is None or ours.ratio is None:
            continue
        left = 1.15 / hop.ratio
        verdict = ("nothing left for any code behind it" if left <= 1.0
                   else f"a factor of {fmt(left, 3)} left for our code, which took {fmt(ours.ratio, 3)}")
        parts.append(f"{op}: the bare hop alone {fmt(hop.ratio, 3)} ({verdict})")
    if not parts:
        return ""
    return "Against the 1.15 allowed — " + "; ".join(parts) + ".\n"


def section_1_why(rows: list[Row]) -> str:
    lines = hop_lines(rows)
    if not lines:
        return SECTION_1_WHY
    return "\n".join([SECTION_1_WHY, "In this run:\n", *lines, "", hop_budget(rows), HOP_AFTER])


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
`HttpRemote` with signed requests (each node's token and signing key, as in production),
placement `least-loaded`. The baseline: the same number of threads creating the same
containers with docker-py directly on the nodes' engines (their unix sockets), split evenly.
Throughput is containers per second until the last creation returned; each thread then
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
(`ipynbsrv_backends/services/placing.py`): those two short writes take turns on a lock in the process,
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

**Suspend and resume through `HttpRemote` (trimmed; the rest is the hop).** Earlier runs had
them at **1.34** and **1.30** of docker-py against the 15 % target (11.1 ms against 8.5 ms).
On the node, a profile of the host API's WSGI application in-process (cProfile, the engine
calls stubbed out) gave 197 µs of Python per suspend request: 30 % of it building DRF's
serializer for a body that was `{"options": {}}`, and 12 % DRF's content negotiation parsing
an `Accept: application/json` that these views can only answer one way. Both now take a
shortcut (`hostapi/views.py`: any other body still goes through the serializer and its
messages, any other `Accept` through DRF's negotiation): **135 µs**. On the master,
`requests`' `Session.prepare_request` and `Session.send` spent about 80 µs of every call on a
cookie jar, hooks and environment merging that nothing on a node uses; `HttpRemote` now
prepares the request itself and sends it on the pooled adapter (`backends/http_transport.py`):
**35 µs**. The next full run had them at **1.22** and **1.13** (9.8 and 9.4 ms against 8.3 ms).
The bare hop rows were added at the same time, and they show why nothing much is left to
trim on our side: the hop alone costs about 0.9 ms of the 1.2 ms a 15 % budget allows, and the
host API's Django and DRF, running the token check, routing and the answer, account for most
of the remainder.

**exec through `Docker` (looked at, nothing to fix).** An early run showed `exec` 1.39× the
same docker-py calls. pyinstrument over twenty `exec_in_container` calls: 0.11 s of CPU in
all for 0.93 s of wall time, nearly all of it in docker-py waiting on the engine's socket;
run alone, twenty calls each way came out 55.8 ms against 51.5 ms. The difference in that run
was the engine's jitter, not our code.
"""


def machine(load_before: tuple[float, ...] | None = None) -> str:
    try:
        import docker

        client = docker.APIClient(base_url="unix://var/run/docker.sock", version="auto", timeout=10)
        engine = client.version().get("Version", "?")
        client.close()
    except Exception:  # noqa: BLE001 - the page is written anyway
        engine = "?"
    def show(averages: tuple[float, ...]) -> str:
        return ", ".join(f"{value:.1f}" for value in averages)

    before = ""
    if load_before:
        busy = load_before[0] > (os.cpu_count() or 1) / 2
        before = (f"load average before the run {show(load_before)} "
                  + ("(other work was using the machine and its engine: the spreads widen accordingly)"
                     if busy else "(the machine was otherwise quiet)") + ", ")
    return (f"Run {dt.datetime.now(dt.UTC):%Y-%m-%d %H:%M} UTC on {os.cpu_count()} CPU cores, "
            f"Linux {platform.release()}, Python {platform.python_version()}, Docker engine {engine}; "
            f"{before}at the end {show(os.getloadavg())} (the spawn storm loads the machine itself).")


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
        if item.section.startswith("9") and ("every server answered" in item.name or item.name.startswith("a culled")):
            picks.append(f"- JupyterHub, {item.name}: **{fmt(item.ratio, 3)}**")
        if item.name.startswith("engine requests per get_containers"):
            picks.append(f"- {item.name}: **{fmt(item.ratio, 3)}** ({item.note})")
    return picks


SECTION_7 = """## 7. The master at scale

The proxy's auth check, every list of the users' API (an owner's and staff's) and every admin
change list with 10,000 and 100,000 containers on record (as many snapshots and audit
entries; 50 containers a user and a node), each against the same page with 100: the median
time of a request through Django's test client, on one file SQLite database, and the SQL
queries it made (a different count at the larger size is a miss). The rows are inserted
directly (`bench/scale.py`), no engine; each size has a process and a database of its own and
the sizes are asked in turn, page by page, so a load that comes and goes meets them alike. The
node and image pages (staff's) hold 2 nodes and 3 images at 100 containers (a user commits
one image), so they are compared at 100,000 against 10,000, where both show a full page.

Reconcile (`bench/reconcile.py`) runs on the local engine with 20 and 200 real containers
(the busybox stand-in, created, not started), in step with the records and with drift (a tenth
of the records without their container, a tenth of the containers without a record, a tenth
with another status). Its time grows with the containers (the node lists them all); its
queries should not.
"""


def access_section(rows: list[Row]) -> str:
    """Section 6 (``bench/access.py``), or a line saying it was not run."""
    from .access import SECTION, page_section

    return page_section(rows) if any(item.section == SECTION for item in rows) else (
        "## 6. The notebook access path\n\n*Not run.*\n")


def swarm_section(rows: list[Row]) -> str:
    """Section 8 (``bench/swarm.py``)."""
    from .swarm import page_section

    return page_section(rows)


def hub_section(rows: list[Row]) -> str:
    """Section 9 (``bench/hub.py``)."""
    from .hub import page_section

    return page_section(rows)


def render(rows: list[Row], facts: dict, *, quick: bool, reps: int) -> str:
    storm = facts.get("storm") or {}
    run = f" {reps} repetitions per measurement; the whole run took {facts.get('seconds')} s.\n"
    parts = [INTRO, machine(facts.get("load_before")) + run]
    if quick:
        parts.append("**This page comes from a `--quick` run (tiny sizes, one repetition): its figures mean "
                     "nothing.**\n")
    parts.append("**Headline.**\n\n" + "\n".join(headline(rows)) + "\n")
    missed = misses(rows)
    parts.append("**Targets missed in this run.**\n\n" + ("\n".join(missed) if missed else "None.") + "\n")

    def section(prefix: str) -> str:
        chosen = [item for item in rows if item.section.startswith(prefix)]
        return "\n".join(table_lines(chosen)) + "\n" if chosen else "*Not run.*\n"

    parts += [SECTION_1, section("1"), section_1_why(rows), SECTION_2, section("2"), SECTION_2_WHY,
              SECTION_3.format(count=storm.get("count", 100)), section("3"), SECTION_3_WHY,
              SECTION_4, section("4"), SECTION_4_WHY, SECTION_5, section("5"), access_section(rows), SECTION_7, section("7"),
              swarm_section(rows), hub_section(rows), HISTORY]
    parts.append("## Running it\n\n`make bench` as root on a fresh machine: it sets up the virtualenv (with the "
                 "`bench` extra), the engine, the test image and the cluster test bed (honouring "
                 "`IPYNBSRV_CLUSTER_ID`), runs every section, takes the test bed down again if it brought it "
                 "up, and rewrites this page. Everything it creates carries its own labels and instances "
                 "(`bench-*`) and is removed. `python -m bench --help` for the options (`--only SECTION`, "
                 "`--reps`, `--storm`, `--quick`); `python -m bench.against REV --storm 100` compares this "
                 "tree with an earlier commit in one run; `python -m bench.hub` runs section 9 alone and "
                 "replaces only that section here.\n")
    return "\n".join(parts)
