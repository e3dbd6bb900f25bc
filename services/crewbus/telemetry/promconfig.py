"""Render a prometheus.yml that scrapes crewbus processes on fixed addresses.

For running a real Prometheus against a local stack (tests, `crewbus up`), where
compose's DNS discovery is not available. Written as JSON, which is valid YAML, so
no YAML library is needed at run time.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence


def render_static_config(
    targets: Mapping[str, Sequence[str]], scrape_interval_s: float = 1.0
) -> str:
    """YAML for one scrape job per role: `{"researcher": ["127.0.0.1:9465"], ...}`."""
    interval = f"{scrape_interval_s:g}s"
    config = {
        "global": {"scrape_interval": interval, "evaluation_interval": interval},
        "scrape_configs": [
            {"job_name": job, "static_configs": [{"targets": list(addresses)}]}
            for job, addresses in sorted(targets.items())
        ],
    }
    return json.dumps(config, indent=2) + "\n"
