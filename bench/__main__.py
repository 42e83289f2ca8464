"""``python -m bench``: run every section, print the table, write docs/benchmarks.md."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

from .common import REPO, Row

logger = logging.getLogger("bench")

SECTIONS = ("ops", "listing", "storm", "hostapi", "access", "scale", "swarm", "hub")


def parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes (for the harness's own test): figures mean nothing")
    parser.add_argument("--only", action="append", choices=SECTIONS, help="run only this section (repeatable)")
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "benchmarks.md",
                        help="the page to write (default docs/benchmarks.md)")
    parser.add_argument("--json", type=Path, help="also write the rows as JSON here")
    parser.add_argument("--reps", type=int, help="repetitions per measurement (default 9; 1 with --quick)")
    parser.add_argument("--storm", type=int, help="containers in the spawn storm (default 100; 4 with --quick)")
    parser.add_argument("--storm-reps", type=int, help="storm repetitions (default 3; 1 with --quick)")
    parser.add_argument("--scale-sizes", help="containers on record for section 7, comma-separated "
                        "(default 100,10000,100000; 100,1000 with --quick)")
    parser.add_argument("--hub-users", type=int, help="users spawning at once through JupyterHub, section 9 "
                        "(default 8; 2 with --quick)")
    parser.add_argument("--keep-cluster", action="store_true", help="leave a cluster this run started up")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse(argv)
    logging.basicConfig(level=logging.INFO, format="[bench] %(message)s", stream=sys.stderr)
    for noisy in ("ipynbsrv_backends", "urllib3", "docker"):
        logging.getLogger(noisy).setLevel(logging.ERROR)
    reps = args.reps or (1 if args.quick else 9)
    sections = args.only or list(SECTIONS)
    rows: list[Row] = []
    facts: dict[str, object] = {"load_before": os.getloadavg()}
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="ipynbsrv-bench-") as tmp:
        logdir = Path(tmp)
        if "ops" in sections:
            from . import ops

            logger.info("section 1: per-operation overhead (%d repetitions)", reps)
            rows += ops.measure(reps, logdir, warmup=0 if args.quick else 1)
        if "listing" in sections:
            from . import listing

            sizes = (2, 5) if args.quick else (10, 100, 500)
            logger.info("section 2: listing at %s containers", sizes)
            rows += listing.measure(sizes, reps)
        if "hostapi" in sections:
            from . import hostapi_cost

            logger.info("section 4: host API cost")
            rows += hostapi_cost.measure(logdir, calls=3 if args.quick else 40,
                                         clients=(1, 4) if args.quick else (1, 32))
        if "access" in sections:
            from . import access

            logger.info("section 6: the notebook access path")
            rows += access.measure(logdir, total=200 if args.quick else 2000, reps=1 if args.quick else 5)
        if "storm" in sections:
            from . import storm

            count = args.storm or (4 if args.quick else 100)
            storm_reps = args.storm_reps or (1 if args.quick else 3)
            logger.info("sections 3 and 5: spawn storm of %d containers (%d repetitions)", count, storm_reps)
            storm_rows, facts["storm"] = storm.measure(count, storm_reps, logdir, keep_cluster=args.keep_cluster)
            rows += storm_rows
        if "scale" in sections:
            from . import scale

            wanted = args.scale_sizes or ("100,1000" if args.quick else "100,10000,100000")
            scale_sizes = tuple(int(size) for size in wanted.split(","))
            logger.info("section 7: the master at %s containers on record", scale_sizes)
            rows += scale.measure(scale_sizes, 2 if args.quick else 20)
            from . import reconcile

            counts = (2, 5) if args.quick else (20, 200)
            logger.info("section 7: reconcile with %s real containers", counts)
            rows += reconcile.measure(counts, 1 if args.quick else 5)
        if "swarm" in sections:
            from . import swarm

            count = args.storm or (4 if args.quick else 100)
            swarm_reps = args.storm_reps or (1 if args.quick else 3)
            logger.info("section 8: spawn storm of %d containers onto a swarm (%d repetitions)", count, swarm_reps)
            rows += swarm.measure(count, swarm_reps, logdir, keep_cluster=args.keep_cluster)
        if "hub" in sections:
            from . import hub

            users = args.hub_users or (2 if args.quick else 8)
            hub_reps = args.storm_reps or (1 if args.quick else 3)
            logger.info("section 9: JupyterHub, %d users at once, IpynbsrvSpawner vs DockerSpawner (%d repetitions)",
                        users, hub_reps)
            rows += hub.measure(users, hub_reps, logdir, keep_cluster=args.keep_cluster)
    facts["seconds"] = round(time.monotonic() - started, 1)
    from . import page, report

    print(report.terminal(rows))
    print(f"\n(total {facts['seconds']} s)")
    if args.json:
        args.json.write_text(json.dumps({"rows": [r.as_dict() for r in rows], "facts": facts}, indent=1,
                                        default=str))
    if args.out:
        text = page.render(rows, facts, quick=args.quick, reps=reps)
        args.out.write_text(text)
        logger.info("wrote %s", args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
