"""The evaluator service's settings (`CREWBUS_EVALUATORS_FILE`, `CREWBUS_EVALUATOR_*`)."""

from __future__ import annotations

from crewbus.settings import BusSettings


class EvaluatorSettings(BusSettings, kw_only=True, frozen=True):
    evaluators_file: str = ""
    """The evaluators.toml the evaluator service runs (see examples/evaluators.toml).
    Unset: `crewbus up` starts no evaluator, `crewbus serve evaluator` needs `--file`."""
    evaluator_add_to: str = ""
    """A dataset every evaluator adds its failing tasks to (as `--add-to`), beside each
    evaluator's own `add_to`."""
    evaluator_concurrency: int = 8
    """Finished tasks one evaluator replica scores at once."""
    evaluator_from_start: bool = False
    """When the evaluator's durable consumer is first created: also score the tasks that
    finished before (as far back as events are kept), not only those finishing from now."""
