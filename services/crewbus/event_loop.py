"""Which event loop a crewbus process runs on: uvloop where it installs, unless turned off.

uvloop runs anyio's asyncio backend on libuv: the same asyncio API, with socket writes,
callbacks and timers in C, which is a large share of a bus service's CPU (every publish is
a socket write; docs/benchmarks.md). `CREWBUS_EVENT_LOOP=asyncio` keeps asyncio's own.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Mapping
from typing import Any

from crewbus.settings import BusSettings, load


def uvloop_available() -> bool:
    return importlib.util.find_spec("uvloop") is not None


def run_options(env: Mapping[str, str] | None = None) -> dict[str, Any]:
    """Keyword arguments for `anyio.run` that pick the configured loop."""
    wanted = load(BusSettings, env=env).event_loop
    use_uvloop = wanted == "uvloop" and uvloop_available()
    return {"backend": "asyncio", "backend_options": {"use_uvloop": use_uvloop}}
