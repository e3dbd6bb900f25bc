"""Experiments as text: `crewbus eval show` (summary, then every run item, failures first)
and `crewbus eval list` (one line per experiment)."""

from __future__ import annotations

from collections.abc import Sequence

from crewbus.evals.run_items import passed
from crewbus_contracts.evals import Experiment, ExperimentSummary, RunItem, Score, ScorerSummary

ANSWER_WIDTH = 40
HEADLINE_SCORERS = 3


def _num(value: float | None, digits: int = 3) -> str:
    return "n/a" if value is None else f"{value:.{digits}f}"


def _interval(low: float | None, high: float | None) -> str:
    return "" if low is None or high is None else f" [{low:.3f}, {high:.3f}]"


def _usd(value: float | None) -> str:
    return "n/a" if value is None else f"${value:.6f}"


def _seconds(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.2f}s"


def header(experiment: Experiment) -> list[str]:
    c = experiment.config
    lines = [f"experiment {experiment.name}  [{experiment.status}]  dataset {c.dataset} "
             f"v{c.dataset_version}  target {c.target}  variant {c.variant}  "
             f"epochs {c.epochs}"]
    if c.prompt_versions:
        lines.append("prompts: " + ", ".join(f"{r}={v}" for r, v in
                                             sorted(c.prompt_versions.items())))
    if c.models:
        lines.append("models:  " + ", ".join(f"{r}={m}" for r, m in sorted(c.models.items())))
    lines.append("scorers: " + ", ".join(s.label for s in c.scorers))
    return lines


def scorer_line(s: ScorerSummary) -> str:
    rate = (f"pass {s.passed}/{s.scored} = {_num(s.pass_rate)}"
            f"{_interval(s.pass_rate_low, s.pass_rate_high)}"
            if s.pass_rate is not None else "")
    mean = (f"mean {_num(s.mean)}{_interval(s.mean_low, s.mean_high)}"
            if s.mean is not None else "")
    labels = ("labels " + ", ".join(f"{k}={n}" for k, n in sorted(s.labels.items()))
              if s.labels else "")
    parts = [p for p in (rate, mean, labels) if p]
    errors = f"  {s.errors} could not score" if s.errors else ""
    return f"  {s.name:<20} {s.type:<11} " + "  ".join(parts) + errors


def summary_lines(summary: ExperimentSummary) -> list[str]:
    lines = ["scores (95% intervals: Wilson for pass rates, bootstrap for means):"]
    lines += [scorer_line(s) for s in summary.scorers] or ["  (no scorer scored anything)"]
    missing = summary.items_expected - summary.items_done
    lines.append(
        f"items: {summary.items_done}/{summary.items_expected} run"
        + (f", {missing} missing" if missing else "")
        + (f", {summary.items_errored} could not run" if summary.items_errored else ""))
    unknown = (f" (+{summary.cost_unknown_items} items unpriced)"
               if summary.cost_unknown_items else "")
    lines.append(f"task cost: {_usd(summary.cost_usd_total)} total{unknown}, "
                 f"{_usd(summary.cost_usd_per_item)} per item; {summary.tokens_total} tokens")
    lines.append(evaluation_cost_line(summary))
    lines.append(f"latency: p50 {_seconds(summary.latency_p50_s)}, "
                 f"p95 {_seconds(summary.latency_p95_s)}")
    for t in summary.thresholds:
        lines.append(f"threshold {t.scorer} >= {t.min:g}: {_num(t.observed)} "
                     f"{'held' if t.held else 'FAILED'}")
    lines.append("PASSED" if summary.passed else "FAILED")
    return lines


def evaluation_cost_line(summary: ExperimentSummary) -> str:
    """What scoring cost (the judge's calls), apart from the tasks' cost above it."""
    unknown = (f" (+{summary.eval_cost_unknown_items} items unpriced)"
               if summary.eval_cost_unknown_items else "")
    return (f"evaluation cost: {_usd(summary.eval_cost_usd_total)} total{unknown}; "
            f"{summary.eval_tokens_total} tokens")


def _mark(score: Score) -> str:
    if score.error:
        return f"{score.name} ERR"
    if score.passed is None:
        return f"{score.name}={score.label or _num(score.value, 2)}"
    return f"{score.name} {'ok' if score.passed else 'FAIL'}"


def item_table(runs: Sequence[RunItem]) -> list[str]:
    """One line per run item, failures first, with the task id `crewbus trace` opens."""
    ordered = sorted(runs, key=lambda r: (passed(r), r.item_id, r.epoch))
    rows = [("item", "epoch", "status", "scores", "cost", "eval cost", "latency", "task",
             "answer")]
    for r in ordered:
        scores = " ".join(_mark(s) for s in r.scores) or (r.error_code or "-")
        answer = (r.answer or r.error_message or "").strip().split("\n", 1)[0]
        if len(answer) > ANSWER_WIDTH:
            answer = answer[: ANSWER_WIDTH - 1] + "…"
        rows.append((r.item_id, str(r.epoch), r.status, scores, _usd(r.cost_usd),
                     _usd(r.eval_cost_usd), _seconds(r.latency_s), r.task_id or "-", answer))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]) - 1)]
    return ["  ".join(cell.ljust(w) for cell, w in zip(row[:-1], widths, strict=True))
            + "  " + row[-1] for row in rows]


def show(experiment: Experiment, runs: Sequence[RunItem]) -> str:
    lines = header(experiment)
    if experiment.summary is not None:
        lines += summary_lines(experiment.summary)
    else:
        lines.append(f"no summary yet ({experiment.status}): {len(runs)} run items stored; "
                     "run it again with the same --name to finish it")
    lines.append("")
    lines += item_table(runs)
    return "\n".join(lines) + "\n"


def list_line(experiment: Experiment) -> str:
    c = experiment.config
    summary = experiment.summary
    headline = ""
    verdict: str = experiment.status
    if summary is not None:
        heads = [f"{s.name} {_num(s.pass_rate if s.pass_rate is not None else s.mean, 2)}"
                 for s in summary.scorers[:HEADLINE_SCORERS]]
        headline = ", ".join(heads)
        verdict = "passed" if summary.passed else "failed"
    return (f"{experiment.name:<24} {verdict:<11} {c.dataset}@v{c.dataset_version:<4} "
            f"{c.target:<10} {c.variant:<12} x{c.epochs:<3} {headline}")


def list_text(experiments: Sequence[Experiment]) -> str:
    if not experiments:
        return "no experiments yet (crewbus eval run DATASET --scorer ...)\n"
    title = (f"{'experiment':<24} {'result':<11} {'dataset':<9}  {'target':<10} "
             f"{'variant':<12} {'ep':<4} headline scores")
    return "\n".join([title, *(list_line(e) for e in experiments)]) + "\n"
