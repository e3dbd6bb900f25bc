"""`crewbus eval`: run experiments through the bus, read them back, export and compare them.

    crewbus eval run DATASET --scorers eval.toml | --scorer SPEC ... [--name N] ...
    crewbus eval show EXP | list | export EXP | compare EXP_A EXP_B
    crewbus eval report EXP | --since 24h

Exit codes of `run` (and of `compare --gate`), for CI: 0 every threshold held (and no item
missing, duplicated, unrun or unscorable); 100 one did not; 1 an error (2 bad usage, 3 NATS
not answering, as for every crewbus command).

It sits beside `cli.py`, not in `crewbus.evals`: it reads the whole settings tree
(`crewbus.config`), which reads the HTTP gateway's settings, whose package reads datasets
from `crewbus.evals`; inside `evals` that would be an import cycle.
"""

from __future__ import annotations

import argparse
import os
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

from crewbus_contracts.base import AGENT_ROLES

if TYPE_CHECKING:
    from nats.aio.client import Client as NATS

    from crewbus.evals.runner import Progress
    from crewbus_contracts.evals import Experiment, RunItem, ScorerSpec, Threshold

EXIT_OK, EXIT_ERROR, EXIT_USAGE, EXIT_GATE = 0, 1, 2, 100
DEFAULT_NATS = "nats://127.0.0.1:4222"
PROGRESS_STEPS = 20
"""Without a terminal, the progress line is printed about this many times per run."""
SERVICES_PATIENCE_S = 30.0
"""How long `eval run` waits for the services to set up the bus (right after `crewbus up`),
as `crewbus submit` waits for the gateway."""


def add_parser(subparsers: argparse._SubParsersAction[Any]
               ) -> Mapping[str, argparse.ArgumentParser]:
    """The `eval` command and its subcommands (returned, so the caller adds --debug)."""
    command = subparsers.add_parser("eval", help="run and compare evaluations (experiments)")
    sub = command.add_subparsers(dest="eval_command", required=True)

    run = sub.add_parser("run", help="run every item of a dataset through the bus and score it")
    run.add_argument("dataset")
    run.add_argument("--version", type=int, help="dataset version (default: the latest)")
    run.add_argument("--scorers", type=Path, metavar="EVAL_TOML",
                     help="scorers, thresholds and plugins from a TOML file")
    run.add_argument("--scorer", action="append", default=[], metavar="SPEC",
                     help="a scorer: 'exact', 'contains:text=42', 'tool_called calculator', "
                          "'cost_usd<=0.01' (repeatable, adds to --scorers)")
    run.add_argument("--threshold", action="append", default=[], metavar="NAME=MIN",
                     help="gate: scorer NAME's pass rate (or mean) must reach MIN")
    run.add_argument("--plugin", action="append", default=[], metavar="MODULE",
                     help="import a module (or .py file) of your own scorers")
    run.add_argument("--name", help="experiment name; the same name resumes it "
                                    "(default: DATASET-<time>)")
    run.add_argument("--epochs", type=int, default=1, help="runs of each item (default 1)")
    run.add_argument("--concurrency", type=int, default=8, help="tasks at once (default 8)")
    run.add_argument("--target", choices=["crew", *AGENT_ROLES], default="crew",
                     help="the whole crew (default) or one agent alone")
    run.add_argument("--variant", default="production", help="variant the tasks run under")
    run.add_argument("--json", type=Path, metavar="FILE", help="write the results as JSON")
    run.add_argument("--junit", type=Path, metavar="FILE", help="write JUnit XML for CI")
    run.add_argument("--quiet", action="store_true", help="no progress line")

    show = sub.add_parser("show", help="an experiment's summary and every run item")
    show.add_argument("experiment")
    show.add_argument("--json", action="store_true", help="the experiment and run items as JSON")

    listing = sub.add_parser("list", help="every experiment, with its headline scores")
    listing.add_argument("--json", action="store_true")

    export = sub.add_parser("export", help="per-item results as JSONL (for compare --from-jsonl)")
    export.add_argument("experiment")
    export.add_argument("--out", type=Path, help="file to write (default standard output)")

    compare = sub.add_parser("compare", help="pair two experiments item by item, with tests")
    compare.add_argument("a", metavar="BASELINE", help="experiment (or JSONL file)")
    compare.add_argument("b", metavar="CANDIDATE", help="experiment (or JSONL file)")
    compare.add_argument("--from-jsonl", action="store_true",
                         help="BASELINE and CANDIDATE are JSONL files of per-item results")
    compare.add_argument("--gate", action="store_true",
                         help="exit 100 when the candidate is significantly worse")
    compare.add_argument("--max-drop", type=float, default=0.02,
                         help="allowed drop before the gate fails (default 0.02)")
    compare.add_argument("--alpha", type=float, default=0.05, help="significance (default 0.05)")
    compare.add_argument("--json", action="store_true", help="everything, machine-readable")

    report = sub.add_parser("report", help="where failures come from: by scorer, failure "
                            "code and first failing role, with counts, examples and cost")
    report.add_argument("experiment", nargs="?", help="an experiment (or use --since)")
    report.add_argument("--since", metavar="DURATION",
                        help="production tasks scored this recently (24h, 7d): the online "
                             "evaluators' and people's scores")
    report.add_argument("--json", action="store_true", help="the report as JSON")

    for parser in sub.choices.values():
        parser.add_argument("--nats", help="NATS URL (default $CREWBUS_NATS_URL or localhost)")
    return sub.choices


