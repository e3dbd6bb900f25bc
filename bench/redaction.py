"""Redaction CPU: the redactor's full Python walk against its JSON fast path, same run.

Redacts what the services redact most: a memory_search span's output (8 hits), a chat
span's input (4 messages) and attributes, and the orchestrator's events (Structs, through
`Tracer.redact`: builtins, walk, convert back, as before, against the fast path). Then the
same values holding a secret, where the fast path finds it and walks as before.

    PYTHONPATH=contracts:agents:services:. python bench/redaction.py [-n 2000] [--base DIR]

Prints microseconds per value: `before` is the redactor of the checkout at `--base` (its
agents/crewbus_agents/tools/redact.py, loaded beside this one), else this branch's walk
(`Redactor._walk`); `fast` is this branch's `data` and `Tracer.redact`.
"""

from __future__ import annotations

import argparse
import importlib.util
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgspec

from crewbus.tracing import Tracer
from crewbus_agents.tools.redact import Redactor
from crewbus_contracts.events import StepFinished, TaskCompleted, TaskPlanned
from crewbus_contracts.models import PlanStep
from crewbus_contracts.tasks import TaskResult

ENV = {"OPENAI_API_KEY": "sk-bench-0123456789abcdefghij", "GITHUB_TOKEN": "ghp_" + "b" * 36,
       "CREWBUS_NATS_PASSWORD": "bench-password-42", "HOME": "/home/crew"}
TEXT = ("The retry budget of the gateway is spent when a model answers 429 twice in a row; "
        "the planner then degrades to a single step. Notes from the run: ") * 3


def memory_output(extra: str = "") -> dict[str, Any]:
    hits = [{"id": f"m{i:04d}", "score": 0.9 - i / 50, "kind": "finding",
             "text": f"{TEXT} hit {i}{extra if i == 5 else ''}",
             "task_id": "t0123456789abcdef01234567"} for i in range(8)]
    return {"hits": hits}


def chat_input(extra: str = "") -> dict[str, Any]:
    roles = ("system", "user", "assistant", "user")
    return {"messages": [{"role": r, "content": f"{TEXT} ({r}){extra if r == 'assistant' else ''}"}
                         for r in roles],
            "model": "gpt-4o-mini", "temperature": 0.2, "max_tokens": 800}


ATTRIBUTES = {"gen_ai.request.model": "gpt-4o-mini", "gen_ai.usage.input_tokens": 812,
              "gen_ai.usage.output_tokens": 120, "crewbus.role": "planner",
              "crewbus.step": "s2", "crewbus.simulated": False}


def events(extra: str = "") -> list[msgspec.Struct]:
    steps = [PlanStep(id=f"s{i}", role="researcher", instruction=TEXT[:120] + str(i))
             for i in range(4)]
    result = TaskResult(answer=TEXT + extra, score=0.8, verdict="good enough", accepted=True,
                        rounds=1)
    return [TaskPlanned(task_id="t0123", round=1, steps=steps, at=1.0),
            StepFinished(task_id="t0123", round=1, step_id="s1", role="researcher", ok=True,
                         duration_s=1.5, at=2.0),
            TaskCompleted(task_id="t0123", result=result, at=3.0)]


def per_value_us(fn: Callable[[Any], Any], values: list[Any], n: int) -> float:
    start = time.process_time()
    for _ in range(n):
        for value in values:
            fn(value)
    return (time.process_time() - start) * 1e6 / (n * len(values))


def base_walk(base: Path | None, redactor: Redactor) -> Callable[[Any], Any]:
    """The redaction before this branch: `base`'s Redactor.data, else this one's walk."""
    if base is None:
        return redactor._walk
    walk: Callable[[Any], Any] = load_base(base).Redactor(env=ENV).data
    return walk


def load_base(base: Path) -> Any:
    """The redact module of the checkout at `base`, loaded beside this branch's."""
    path = base / "agents/crewbus_agents/tools/redact.py"
    spec = importlib.util.spec_from_file_location("base_redact", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def main(n: int, base: Path | None) -> None:
    redactor = Redactor(env=ENV)
    tracer = Tracer(None, "bench", redactor)
    walk = base_walk(base, redactor)

    def old_struct(value: msgspec.Struct) -> Any:
        return msgspec.convert(walk(msgspec.to_builtins(value)), type(value))

    secret = " key " + ENV["CREWBUS_NATS_PASSWORD"]
    cases: list[tuple[str, list[Any], Callable[[Any], Any], Callable[[Any], Any]]] = [
        ("memory_search output", [memory_output()], walk, redactor.data),
        ("chat input", [chat_input()], walk, redactor.data),
        ("span attributes", [ATTRIBUTES], walk, redactor.data),
        ("orchestrator events", events(), old_struct, tracer.redact),
        ("memory_search, secret", [memory_output(secret)], walk, redactor.data),
        ("events, secret", events(secret), old_struct, tracer.redact),
    ]
    for _, values, old, new in cases:  # warm up, and the two agree
        for value in values:
            assert old(value) == new(value)
    print(f"redaction, us per value, {n} rounds, best of 3 (before: {base or 'walk'})")
    for label, values, old, new in cases:
        runs = [(per_value_us(old, values, n), per_value_us(new, values, n)) for _ in range(3)]
        before = min(r[0] for r in runs)
        after = min(r[1] for r in runs)
        print(f"  {label:24} before {before:7.1f}  fast {after:7.1f}  ratio {after / before:5.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("-n", type=int, default=2000, help="rounds per measurement")
    parser.add_argument("--base", type=Path, help="a checkout whose redactor is `before`")
    args = parser.parse_args()
    main(args.n, args.base)
