"""JUnit XML for CI systems: one testcase per run item and scorer, and one per threshold.

A failed score is a `<failure>` carrying the scorer's explanation; a score the scorer could
not give, an item that could not be run and an item missing from the experiment are
`<error>`s: CI shows every one as red, never as a pass. Written with the standard
library's `xml.etree`, which escapes whatever the answers and explanations hold.
"""

from __future__ import annotations

import datetime
import xml.etree.ElementTree as ET
from collections.abc import Sequence
from pathlib import Path

from crewbus_contracts.evals import DatasetItem, Experiment, RunItem

FIRST_LINE = 200


def junit_xml(experiment: Experiment, runs: Sequence[RunItem],
              items: Sequence[DatasetItem] = ()) -> ET.ElementTree:
    """The experiment as `<testsuites>`: a suite of scores, and a suite of thresholds.
    `items` (the dataset's) make an item with no run item an error of its own."""
    root = ET.Element("testsuites", name=f"crewbus eval {experiment.name}")
    scores = ET.SubElement(root, "testsuite", name=experiment.name,
                           timestamp=_iso(experiment.created_at))
    props = ET.SubElement(scores, "properties")
    config = experiment.config
    for key, value in (("dataset", config.dataset), ("dataset_version", config.dataset_version),
                       ("target", config.target), ("variant", config.variant),
                       ("epochs", config.epochs)):
        ET.SubElement(props, "property", name=key, value=str(value))
    for run in runs:
        _run_cases(scores, experiment.name, run)
    seen = {(r.item_id, r.epoch) for r in runs}
    for item in items:
        for epoch in range(config.epochs):
            if (item.id, epoch) not in seen:
                case = _case(scores, f"{experiment.name}.run", item.id, epoch)
                ET.SubElement(case, "error", message="no run item: the item was not run",
                              type="missing")
    _count(scores)
    if experiment.summary is not None and experiment.summary.thresholds:
        gate = ET.SubElement(root, "testsuite", name=f"{experiment.name}.thresholds")
        for result in experiment.summary.thresholds:
            observed = "n/a" if result.observed is None else f"{result.observed:.4f}"
            case = ET.SubElement(gate, "testcase", classname=f"{experiment.name}.thresholds",
                                 name=f"{result.scorer} >= {result.min:g}")
            if not result.held:
                ET.SubElement(case, "failure", type="threshold",
                              message=f"{result.scorer} is {observed}, below {result.min:g}")
        _count(gate)
    _total(root)
    ET.indent(root)
    return ET.ElementTree(root)


def write_junit(path: Path, experiment: Experiment, runs: Sequence[RunItem],
                items: Sequence[DatasetItem] = ()) -> None:
    junit_xml(experiment, runs, items).write(path, encoding="utf-8", xml_declaration=True)


def _run_cases(suite: ET.Element, name: str, run: RunItem) -> None:
    where = f"task {run.task_id}" if run.task_id else "no task"
    if run.status == "error" and not run.scores:
        case = _case(suite, f"{name}.run", run.item_id, run.epoch, run.latency_s)
        ET.SubElement(case, "error", type=run.error_code or "error",
                      message=run.error_message or "the item could not be run").text = where
        return
    for score in run.scores:
        case = _case(suite, f"{name}.{score.name}", run.item_id, run.epoch, run.latency_s)
        value = "n/a" if score.value is None else f"{score.value:g}"
        detail = f"{where}; value {value}; answer: {_first_line(run.answer)}"
        if score.error:
            ET.SubElement(case, "error", type="scorer_error", message=score.error).text = detail
        elif score.passed is False:
            ET.SubElement(case, "failure", type=score.type,
                          message=score.explanation or "failed").text = detail
        elif score.passed is None:
            ET.SubElement(case, "system-out").text = f"{detail}; label {score.label or '-'}"


def _case(suite: ET.Element, classname: str, item_id: str, epoch: int,
          seconds: float | None = None) -> ET.Element:
    return ET.SubElement(suite, "testcase", classname=classname, name=f"{item_id} [epoch {epoch}]",
                         time=f"{seconds or 0.0:.3f}")


def _count(suite: ET.Element) -> None:
    cases = suite.findall("testcase")
    suite.set("tests", str(len(cases)))
    suite.set("failures", str(sum(1 for c in cases if c.find("failure") is not None)))
    suite.set("errors", str(sum(1 for c in cases if c.find("error") is not None)))
    suite.set("time", f"{sum(float(c.get('time', '0')) for c in cases):.3f}")


def _total(root: ET.Element) -> None:
    for key in ("tests", "failures", "errors"):
        root.set(key, str(sum(int(s.get(key, "0")) for s in root.findall("testsuite"))))


def _first_line(text: str) -> str:
    line = text.strip().split("\n", 1)[0] if text.strip() else "(none)"
    return line if len(line) <= FIRST_LINE else line[: FIRST_LINE - 1] + "…"


def _iso(epoch_s: float) -> str:
    return datetime.datetime.fromtimestamp(epoch_s, datetime.UTC).strftime("%Y-%m-%dT%H:%M:%S")
