"""The experiment pair of a replay or a shadow: the baseline holds the recorded (or live)
production tasks' own outcomes, the candidate their replays; both are keyed by the
production task's id, so `crewbus eval compare BASELINE CANDIDATE` pairs them directly."""

from __future__ import annotations

import dataclasses
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

import msgspec
from nats.js import JetStreamContext

from crewbus.evals.run_items import observation_of, run_item_of, set_scores, tool_calls_of
from crewbus.evals.runner import needs_tool_calls, score_all
from crewbus.evals.scorers.base import Scorer
from crewbus.tracing import read_trace
from crewbus_agents.tools.replay import replay_outcome
from crewbus_contracts import TaskState
from crewbus_contracts.evals import DatasetItem, ExperimentConfig, ItemInput, RunItem, ScorerSpec
from crewbus_contracts.traces import Span

PRODUCTION_DATASET = "production"
"""The `dataset` of a replay's or shadow's experiments: production tasks, not a dataset."""
RECORDED_VARIANT = "recorded"
"""The `variant` of a baseline: whatever each production task ran with."""
DEFAULT_SCORERS = ("critic", "no_error")
"""Reference-free scorers a replay and a shadow use when none are given."""


def item_of(state: TaskState) -> DatasetItem:
    """A production task as the item it is replayed as: its id is the task's id; its
    metadata is the task's own (crewbus's keys left out)."""
    metadata = {k: v for k, v in state.metadata.items() if not k.startswith("crewbus.")}
    return DatasetItem(id=state.task_id, source_task_id=state.task_id,
                       input=ItemInput(text=state.text, limits=state.limits, metadata=metadata))


def pair_configs(variant: str, scorers: Sequence[ScorerSpec], mode: str,
                 metadata: dict[str, str] | None = None
                 ) -> tuple[ExperimentConfig, ExperimentConfig]:
    """(baseline, candidate) configurations of a replay's or shadow's experiments."""
    meta = {"crewbus.replay.mode": mode, **(metadata or {})}
    candidate = ExperimentConfig(dataset=PRODUCTION_DATASET, dataset_version=0,
                                 scorers=list(scorers), variant=variant, metadata=meta)
    baseline = msgspec.structs.replace(candidate, variant=RECORDED_VARIANT,
                                       metadata={**meta, "crewbus.replay.side": "baseline"})
    return baseline, candidate


async def scored_run_item(
    js: JetStreamContext, experiment: str, item: DatasetItem, state: TaskState,
    scorers: Sequence[Scorer],
) -> RunItem:
    """The finished `state` as a run item of `experiment` for `item`, scored."""
    run = run_item_of(experiment, item, 0, state, state.created_at, state.updated_at)
    if needs_tool_calls(scorers):
        run.tool_calls = tool_calls_of(await read_trace(js, state.task_id))
    set_scores(run, await score_all(scorers, observation_of(item, run, state)))
    return run


@dataclass
class Fidelity:
    """How faithfully replayed tasks followed their recordings: tool calls and memory
    recalls served from the record (matched) or not (missed), and of the missed tool
    calls those refused for side effects (blocked) and those run live."""

    tool_matched: int = 0
    tool_missed: int = 0
    tool_blocked: int = 0
    tool_live: int = 0
    recall_matched: int = 0
    recall_missed: int = 0

    def add(self, spans: list[Span]) -> None:
        counts: Counter[tuple[str, str]] = Counter()
        for span in spans:
            match = span.attributes.get("crewbus.replay.match")
            if match is None or span.kind not in ("tool", "memory"):
                continue
            counts[(span.kind, str(match))] += 1
            if span.kind == "tool":
                error_type = span.attributes.get("error.type")
                outcome = replay_outcome(str(match), str(span.attributes.get(
                    "crewbus.tool.status")), str(error_type) if error_type else None)
                self.tool_blocked += outcome == "blocked"
                self.tool_live += outcome == "live"
        self.tool_matched += counts[("tool", "hit")]
        self.tool_missed += counts[("tool", "miss")]
        self.recall_matched += counts[("memory", "hit")]
        self.recall_missed += counts[("memory", "miss")]

    @property
    def tool_rate(self) -> float | None:
        total = self.tool_matched + self.tool_missed
        return self.tool_matched / total if total else None

    def line(self) -> str:
        rate = "" if self.tool_rate is None else f" ({self.tool_rate:.0%} matched)"
        return (f"replay fidelity: tool calls {self.tool_matched} matched, "
                f"{self.tool_missed} missed{rate}: {self.tool_blocked} blocked (side effects), "
                f"{self.tool_live} run live; memory recalls {self.recall_matched} matched, "
                f"{self.recall_missed} missed")

    def as_metadata(self) -> dict[str, str]:
        return {f"crewbus.replay.{k}": str(v) for k, v in dataclasses.asdict(self).items()}


async def fidelity_of(js: JetStreamContext, task_ids: Sequence[str]) -> Fidelity:
    """The fidelity over the replayed tasks' traces."""
    fidelity = Fidelity()
    for task_id in task_ids:
        if task_id:
            fidelity.add(await read_trace(js, task_id))
    return fidelity
