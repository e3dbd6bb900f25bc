"""A comparison as text, for `crewbus eval compare` (the `--json` form is the Struct)."""

from __future__ import annotations

from crewbus_contracts.comparisons import (
    BooleanComparison,
    CategoricalComparison,
    Comparison,
    GateResult,
    ItemChange,
    MetricDelta,
    NumericComparison,
    ScoreValue,
)

MAX_ITEMS_SHOWN = 20
_ANSWER_WIDTH = 60


def render_comparison(
    comparison: Comparison, gate: GateResult | None = None, max_items: int = MAX_ITEMS_SHOWN
) -> str:
    """The whole comparison: scorers, spend and speed, changed items, unpaired items, gate."""
    c = comparison
    out = [
        f"baseline:  {c.baseline}",
        f"candidate: {c.candidate}",
        f"pairs: {c.pairs} (by item id and epoch)",
    ]
    for scorer in c.scorers:
        out += ["", *_scorer(scorer)]
    if c.runs is not None:
        judged = c.runs.eval_cost_usd_per_item  # what the judge cost, apart from the tasks
        out += [
            "",
            "spend and speed (candidate - baseline):",
            f"  cost per item   {_metric(c.runs.cost_usd_per_item, '${:.6f}')}",
            *([f"  eval cost/item  {_metric(judged, '${:.6f}')}"] if judged is not None
              else []),
            f"  tokens per item {_metric(c.runs.tokens_per_item, '{:.1f}')}",
            f"  latency p50     {_metric(c.runs.latency_p50_s, '{:.2f}s')}",
            f"  latency p95     {_metric(c.runs.latency_p95_s, '{:.2f}s')}",
        ]
        unknown = c.runs.baseline_cost_unknown + c.runs.candidate_cost_unknown
        if unknown:
            out.append(
                f"  cost unknown for {c.runs.baseline_cost_unknown} baseline and "
                f"{c.runs.candidate_cost_unknown} candidate item(s) (left out)"
            )
        eval_unknown = c.runs.baseline_eval_cost_unknown + c.runs.candidate_eval_cost_unknown
        if eval_unknown:
            out.append(
                f"  evaluation cost unknown for {c.runs.baseline_eval_cost_unknown} baseline "
                f"and {c.runs.candidate_eval_cost_unknown} candidate item(s) (left out)"
            )
    out += _changes("regressed", c.regressed, max_items)
    out += _changes("improved", c.improved, max_items)
    for label, keys in (("only in baseline", c.only_in_baseline),
                        ("only in candidate", c.only_in_candidate)):
        if keys:
            shown = ", ".join(_key(k.item_id, k.epoch) for k in keys[:max_items])
            more = f" and {len(keys) - max_items} more" if len(keys) > max_items else ""
            out += ["", f"{label} ({len(keys)}, not paired): {shown}{more}"]
    for label, names in (("scorers only in baseline", c.scorers_only_in_baseline),
                         ("scorers only in candidate", c.scorers_only_in_candidate)):
        if names:
            out += ["", f"{label}: {', '.join(names)}"]
    if gate is not None:
        out += ["", *render_gate(gate)]
    return "\n".join(out)


def render_gate(gate: GateResult) -> list[str]:
    head = "PASSED" if gate.passed else "FAILED"
    lines = [f"gate {head} (fails on a drop > {gate.max_drop:g} with p < {gate.alpha:g})"]
    lines += [f"  {reason}" for reason in gate.reasons]
    return lines