async def run(args: argparse.Namespace) -> int:
    """Run `crewbus eval <subcommand>`; an error the user can fix is one line, never a trace."""
    from crewbus.evals.experiments import ExperimentError

    errors: tuple[type[Exception], ...] = (ExperimentError, *_their_errors())
    try:
        match args.eval_command:
            case "run":
                return await _run(args)
            case "show":
                return await _show(args)
            case "list":
                return await _list(args)
            case "export":
                return await _export(args)
            case "compare":
                return await _compare(args)
            case "report":
                return await _report(args)
    except errors as exc:
        return one_line_error(f"eval {args.eval_command}", exc)
    return EXIT_USAGE


def one_line_error(command: str, exc: Exception) -> int:
    """Say `exc` in one line on stderr; exit 2 for a bad argument (a ValueError), else 1."""
    print(f"crewbus {command}: {' '.join(str(exc).split())}", file=sys.stderr)
    return EXIT_USAGE if isinstance(exc, ValueError) else EXIT_ERROR


def _their_errors() -> tuple[type[Exception], ...]:
    """The datasets' and scorers' error bases: each says what is wrong in one line."""
    from crewbus.evals.datasets import DatasetError
    from crewbus.evals.scorers.errors import ScorerConfigError
    from crewbus.variants import VariantsError

    return (DatasetError, ScorerConfigError, VariantsError)


def _url(args: argparse.Namespace) -> str:
    return getattr(args, "nats", None) or os.environ.get("CREWBUS_NATS_URL") or DEFAULT_NATS


async def _connect(args: argparse.Namespace) -> NATS:
    from crewbus.auth.permissions import ADMIN
    from crewbus.bus.connection import connect_for_command

    return await connect_for_command(_url(args), ADMIN)


# -- run --------------------------------------------------------------------------------


def _scoring_plan(args: argparse.Namespace) -> tuple[list[ScorerSpec], list[Threshold],
                                                      list[str], Path]:
    """Scorers, thresholds, plugins and the directory relative files are read from:
    the `--scorers` file's, plus those of `--scorer`, `--threshold` and `--plugin`."""
    import crewbus.evals.scorers.config as config

    specs: list[ScorerSpec] = []
    thresholds: list[Threshold] = []
    plugins: list[str] = []
    base_dir = Path.cwd()
    if args.scorers is not None:
        plan = config.load_eval_file(args.scorers)
        specs, thresholds, plugins = list(plan.scorers), list(plan.thresholds), list(plan.plugins)
        base_dir = plan.base_dir
    plugins += args.plugin
    _import_plugins(plugins, base_dir)
    specs += [config.parse_scorer(text) for text in args.scorer]
    thresholds += [config.parse_threshold(text) for text in args.threshold]
    if not specs:
        raise ValueError("no scorers: give --scorers eval.toml or at least one --scorer")
    labels = [s.label for s in specs]
    if len(set(labels)) != len(labels):
        raise ValueError(f"two scorers share a name in {labels}: give one a name")
    config.check_thresholds(thresholds, specs)
    return specs, thresholds, plugins, base_dir


def _import_plugins(plugins: list[str], base_dir: Path) -> None:
    from crewbus.evals.scorers.plugins import load_plugins

    load_plugins(plugins, base_dir)


def _default_name(dataset: str) -> str:
    return f"{dataset[:40]}-{time.strftime('%Y%m%d-%H%M%S')}"


