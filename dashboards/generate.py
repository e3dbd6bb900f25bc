"""crewbus Grafana dashboards as code: `python dashboards/generate.py` rewrites dashboards/*.json.

Panels are plain data (`Dash`, `Panel`, `Query`) so tests can list every PromQL query
(`panel_queries()`); grafana-foundation-sdk (Grafana's official SDK, pinned to the
Grafana 11.6 schema) turns them into dashboard JSON.
Rare-event counters end in `or vector(0)`: "nothing happened" is a true zero, not a gap.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from grafana_foundation_sdk.builders import dashboard, heatmap, prometheus, stat, timeseries
from grafana_foundation_sdk.cog.builder import Builder
from grafana_foundation_sdk.cog.encoder import JSONEncoder
from grafana_foundation_sdk.models.dashboard import DataSourceRef
from grafana_foundation_sdk.models.dashboard import Panel as PanelModel
from grafana_foundation_sdk.models.prometheus import PromQueryFormat

DATASOURCE_UID = "crewbus-prometheus"
DATASOURCE = DataSourceRef(type_val="prometheus", uid=DATASOURCE_UID)
OUT_DIR = Path(__file__).resolve().parent
W = "$__rate_interval"
"""Rate window; Grafana fills it in from the scrape interval."""
RANGE = "$__range"
"""The dashboard's whole time range (stat panels)."""

Kind = Literal["timeseries", "stat", "heatmap"]


@dataclass(frozen=True)
class Query:
    expr: str
    legend: str = ""


@dataclass(frozen=True)
class Panel:
    title: str
    queries: tuple[Query, ...]
    unit: str = "short"
    description: str = ""
    kind: Kind = "timeseries"


@dataclass(frozen=True)
class Dash:
    file: str
    uid: str
    title: str
    description: str
    panels: tuple[Panel, ...]


@dataclass(frozen=True)
class PanelQuery:
    """One query of one panel, as the live Prometheus test runs it."""

    dashboard: str
    panel: str
    expr: str

    def promql(self, rate_window: str = "1m", range_window: str = "5m") -> str:
        """The expr with Grafana's variables replaced, ready for Prometheus's HTTP API."""
        return self.expr.replace(W, rate_window).replace(RANGE, range_window)


def q(expr: str, legend: str = "") -> Query:
    return Query(" ".join(expr.split()), legend)


def quantiles(metric: str, by: str = "", legend: str = "") -> tuple[Query, ...]:
    """p50/p95/p99 of a histogram, optionally per label (`by`)."""
    group = f"le, {by}" if by else "le"
    return tuple(
        q(f"histogram_quantile({p}, sum by ({group}) (rate({metric}_bucket[{W}])))",
          f"{legend}p{int(p * 100)}")
        for p in (0.5, 0.95, 0.99)
    )


def ratio(num: str, den: str, by: str = "") -> str:
    group = f" by ({by})" if by else ""
    return f"sum{group} (rate({num}[{W}])) / sum{group} (rate({den}[{W}]))"


OVERVIEW = Dash("overview.json", "crewbus-overview", "crewbus / Overview",
                "Tasks, latency, cost and quality at a glance.", (
    Panel("Tasks per second", (q(f"sum by (outcome) (rate(crewbus_tasks_total[{W}]))",
                                 "{{outcome}}"),), "reqps",
          "Submitted, completed and failed tasks per second."),
    Panel("Task success ratio", (q(
        f"""sum(rate(crewbus_tasks_total{{outcome="completed"}}[{W}]))
            / sum(rate(crewbus_tasks_total{{outcome=~"completed|failed"}}[{W}]))""",
        "success"),), "percentunit", "Completed / (completed + failed)."),
    Panel("Task failures by reason", (q(
        f"""sum by (reason) (rate(crewbus_tasks_total{{outcome="failed"}}[{W}]))
            or vector(0)""", "{{reason}}"),), "reqps"),
    Panel("Task end-to-end latency", quantiles("crewbus_task_duration_seconds"), "s",
          "Submission to final result."),
    Panel("LLM spend (USD per hour)", (q(
        f"sum(rate(crewbus_llm_cost_usd_total[{W}])) * 3600", "USD/h"),), "currencyUSD"),
    Panel("LLM spend per finished task (USD)", (q(
        f"""sum(increase(crewbus_llm_cost_usd_total[{RANGE}]))
            / sum(increase(crewbus_tasks_total{{outcome=~"completed|failed"}}[{RANGE}]))""",
        "USD/task"),), "currencyUSD", "Over the selected time range.", "stat"),
    Panel("Mean critic score", (q(
        ratio("crewbus_critic_score_sum", "crewbus_critic_score_count"), "score"),),
          "percentunit"),
    Panel("Re-plans per finished task", (q(
        f"""sum(rate(crewbus_replans_total[{W}]))
            / sum(rate(crewbus_tasks_total{{outcome=~"completed|failed"}}[{W}]))""",
        "re-plans/task"),), "short", "How often the critic sent a plan back."),
))