def _scorer(s: BooleanComparison | NumericComparison | CategoricalComparison) -> list[str]:
    if isinstance(s, BooleanComparison):
        lines = [
            f"{s.name} (boolean, {s.pairs} pairs)",
            f"  pass rate  {_rate(s.baseline_pass_rate)} → {_rate(s.candidate_pass_rate)}"
            f"  ({_signed(s.difference, pct=True)})",
            f"  discordant pairs: {s.b} regressed (baseline pass, candidate fail), "
            f"{s.c} improved",
            (f"  McNemar {s.test}: "
             + (f"χ² = {s.statistic:.3f}, " if s.statistic is not None else "")
             + f"p = {_p(s.p_value)}") if s.test != "none"
            else "  McNemar: no discordant pairs, p = 1",
        ]
        return lines + _errors(s.baseline_errors, s.candidate_errors, "fail")
    if isinstance(s, NumericComparison):
        lines = [
            f"{s.name} (numeric, {s.pairs} pairs)",
            f"  mean  {_num(s.baseline_mean)} → {_num(s.candidate_mean)}",
            f"  mean paired difference {_signed(s.mean_difference)}"
            + (
                f", {s.confidence:.0%} bootstrap interval [{_signed(s.difference_low)}, "
                f"{_signed(s.difference_high)}] ({s.resamples} resamples, seed {s.seed})"
                if s.difference_low is not None and s.difference_high is not None else ""
            ),
            f"  Wilcoxon signed-rank p = {_p(s.wilcoxon_p)}; paired t-test p = {_p(s.t_p)}"
            f"; Cohen's d_z = {_num(s.cohens_dz)}",
            f"  {s.improved} improved, {s.regressed} regressed, {s.ties} tied",
        ]
        if s.note:
            lines.append(f"  note: {s.note}")
        return lines + _errors(s.baseline_errors, s.candidate_errors, "0")
    return [
        f"{s.name} (categorical, {s.pairs} pairs, {s.changed} changed label)",
        f"  baseline  {_labels(s.baseline_labels)}",
        f"  candidate {_labels(s.candidate_labels)}",
    ]


def _errors(baseline: int, candidate: int, counted_as: str) -> list[str]:
    if not baseline and not candidate:
        return []
    return [
        f"  could not score: {baseline} baseline, {candidate} candidate "
        f"(counted as {counted_as})"
    ]


def _changes(label: str, changes: list[ItemChange], max_items: int) -> list[str]:
    if not changes:
        return []
    lines = ["", f"{label} ({len(changes)}):"]
    for change in changes[:max_items]:
        lines += [
            f"  {_key(change.item_id, change.epoch)} {change.scorer}: "
            f"{_value(change.baseline_value)} → {_value(change.candidate_value)}",
            f"    baseline  {_cut(change.baseline_answer)}  [{change.baseline_task_id or '-'}]",
            f"    candidate {_cut(change.candidate_answer)}  [{change.candidate_task_id or '-'}]",
        ]
    if len(changes) > max_items:
        lines.append(f"  … and {len(changes) - max_items} more (--json has them all)")
    return lines


def _key(item_id: str, epoch: int) -> str:
    return item_id if epoch == 0 else f"{item_id}#{epoch}"


def _cut(text: str) -> str:
    shown = text or "(empty)"
    return repr(shown if len(shown) <= _ANSWER_WIDTH else shown[: _ANSWER_WIDTH - 1] + "…")


def _value(value: ScoreValue) -> str:
    if value is None:
        return "error"
    if isinstance(value, bool):
        return "pass" if value else "fail"
    if isinstance(value, float):
        return f"{value:.3g}"
    return str(value)


def _rate(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.1%}"


def _num(value: float | None) -> str:
    return "n/a" if value is None else f"{value:.3f}"


def _signed(value: float | None, pct: bool = False) -> str:
    if value is None:
        return "n/a"
    return f"{value * 100:+.1f} points" if pct else f"{value:+.3f}"


def _p(value: float | None) -> str:
    if value is None:
        return "n/a"
    return f"{value:.3g}" if value >= 1e-4 else f"{value:.1e}"


def _metric(delta: MetricDelta, fmt: str) -> str:
    def shown(value: float | None) -> str:
        return "n/a" if value is None else fmt.format(value)

    change = "" if delta.delta is None else f"  ({'+' if delta.delta >= 0 else '-'}"
    if delta.delta is not None:
        change += fmt.format(abs(delta.delta)) + ")"
    return f"{shown(delta.baseline)} → {shown(delta.candidate)}{change}"


def _labels(labels: dict[str, int]) -> str:
    return ", ".join(f"{k}: {v}" for k, v in labels.items()) or "(none)"
