"""Dashboards as code: the committed JSON is what the code generates, and every query
refers only to metrics crewbus defines (and parses, when promtool is installed)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml

from crewbus.telemetry.metrics import exposed_names
from tests.dashboards_helper import ROOT, load_generator

gen = load_generator()

PROMQL_WORDS = {"by", "without", "and", "or", "unless", "bool", "offset", "on", "ignoring",
                "group_left", "group_right", "inf", "nan"}


@pytest.mark.parametrize("dash", gen.DASHBOARDS, ids=lambda d: d.file)
def test_committed_dashboard_json_matches_the_generator(dash: Any) -> None:
    committed = (ROOT / "dashboards" / dash.file).read_text()
    assert committed == gen.render(dash), (
        f"dashboards/{dash.file} is stale: run `python dashboards/generate.py`"
    )


def test_no_stray_dashboard_json() -> None:
    generated = {d.file for d in gen.DASHBOARDS}
    assert {p.name for p in (ROOT / "dashboards").glob("*.json")} == generated


def test_every_dashboard_uses_the_provisioned_datasource() -> None:
    for dash in gen.DASHBOARDS:
        built = gen.build(dash)
        assert built["uid"] == dash.uid
        for panel in built["panels"]:
            assert panel["datasource"] == {"type": "prometheus", "uid": "crewbus-prometheus"}
            assert panel["targets"], panel["title"]
    datasource = yaml.safe_load(
        (ROOT / "infra/grafana/provisioning/datasources/prometheus.yml").read_text()
    )
    assert datasource["datasources"][0]["uid"] == gen.DATASOURCE_UID


def metric_names_in(expr: str) -> set[str]:
    """Identifiers in a PromQL expr that are metric names (not labels, functions, words)."""
    text = re.sub(r'"(?:[^"\\]|\\.)*"', "", expr)
    text = re.sub(r"\{[^}]*\}", "", text)
    text = re.sub(r"\[[^\]]*\]", "", text)
    text = re.sub(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\([^)]*\)", "", text)
    names = set()
    for match in re.finditer(r"[A-Za-z_:][A-Za-z0-9_:]*", text):
        word = match.group(0)
        if word.lower() in PROMQL_WORDS or text[match.end():].lstrip().startswith("("):
            continue
        names.add(word)
    return names


def test_panels_cover_the_issue() -> None:
    titles = {(q.dashboard, q.panel) for q in gen.panel_queries()}
    assert len({d for d, _ in titles}) == 5
    assert len(titles) >= 30


def test_every_query_references_only_defined_metrics() -> None:
    known = exposed_names() | {"vector"}
    for query in gen.panel_queries():
        unknown = metric_names_in(query.expr) - known
        assert not unknown, f"{query.dashboard} / {query.panel}: unknown {unknown}"
        assert metric_names_in(query.expr), query.expr


def test_metric_name_extraction_ignores_labels_and_functions() -> None:
    expr = ('histogram_quantile(0.5, sum by (le, gen_ai_request_model) '
            '(rate(gen_ai_client_operation_duration_seconds_bucket{error_type=""}[1m])))')
    assert metric_names_in(expr) == {"gen_ai_client_operation_duration_seconds_bucket"}


@pytest.mark.skipif(shutil.which("promtool") is None, reason="promtool not installed")
def test_every_query_parses_as_promql(tmp_path: Path) -> None:
    rules = [{"record": f"crewbus:check:{i}", "expr": q.promql()}
             for i, q in enumerate(gen.panel_queries())]
    path = tmp_path / "rules.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboards", "rules": rules}]}))
    run = subprocess.run(["promtool", "check", "rules", str(path)],
                         capture_output=True, text=True, check=False)
    assert run.returncode == 0, run.stdout + run.stderr


def test_generated_json_is_stable() -> None:
    dash = gen.DASHBOARDS[0]
    assert json.loads(gen.render(dash)) == gen.build(dash)