AGENTS = Dash("agents.json", "crewbus-agents", "crewbus / Agents",
              "Per role: throughput, latency, errors, queues, replicas.", (
    Panel("Throughput by role", (q(f"sum by (role) (rate(crewbus_steps_total[{W}]))",
                                   "{{role}}"),), "ops", "Work items finished per second."),
    Panel("Step latency by role", quantiles("crewbus_step_duration_seconds", "role",
                                            "{{role}} "), "s"),
    Panel("Step errors by role", (q(
        f"""sum by (role) (rate(crewbus_steps_total{{outcome!="ok"}}[{W}])) or vector(0)""",
        "{{role}}"),), "ops"),
    Panel("Queue pending by consumer", (q(
        "max by (consumer) (crewbus_queue_pending)", "{{consumer}}"),), "short",
          "Not yet delivered, from JetStream consumer info."),
    Panel("Queue ack-pending by consumer", (q(
        "max by (consumer) (crewbus_queue_ack_pending)", "{{consumer}}"),), "short",
          "Delivered and being worked on, not yet acked."),
    Panel("Redeliveries", (
        q(f"sum by (role) (rate(crewbus_redeliveries_total[{W}])) or vector(0)", "{{role}}"),
        q("max by (consumer) (crewbus_queue_redelivered)", "{{consumer}} unacked"),
    ), "short"),
    Panel("Dead letters", (q(
        f"sum by (role, reason) (increase(crewbus_dead_letters_total[{W}])) or vector(0)",
        "{{role}} {{reason}}"),), "short"),
    Panel("Replicas up by role", (q("sum by (role) (crewbus_service_info)", "{{role}}"),),
          "short", "Processes reporting crewbus_service_info."),
))

LLM = Dash("llm.json", "crewbus-llm", "crewbus / LLM",
           "Calls, tokens, cost and latency of every model call.", (
    Panel("LLM calls per second", (q(
        f"""sum by (gen_ai_request_model, error_type)
            (rate(gen_ai_client_operation_duration_seconds_count[{W}]))""",
        "{{gen_ai_request_model}} {{error_type}}"),), "ops"),
    Panel("Tokens per second", (q(
        f"""sum by (gen_ai_request_model, gen_ai_token_type)
            (rate(gen_ai_client_token_usage_sum[{W}]))""",
        "{{gen_ai_request_model}} {{gen_ai_token_type}}"),), "short"),
    Panel("Cost by model (USD per hour)", (q(
        f"sum by (model) (rate(crewbus_llm_cost_usd_total[{W}])) * 3600", "{{model}}"),),
          "currencyUSD"),
    Panel("Cost by agent (USD per hour)", (q(
        f"sum by (agent) (rate(crewbus_llm_cost_usd_total[{W}])) * 3600", "{{agent}}"),),
          "currencyUSD"),
    Panel("Latency by model", quantiles("gen_ai_client_operation_duration_seconds",
                                        "gen_ai_request_model",
                                        "{{gen_ai_request_model}} "), "s"),
    Panel("Time to first token (streamed calls)", quantiles(
        "crewbus_llm_time_to_first_token_seconds", "gen_ai_request_model",
        "{{gen_ai_request_model}} "), "s"),
    Panel("Validation retries", (q(
        f"sum by (agent) (rate(crewbus_llm_validation_retries_total[{W}])) or vector(0)",
        "{{agent}}"),), "ops", "Structured replies sent back to the model to fix."),
    Panel("Unpriced calls", (q(
        f"""sum by (agent, model) (increase(crewbus_llm_unpriced_calls_total[{W}]))
            or vector(0)""", "{{agent}} {{model}}"),), "short",
          "Calls to models missing from the price table: add them (docs/observability.md)."),
))

