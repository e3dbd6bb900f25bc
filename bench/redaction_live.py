"""Redaction CPU on live traffic: bus_overhead's in-process run records every value the
services redact (and the redactor's patterns); then each is redacted again, in a loop,
by this branch's redactor and by the one of the checkout at `--base`, three times
alternating, and the CPU of each is printed by kind of value.

    PYTHONPATH=contracts:agents:services:. python bench/redaction_live.py --base DIR \\
        [bus_overhead options, e.g. -n 60 --levels 1,8 --layouts inproc --cap 60]
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anyio
import msgspec

from bench import bus_overhead
from bench.redaction import load_base
from crewbus.tracing.tracer import Tracer
from crewbus_agents.tools.redact import Redactor

seen: list[tuple[str, Any]] = []
"""(how it was redacted, value), in the order the services redacted them."""
patterns: list[str] = []


def record() -> Callable[[], None]:
    """Record what is redacted from now on; the returned call stops it."""
    data, redact = Redactor.data, Tracer.redact

    def data_recorded(self: Redactor, value: Any) -> Any:
        patterns[:] = [p.pattern for p, _ in self._patterns]
        seen.append(("data", value))
        return data(self, value)

    def redact_recorded(self: Tracer, value: Any) -> Any:
        if isinstance(value, msgspec.Struct):
            seen.append(("struct", value))
        return redact(self, value)

    def stop() -> None:
        Redactor.data = data  # type: ignore[method-assign]
        Tracer.redact = redact  # type: ignore[method-assign]

    Redactor.data = data_recorded  # type: ignore[method-assign]
    Tracer.redact = redact_recorded  # type: ignore[method-assign]
    return stop


def cpu_ms(fn: Callable[[Any], Any], values: list[Any], rounds: int) -> float:
    start = time.process_time()
    for _ in range(rounds):
        for value in values:
            fn(value)
    return (time.process_time() - start) * 1e3 / rounds


def kind(how: str, value: Any) -> str:
    return "Struct (event)" if how == "struct" else type(value).__name__


def main() -> None:
    args = sys.argv[1:]
    at = args.index("--base")
    base = load_base(Path(args[at + 1]))
    del args[at:at + 2]
    stop = record()
    anyio.run(bus_overhead.main, bus_overhead.parse_args(args), **bus_overhead.loop_options())
    stop()
    tasks = bus_overhead.parse_args(args).n * len(bus_overhead.parse_args(args).levels)
    fast, old = Redactor(patterns), base.Redactor(patterns)
    fast_tracer = Tracer(None, "bench", fast)

    def old_struct(value: Any) -> Any:
        return msgspec.convert(old.data(msgspec.to_builtins(value)), type(value))

    groups: dict[str, list[Any]] = {}
    for how, value in seen:
        groups.setdefault(kind(how, value), []).append(value)
    print(f"redacted values recorded: {len(seen)} (about {tasks} tasks, warm-up included), "
          f"{len(patterns)} configured patterns")
    print("CPU ms for all of them, best of 3: base -> this branch")
    total_old = total_fast = 0.0
    for name, values in sorted(groups.items()):
        is_struct = name.startswith("Struct")
        new_fn = fast_tracer.redact if is_struct else fast.data
        old_fn = old_struct if is_struct else old.data
        walked = sum(1 for v in values if isinstance(v, str) or (
            isinstance(v, dict | list | tuple | msgspec.Struct) and fast.may_redact(v)))
        runs = [(cpu_ms(old_fn, values, 3), cpu_ms(new_fn, values, 3)) for _ in range(3)]
        before, after = min(r[0] for r in runs), min(r[1] for r in runs)
        total_old += before
        total_fast += after
        print(f"  {name:16} {len(values):6d} values ({walked:5d} walked)  "
              f"{before:7.1f} -> {after:7.1f}")
    print(f"  {'all':16} {len(seen):6d} values                {total_old:7.1f} -> "
          f"{total_fast:7.1f}  (ratio {total_fast / total_old:.2f})")


if __name__ == "__main__":
    main()
