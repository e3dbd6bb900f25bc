"""Agreement benchmark (issue 17): is every task's terminal event what its stored state says?

Starts nats-server (random 127.0.0.1 port, JetStream in a temp dir), the simulated model
over HTTP at zero latency, two orchestrator replicas, the memory service and the four
agents, each as its own OS process (`--replicas orchestrator=1` for a single one).
Submits N tasks at once through `crewbus.submit`; optionally kill -9s random services
(each restarted at once) and nats-server once (restarted on the same store) while tasks
run. Then, for every task, it reads every terminal event from
CREWBUS_EVENTS and the state in KV `crewbus_tasks`, and compares status, answer, score,
verdict, as well as what `crewbus status` and `crewbus submit --wait` would show.

    .venv/bin/python bench/agreement.py [--tasks 50] [--kills N] [--nats-restart]
        [--replicas orchestrator=2,researcher=2] [--quick] [--json] [--seed S] [--keep DIR]

Exit status 1 when any task is lost, lacks a terminal event, disagrees (also as `crewbus
status` or `submit --wait` would show it) or has more than one terminal event.
The code is in tests/agreement.py, shared with tests/test_agreement.py.
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
    parser.add_argument("--kills", type=int, default=0,
                        help="services to kill -9 (and restart) at random moments")
    parser.add_argument("--nats-restart", action="store_true",
                        help="kill -9 nats-server once mid-run, restart it on the same store")
    parser.add_argument("--replicas", default="orchestrator=2",
                        help="processes per service, e.g. orchestrator=1 or researcher=2")
    parser.add_argument("--timeout", type=float, default=180.0,
                        help="bound, seconds, on every task reaching a final state")
    parser.add_argument("--seed", type=int, help="random seed (printed, to repeat a run)")
    parser.add_argument("--keep", type=Path, metavar="DIR",
                        help="run in DIR and keep it (logs, nats store) instead of a temp dir")
    parser.add_argument("--quick", action="store_true", help="10 tasks, at most 1 kill")
    parser.add_argument("--json", action="store_true", help="print one JSON line")
    args = parser.parse_args(argv)
    try:
        args.replicas = {name.strip(): int(count) for name, _, count in
                         (part.partition("=") for part in args.replicas.split(",") if part)}
    except ValueError:
        parser.error(f"--replicas: expected service=N,..., got {args.replicas!r}")
    if args.quick:
        args.tasks, args.kills, args.timeout = 10, min(args.kills, 1), 60.0
    return args


async def main(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(ROOT))  # run as a script: make `tests` importable
    from tests.agreement import ProcessStack, run_agreement

    with tempfile.TemporaryDirectory(prefix="crewbus-agreement-") as tmp:
        root = args.keep.resolve() if args.keep else Path(tmp)
        async with ProcessStack(root, args.replicas) as stack:
            figures = await run_agreement(stack, args.tasks, kills=args.kills,
                                          nats_restart=args.nats_restart,
                                          timeout_s=args.timeout, seed=args.seed)
    if args.json:
        print(json.dumps(dataclasses.asdict(figures)))
    else:
        print(figures.report())
    return 1 if figures.tasks_with_problems else 0


if __name__ == "__main__":
    sys.exit(anyio.run(main, parse_args(None)))