QUALITY = Dash("quality.json", "crewbus-quality", "crewbus / Quality",
               "What the critic thinks, how many rounds it takes, what evaluations score, and "
               "how replays and shadows ran.", (
    Panel("Mean critic score by variant", (q(
        f"""sum by (variant) (rate(crewbus_critic_score_sum{{role="critic"}}[{W}]))
            / sum by (variant) (rate(crewbus_critic_score_count{{role="critic"}}[{W}]))""",
        "{{variant}}"),), "percentunit",
          "Variants side by side; each critique counted once (the critic's own series)."),
    Panel("Critiques per second by variant", (q(
        f"""sum by (variant) (rate(crewbus_critic_score_count{{role="critic"}}[{W}]))""",
        "{{variant}}"),), "ops",
          "How many scores each variant's mean rests on: few critiques, a noisy mean."),
    Panel("Mean critic score by variant, agent and prompt version", (q(
        ratio("crewbus_critic_score_sum", "crewbus_critic_score_count",
              "variant, role, prompt_version"),
        "{{variant}} {{role}} prompt {{prompt_version}}"),), "percentunit",
          "prompt_version is the number `crewbus prompt list ROLE` shows; the critic's "
          "own prompt is role=critic."),
    Panel("Median critic score by variant, agent and prompt version", (q(
        f"""histogram_quantile(0.5, sum by (le, variant, role, prompt_version)
            (rate(crewbus_critic_score_bucket[{W}])))""",
        "{{variant}} {{role}} prompt {{prompt_version}}"),), "percentunit"),
    Panel("Critic score distribution", (q(
        f"sum by (le) (increase(crewbus_critic_score_bucket[{W}]))", "{{le}}"),), "short",
          kind="heatmap"),
    Panel("Verdicts", (q(f"sum by (verdict) (rate(crewbus_critic_verdicts_total[{W}]))",
                         "{{verdict}}"),), "ops"),
    Panel("Degraded rounds by reason", (q(
        f"""sum by (reason) (rate(crewbus_degraded_total[{W}])) or vector(0)""",
        "{{reason}}"),), "ops",
          "Plans repaired (plan_repaired) or replaced by one executor step (single_step)."),
    Panel("Planning rounds per task", (
        q(ratio("crewbus_task_planning_rounds_sum", "crewbus_task_planning_rounds_count"),
          "mean"),
        q(f"""histogram_quantile(0.95, sum by (le)
              (rate(crewbus_task_planning_rounds_bucket[{W}])))""", "p95"),
    ), "short"),
    Panel("Evaluation: mean score by scorer, prompt version and variant", (q(
        f"""sum by (scorer, dataset, prompt_version, variant)
            (increase(crewbus_eval_score_sum[{RANGE}]))
            / sum by (scorer, dataset, prompt_version, variant)
            (increase(crewbus_eval_score_count[{RANGE}]))""",
        "{{scorer}} {{dataset}} {{prompt_version}} {{variant}}"),), "percentunit",
          "Scores of `crewbus eval run` over the selected range, side by side per prompt "
          "version and variant of the judged agent.", "stat"),
    Panel("Evaluation: pass rate by scorer and variant", (q(
        f"""sum by (scorer, variant)
              (increase(crewbus_eval_results_total{{outcome="pass"}}[{RANGE}]))
            / sum by (scorer, variant) (increase(crewbus_eval_results_total[{RANGE}]))""",
        "{{scorer}} {{variant}}"),), "percentunit",
          "Passed / scored; a scorer that could not score counts against it.", "stat"),
    Panel("Evaluation: scores per second by outcome", (q(
        f"""sum by (outcome) (rate(crewbus_eval_results_total[{W}])) or vector(0)""",
        "{{outcome}}"),), "ops", "pass, fail, error (could not score), unjudged."),
    Panel("Evaluation cost: the judge's USD by scorer and dataset", (q(
        f"""sum by (scorer, dataset) (increase(crewbus_eval_cost_usd_total[{RANGE}]))
            or vector(0)""", "{{scorer}} {{dataset}}"),), "currencyUSD",
          "What evaluating cost over the selected range (the LLM judge's calls, priced "
          "like the agents'), apart from the tasks' cost; unpriced judge models are in "
          "crewbus_eval_unpriced_scores_total.", "stat"),
    Panel("Evaluation: score distribution", (q(
        f"sum by (le) (increase(crewbus_eval_score_bucket[{W}]))", "{{le}}"),), "short",
          kind="heatmap"),
    Panel("Evaluation vs production: critic score by prompt version", (
        q(ratio("crewbus_critic_score_sum", "crewbus_critic_score_count", "prompt_version"),
          "critic {{prompt_version}}"),
        q(ratio("crewbus_eval_score_sum", "crewbus_eval_score_count", "prompt_version"),
          "eval {{prompt_version}}"),
    ), "percentunit", "The critic's score of production tasks next to evaluation scores."),
    Panel("Replay and shadow: tool calls served from the record", (q(
        f"""sum by (mode) (increase(crewbus_replay_tool_calls_total{{match="hit"}}[{RANGE}]))
            / sum by (mode) (increase(crewbus_replay_tool_calls_total[{RANGE}]))""",
        "{{mode}}"),), "percentunit",
          "Replay fidelity over the selected range, as `crewbus replay` prints it. A shadow's "
          "twin runs beside production, before anything is recorded: 0 by design.", "stat"),
    Panel("Replay and shadow: memory recalls served from the record", (q(
        f"""sum by (mode)
              (increase(crewbus_replay_memory_recalls_total{{match="hit"}}[{RANGE}]))
            / sum by (mode) (increase(crewbus_replay_memory_recalls_total[{RANGE}]))""",
        "{{mode}}"),), "percentunit",
          "Recalls read live (`--live-memory`, a shadow's default) count as not served.",
          "stat"),
    Panel("Replay and shadow: spend over the range (USD)", (q(
        f"sum by (mode) (increase(crewbus_replay_cost_usd_total[{RANGE}]))", "{{mode}}"),),
          "currencyUSD", "Also in crewbus_llm_cost_usd: production is the difference.",
          "stat"),
    Panel("Replay and shadow: tool calls by match and outcome", (q(
        f"""sum by (mode, match, outcome) (rate(crewbus_replay_tool_calls_total[{W}]))
            or vector(0)""", "{{mode}} {{match}} {{outcome}}"),), "ops",
          "hit: the recorded result was served; a miss ran live, was blocked (side "
          "effects) or refused (not allowed live)."),
    Panel("Replay and shadow: memory recalls by match", (q(
        f"""sum by (mode, match) (rate(crewbus_replay_memory_recalls_total[{W}]))
            or vector(0)""", "{{mode}} {{match}}"),), "ops",
          "hit: the recorded hits of the same query were served; miss: none recorded; "
          "live: the task read live memory (--live-memory, a shadow's default)."),
    Panel("Replay and shadow: spend vs all LLM calls (USD per hour)", (
        q(f"sum by (mode) (rate(crewbus_replay_cost_usd_total[{W}])) * 3600", "{{mode}}"),
        q(f"sum(rate(crewbus_llm_cost_usd_total[{W}])) * 3600", "all LLM calls"),
    ), "currencyUSD", "A replayed or shadow task's spend is counted when it ends, every "
       "LLM call's as it is made."),
    Panel("Shadow: events", (q(
        f"sum by (event) (increase(crewbus_shadow_total[{W}])) or vector(0)", "{{event}}"),),
          "short",
          "started: a twin of a sampled live task submitted; recorded: a run item "
          "stored (of the twin or its live task); budget_exceeded: the shadow stopped "
          "itself."),
))