def _progress_printer(name: str, quiet: bool) -> Any:
    """The progress line on stderr: redrawn on a terminal, else printed now and then."""
    tty = sys.stderr.isatty()
    shown = {"done": -1}

    def show(progress: Progress) -> None:
        if quiet:
            return
        step = max(1, progress.total // PROGRESS_STEPS)
        last = progress.done >= progress.total
        if tty:
            end = "\n" if last else ""
            print(f"\reval {name}: {progress.line()}", end=end, file=sys.stderr, flush=True)
        elif last or progress.done - shown["done"] >= step:
            print(f"eval {name}: {progress.line()}", file=sys.stderr, flush=True)
        shown["done"] = progress.done

    return show


async def _run(args: argparse.Namespace) -> int:
    from crewbus.bootstrap import tracer_for
    from crewbus.config import load_settings
    from crewbus.evals.datasets import DatasetStore
    from crewbus.evals.experiments import ExperimentStore
    from crewbus.evals.runner import ExperimentRun, ExperimentRunner
    from crewbus.evals.scorers.context import ScorerContext
    from crewbus.evals.scorers.registry import build_scorers
    from crewbus.evals.summary import summarise
    from crewbus.variants import open_resolver
    from crewbus_contracts.evals import ExperimentConfig

    specs, thresholds, _, base_dir = _scoring_plan(args)
    settings = load_settings(nats_url=_url(args))
    nc = await _connect(args)
    try:
        js = nc.jetstream()
        # Its bucket is created last by the services' start-up: once it exists, the
        # prompts, variants and streams the run needs do too.
        store = await ExperimentStore.open(js, patience_s=SERVICES_PATIENCE_S)
        # An unknown variant would refuse every item one by one: say so once, up front.
        await (await open_resolver(js)).check(args.variant)
        version, items = await DatasetStore(js).items(args.dataset, args.version)
        name = args.name or _default_name(args.dataset)
        config = msgspec.convert(msgspec.to_builtins(ExperimentConfig(
            dataset=args.dataset, dataset_version=version.version, scorers=specs,
            epochs=args.epochs, concurrency=args.concurrency, thresholds=thresholds,
            target=args.target, variant=args.variant,
        )), ExperimentConfig)
        print(f"eval {name}: dataset {args.dataset} v{version.version}, {len(items)} items "
              f"x {args.epochs} epochs, target {args.target}", file=sys.stderr)
        async with ScorerContext(base_dir=base_dir, judge=settings.judge) as context:
            scorers = build_scorers(specs, context)
            runner = ExperimentRunner(
                nc, store, summarise, tracer=await tracer_for(settings, nc, "evaluator"),
                on_progress=_progress_printer(name, args.quiet))
            experiment = await runner.run(ExperimentRun(name, config, items, scorers))
        runs = await store.items(name)
    finally:
        await nc.close()
    from crewbus.evals.eval_render import show

    sys.stdout.write(show(experiment, runs))
    _write_reports(args, experiment, runs, items)
    assert experiment.summary is not None
    return EXIT_OK if experiment.summary.passed else EXIT_GATE


def _write_reports(args: argparse.Namespace, experiment: Experiment, runs: list[RunItem],
                   items: Any) -> None:
    from crewbus.evals.junit import write_junit

    if args.json is not None:
        args.json.write_bytes(_as_json(experiment, runs) + b"\n")
    if args.junit is not None:
        write_junit(args.junit, experiment, runs, items)


def _as_json(experiment: Experiment, runs: list[RunItem]) -> bytes:
    document = {"experiment": experiment, "run_items": runs}
    return msgspec.json.format(msgspec.json.encode(document), indent=2)


# -- show, list -------------------------------------------------------------------------


async def _show(args: argparse.Namespace) -> int:
    from crewbus.evals.eval_render import show
    from crewbus.evals.experiments import ExperimentStore

    nc = await _connect(args)
    try:
        store = await ExperimentStore.open(nc.jetstream())
        experiment = await store.require(args.experiment)
        runs = await store.items(args.experiment)
    finally:
        await nc.close()
    if args.json:
        sys.stdout.buffer.write(_as_json(experiment, runs) + b"\n")
    else:
        sys.stdout.write(show(experiment, runs))
    return EXIT_OK


async def _list(args: argparse.Namespace) -> int:
    from crewbus.evals.eval_render import list_text
    from crewbus.evals.experiments import ExperimentStore

    nc = await _connect(args)
    try:
        experiments = await (await ExperimentStore.open(nc.jetstream())).all()
    finally:
        await nc.close()
    if args.json:
        sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(experiments),
                                                    indent=2) + b"\n")
    else:
        sys.stdout.write(list_text(experiments))
    return EXIT_OK


