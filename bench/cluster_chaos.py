"""Cluster chaos benchmark (issue 14): kill -9 a stream leader of a 3-node JetStream cluster
mid-load and restart it; count lost tasks, repeated results and disagreeing events.

Starts three nats-servers on random 127.0.0.1 ports, routed into one cluster (every stream
and KV bucket at replicas 3), the simulated model, two orchestrators, the memory service
and the four agents, each its own OS process, all given the three URLs. Submits N tasks at
once; when 30% are final it kill -9s the node leading CREWBUS_RESULTS (or --stream), keeps
it down while another 20% finish, restarts it on its ports and store, and waits until it is
a current replica again. Then it runs the agreement check of tests/agreement.py (every
terminal event against the stored state) and counts step_finished events per step.

    .venv/bin/python bench/cluster_chaos.py [--tasks 50] [--stream CREWBUS_TASKS]
        [--seed S] [--keep DIR] [--json]

Exit status 1 when any task is lost, any result applied twice, or any event disagrees.
The code is in tests/cluster_chaos.py, shared with tests/test_cluster.py.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
import tempfile
from pathlib import Path

import anyio

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=50, help="tasks submitted at once")
    parser.add_argument("--stream", default="CREWBUS_RESULTS",
                        choices=["CREWBUS_RESULTS", "CREWBUS_TASKS", "CREWBUS_WORK"],
                        help="whose leader is killed")
    parser.add_argument("--timeout", type=float, default=240.0,
                        help="bound, seconds, on every task reaching a final state")
    parser.add_argument("--seed", type=int, help="random seed (printed, to repeat a run)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="run in DIR and keep it (logs, nats stores) instead of a temp dir")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    return parser.parse_args(argv)


async def run(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(ROOT))
    from tests.cluster_chaos import run_cluster_chaos

    with tempfile.TemporaryDirectory(prefix="crewbus-cluster-") as tmp:
        root = args.keep or Path(tmp)
        root.mkdir(parents=True, exist_ok=True)
        figures, kill = await run_cluster_chaos(root, args.tasks, args.stream, args.timeout,
                                                args.seed)
    if args.json:
        print(json.dumps({"agreement": dataclasses.asdict(figures),
                          "kill": dataclasses.asdict(kill)}))
    else:
        print(figures.report())
        print(kill.report())
    bad = figures.tasks_with_problems or kill.duplicated_steps or kill.caught_up_s < 0
    return 1 if bad else 0


def main(argv: list[str] | None = None) -> int:
    return anyio.run(run, parse_args(argv))


if __name__ == "__main__":
    sys.exit(main())