BUS_MEMORY = Dash("bus_memory.json", "crewbus-bus-memory", "crewbus / Bus and memory",
                  "Messages on the bus, rejected input, memory searches.", (
    Panel("Messages by subject kind", (q(
        f"sum by (subject_kind, direction) (rate(crewbus_bus_messages_total[{W}]))",
        "{{subject_kind}} {{direction}}"),), "ops"),
    Panel("Bad input by reason", (q(
        f"""sum by (reason, subject_kind) (rate(crewbus_bad_input_total[{W}]))
            or vector(0)""", "{{reason}} ({{subject_kind}})"),), "ops"),
    Panel("Memory search latency", quantiles("crewbus_memory_search_duration_seconds"), "s"),
    Panel("Memory searches per second", (q(
        f"sum by (backend) (rate(crewbus_memory_search_duration_seconds_count[{W}]))",
        "{{backend}}"),), "ops"),
    Panel("Memory hits per search", (q(
        ratio("crewbus_memory_search_hits_sum", "crewbus_memory_search_hits_count"),
        "mean hits"),), "short"),
))

DASHBOARDS: tuple[Dash, ...] = (OVERVIEW, AGENTS, LLM, QUALITY, BUS_MEMORY)


def panel_queries() -> Iterator[PanelQuery]:
    """Every (dashboard, panel title, PromQL) the dashboards run."""
    for dash in DASHBOARDS:
        for panel in dash.panels:
            for query in panel.queries:
                yield PanelQuery(dash.title, panel.title, query.expr)