# -- report -----------------------------------------------------------------------------


async def _report(args: argparse.Namespace) -> int:
    from crewbus.evals.report import render

    if (args.experiment is None) == (args.since is None):
        raise ValueError("name an experiment or give --since DURATION (one of the two)")
    nc = await _connect(args)
    try:
        found = await (_experiment_report(nc, args.experiment) if args.experiment
                       else _production_report(nc, args.since))
    finally:
        await nc.close()
    if args.json:
        sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(found), indent=2)
                                + b"\n")
    else:
        sys.stdout.write(render(found))
    return EXIT_OK


async def _experiment_report(nc: NATS, name: str) -> Any:
    from crewbus.client import CrewbusClient
    from crewbus.evals.experiments import ExperimentStore
    from crewbus.evals.report import case_of_run, report

    store = await ExperimentStore.open(nc.jetstream())
    await store.require(name)
    client = CrewbusClient(nc)
    cases = []
    for run in await store.items(name):
        case = case_of_run(run, None)
        if case.failed and run.task_id:  # the roles come from the task's state
            case = case_of_run(run, await client.state(run.task_id))
        cases.append(case)
    return report(name, cases)


async def _production_report(nc: NATS, since: str) -> Any:
    from crewbus.client import CrewbusClient
    from crewbus.durations import parse_duration
    from crewbus.evals.online.scores import TaskScoreStore
    from crewbus.evals.report import case_of_task, report
    from crewbus_contracts.feedback import TaskScore

    start = time.time() - parse_duration(since)
    scores = await (await TaskScoreStore.open(nc.jetstream())).since(start)
    by_task: dict[str, list[TaskScore]] = {}
    for stored in scores:
        by_task.setdefault(stored.task_id, []).append(stored)
    client = CrewbusClient(nc)
    cases = [case_of_task(found, await client.state(task_id))
             for task_id, found in sorted(by_task.items())]
    return report(f"production tasks scored in the last {since}", cases)


# -- export, compare --------------------------------------------------------------------


async def _run_items(args: argparse.Namespace, *names: str) -> list[list[RunItem]]:
    """The run items of each named experiment (an unknown name is an error)."""
    from crewbus.evals.experiments import ExperimentStore

    nc = await _connect(args)
    try:
        store = await ExperimentStore.open(nc.jetstream())
        found = []
        for name in names:
            await store.require(name)
            found.append(await store.items(name))
        return found
    finally:
        await nc.close()


async def _export(args: argparse.Namespace) -> int:
    """The per-item results format (`results_jsonl`), to a file or standard output."""
    from crewbus.evals.results_jsonl import rows_from_run_items, write_results

    (runs,) = await _run_items(args, args.experiment)
    rows = rows_from_run_items(runs)
    if args.out is not None:
        count = write_results(args.out, rows)
        print(f"{count} results of {args.experiment} written to {args.out}", file=sys.stderr)
        return EXIT_OK
    for row in rows:
        values = {k: v for k, v in msgspec.to_builtins(row).items() if v is not None}
        sys.stdout.buffer.write(msgspec.json.encode(values) + b"\n")
    return EXIT_OK


async def _compare(args: argparse.Namespace) -> int:
    """Pair two experiments (or two JSONL files) item by item; `--gate` exits 100 when the
    candidate is significantly worse. A comparison that cannot be made exits 1."""
    from crewbus.evals.compare import compare
    from crewbus.evals.compare_render import render_comparison
    from crewbus.evals.gate import gate
    from crewbus.evals.results_jsonl import compare_jsonl_files, rows_from_run_items

    try:
        if args.from_jsonl:
            comparison = compare_jsonl_files(args.a, args.b)
        else:
            baseline, candidate = await _run_items(args, args.a, args.b)
            comparison = compare(rows_from_run_items(baseline), rows_from_run_items(candidate),
                                 baseline_name=args.a, candidate_name=args.b)
        verdict = gate(comparison, args.max_drop, args.alpha) if args.gate else None
    except ValueError as exc:  # CompareError, GateError, ResultsFileError: one line each
        print(f"crewbus eval compare: {' '.join(str(exc).split())}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        document = {"comparison": comparison, "gate": verdict}
        sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(document), indent=2)
                                + b"\n")
    else:
        print(render_comparison(comparison, verdict))
    return EXIT_GATE if verdict is not None and not verdict.passed else EXIT_OK
