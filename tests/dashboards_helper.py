"""Load dashboards/generate.py (a script, not an installed package) for tests."""

from __future__ import annotations

import importlib.util
import math
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

ROOT = Path(__file__).resolve().parents[1]


def load_generator() -> ModuleType:
    """The dashboards generator module; `panel_queries()` lists every panel query."""
    name = "crewbus_dashboards_generate"
    if name in sys.modules:
        return sys.modules[name]
    spec = importlib.util.spec_from_file_location(name, ROOT / "dashboards" / "generate.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses look their module up while building
    spec.loader.exec_module(module)
    return module


DRIVEN = ("Replay and shadow:", "Shadow:")
"""Title prefixes of the panels whose series exist at 0 before anything happens (see
`metrics._zero_replay_series`): data alone proves nothing, so the tests that drive them
want a value above 0 from each of their queries."""


def is_driven(panel_title: str) -> bool:
    return panel_title.startswith(DRIVEN)


def shows_activity(result: list[dict[str, Any]]) -> bool:
    """Some sample of an instant query's result is a number above 0 (not 0, not NaN)."""
    values = [float(sample["value"][1]) for sample in result]
    return any(math.isfinite(v) and v > 0 for v in values)
