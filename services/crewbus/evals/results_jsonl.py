"""The per-item results format (`crewbus_contracts.comparisons.ResultRow`, one JSON object
per line): read with line-numbered errors, written from run items, compared.

This is what `crewbus eval export` writes and `crewbus eval compare --from-jsonl A B`
reads, so results produced by another tool get the same statistics.
"""

from __future__ import annotations

from collections.abc import Iterable
from pathlib import Path

import msgspec

from crewbus.evals.compare import compare, value_kind
from crewbus.evals.stats import DEFAULT_RESAMPLES, DEFAULT_SEED
from crewbus.evals.summary import unique_run_items
from crewbus_contracts.comparisons import Comparison, ResultRow, ScoreValue
from crewbus_contracts.evals import RunItem, Score


class ResultsFileError(ValueError):
    """A results file that cannot be read: one line naming the file, the line and why."""


_DECODER = msgspec.json.Decoder(ResultRow)


def read_results(path: str | Path) -> list[ResultRow]:
    """Every result in a JSONL file. Blank lines are skipped; a line that is not a result,
    a second result for one (item_id, epoch), or a scorer whose values change type (a
    boolean on one line, a number on another) is refused with its line number."""
    path = Path(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ResultsFileError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ResultsFileError(f"{path} is not UTF-8 text") from None
    rows: list[ResultRow] = []
    first_line: dict[tuple[str, int], int] = {}
    kinds: dict[str, tuple[str, int]] = {}
    for number, line in enumerate(text.splitlines(), 1):
        if not line.strip():
            continue
        where = f"{path} line {number}"
        try:
            row = _DECODER.decode(line)
        except msgspec.ValidationError as exc:
            raise ResultsFileError(f"{where}: {exc}") from None
        except msgspec.DecodeError as exc:
            raise ResultsFileError(f"{where}: not a JSON object ({exc})") from None
        key = (row.item_id, row.epoch)
        if key in first_line:
            raise ResultsFileError(
                f"{where}: item {row.item_id!r} epoch {row.epoch} again "
                f"(first on line {first_line[key]})"
            )
        first_line[key] = number
        for name, value in row.scores.items():
            kind = value_kind(value)
            if kind is None:
                continue
            seen = kinds.setdefault(name, (kind, number))
            if seen[0] != kind:
                raise ResultsFileError(
                    f"{where}: scores.{name} is {kind}, but line {seen[1]} gave a {seen[0]}"
                )
        rows.append(row)
    return rows


def write_results(path: str | Path, rows: Iterable[ResultRow]) -> int:
    """Write `rows` as JSONL (None fields left out); returns how many were written."""
    encoder = msgspec.json.Encoder()
    count = 0
    with Path(path).open("wb") as out:
        for row in rows:
            out.write(encoder.encode(_compact(row)) + b"\n")
            count += 1
    return count


def _compact(row: ResultRow) -> dict[str, object]:
    data: dict[str, object] = msgspec.to_builtins(row)
    return {k: v for k, v in data.items() if v is not None}


def score_value(score: Score) -> ScoreValue:
    """A Score as the format's value: bool (boolean), number (numeric), label
    (categorical), None when the scorer could not score."""
    if score.error is not None:
        return None
    if score.type == "boolean":
        return bool(score.passed) if score.passed is not None else bool(score.value)
    if score.type == "numeric":
        return score.value
    return score.label


def rows_from_run_items(run_items: Iterable[RunItem]) -> list[ResultRow]:
    """An experiment's run items as results (the first of each (item, epoch))."""
    unique, _ = unique_run_items(run_items)
    return [
        ResultRow(
            item_id=r.item_id,
            epoch=r.epoch,
            scores={s.name: score_value(s) for s in r.scores},
            cost_usd=r.cost_usd,
            latency_s=r.latency_s,
            tokens=r.tokens,
            answer=r.answer,
            task_id=r.task_id or None,
            eval_cost_usd=r.eval_cost_usd,
            eval_tokens=r.eval_tokens,
        )
        for r in unique
    ]


def compare_jsonl_files(
    baseline: str | Path,
    candidate: str | Path,
    *,
    seed: int = DEFAULT_SEED,
    resamples: int = DEFAULT_RESAMPLES,
    confidence: float = 0.95,
) -> Comparison:
    """`crewbus eval compare --from-jsonl BASELINE CANDIDATE`: read both, compare."""
    return compare(
        read_results(baseline),
        read_results(candidate),
        baseline_name=str(baseline),
        candidate_name=str(candidate),
        seed=seed,
        resamples=resamples,
        confidence=confidence,
    )