def _target(query: Query, ref_id: str, heat: bool) -> prometheus.Dataquery:
    target = prometheus.Dataquery().expr(query.expr).ref_id(ref_id).legend_format(query.legend)
    if heat:
        target = target.format(PromQueryFormat.HEATMAP)
    return target


def _panel(panel: Panel, panel_id: int) -> Builder[PanelModel]:
    builder: timeseries.Panel | stat.Panel | heatmap.Panel
    if panel.kind == "stat":
        builder = stat.Panel().height(6).span(8)
    elif panel.kind == "heatmap":
        builder = heatmap.Panel().calculate(False).height(8).span(12)
    else:
        builder = timeseries.Panel().height(8).span(12)
    builder = builder.id(panel_id).title(panel.title).datasource(DATASOURCE).unit(panel.unit)
    if panel.description:
        builder = builder.description(panel.description)
    for i, query in enumerate(panel.queries):
        builder = builder.with_target(_target(query, chr(ord("A") + i), panel.kind == "heatmap"))
    return builder


def build(dash: Dash) -> dict[str, object]:
    """The dashboard as the JSON object Grafana's file provider loads."""
    builder = (
        dashboard.Dashboard(dash.title).uid(dash.uid).description(dash.description)
        .tags(["crewbus"]).refresh("30s").time("now-1h", "now").timezone("browser")
        .readonly()
    )
    for i, panel in enumerate(dash.panels, start=1):
        builder = builder.with_panel(_panel(panel, i))
    encoded: dict[str, object] = json.loads(json.dumps(builder.build(), cls=JSONEncoder))
    return encoded


def render(dash: Dash) -> str:
    return json.dumps(build(dash), indent=2, sort_keys=True) + "\n"


def write(out_dir: Path = OUT_DIR) -> list[Path]:
    paths = []
    for dash in DASHBOARDS:
        path = out_dir / dash.file
        path.write_text(render(dash))
        paths.append(path)
    return paths


def main() -> int:
    for path in write():
        print(path)
    return 0


if __name__ == "__main__":
    sys.exit(main())
