"""Online evaluator throughput: scores per second of one `crewbus serve evaluator` replica
(wired by its bootstrap, in this process) over a backlog of finished tasks.

N single-agent (planner) tasks run to their end first with the simulated model at zero
latency; then an evaluator reads them all from the start of the events stream, at rate 1,
with two evaluators files, one after the other on the same tasks (each under a new
evaluator name, so nothing is read back as already scored):

  rules  no_error, max_rounds, latency_s: what a score costs besides judging (the state
         read, the KV create, the span, the metric);
  judge  the same plus llm_judge (the simulated model over HTTP on 127.0.0.1).

Each is timed from the evaluator's start to its consumer having nothing pending or unacked.
Printed: tasks/s and scores/s of each, and judge:rules time ratio.

    PYTHONPATH=contracts:agents:services:. python bench/evaluator_throughput.py [--quick]
"""

from __future__ import annotations

import argparse
import logging
import tempfile
import time
from pathlib import Path

import anyio

from crewbus.devstack.nats_server import NatsServer
from crewbus.llm.simulated import SimulatedModel
from crewbus_contracts import SubmitTask, subjects
from tests.online_helpers import (
    evaluator_settings,
    run_tasks,
    running_evaluator,
    score_keys,
    wait_idle,
)
from tests.stack import in_process_stack

RULES = """
[[evaluator.scorer]]
kind = "no_error"
[[evaluator.scorer]]
kind = "max_rounds"
max = 2
[[evaluator.scorer]]
kind = "latency_s"
max = 60
"""
JUDGE = RULES + """
[[evaluator.scorer]]
kind = "llm_judge"
rubric = "helpfulness"
"""


async def measure(tasks: int) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        server = NatsServer(root / "nats").start()
        model = SimulatedModel()
        model_url = await model.start()
        try:
            async with in_process_stack(server.url, model_url, roles=["planner"]) as client:
                await run_tasks(client, [SubmitTask(text=f"Plan a picnic, basket {i}",
                                                    target="planner") for i in range(tasks)],
                                timeout_s=600)
                timings = {}
                for name, scorers in (("rules", RULES), ("judge", JUDGE)):
                    toml = root / f"{name}.toml"
                    toml.write_text(f'[[evaluator]]\nname = "{name}"\n{scorers}')
                    before = len(await score_keys(client))
                    settings = evaluator_settings(server.url, model_url, toml,
                                                  evaluator_concurrency=8)
                    started = time.monotonic()
                    async with running_evaluator(client, settings):
                        await wait_idle(client, timeout_s=600)
                        elapsed = time.monotonic() - started
                    scores = len(await score_keys(client)) - before
                    await client.js.delete_consumer(subjects.EVENTS_STREAM,
                                                    subjects.EVALUATOR_CONSUMER)
                    timings[name] = elapsed
                    print(f"{name:<6} {tasks} tasks, {scores} scores in {elapsed:.2f}s: "
                          f"{tasks / elapsed:.1f} tasks/s, {scores / elapsed:.1f} scores/s")
                print(f"judge:rules time ratio {timings['judge'] / timings['rules']:.2f}")
        finally:
            await model.stop()
            server.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="100 tasks instead of 400")
    args = parser.parse_args()
    logging.basicConfig(level=logging.WARNING)
    anyio.run(measure, 100 if args.quick else 400)


if __name__ == "__main__":
    main()
