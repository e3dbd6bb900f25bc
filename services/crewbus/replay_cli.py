"""`crewbus replay` and `crewbus shadow`: production tasks run again under a candidate
variant, as a pair of experiments `crewbus eval compare` reads (docs/replay.md).

    crewbus replay [--since 24h] [--filter status=failed] [--limit N] --variant V [--name EXP]
                   [--live-tools a,b] [--live-memory] [--scorer SPEC ...]
    crewbus shadow start --variant V --sample 10% [--filter metadata.k=v] [--budget-usd X]
    crewbus shadow status | stop

Beside `cli.py`, like `eval_cli.py` (whose scorer options and helpers it shares): it reads
the whole settings tree, which would be an import cycle inside `crewbus.replay`.
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

import msgspec

if TYPE_CHECKING:
    from crewbus.evals.experiments import ExperimentStore
    from crewbus.evals.scorers.context import ScorerContext
    from crewbus_contracts.evals import RunItem, ScorerSpec

EXIT_OK, EXIT_ERROR, EXIT_USAGE = 0, 1, 2


class ReplayError(Exception):
    """A replay or shadow command that cannot be done; its message says why, in a line."""


class ReplayUsageError(ReplayError, ValueError):
    """A bad argument (exit 2)."""


def add_parser(subparsers: argparse._SubParsersAction[Any]
               ) -> Mapping[str, argparse.ArgumentParser]:
    """The `replay` and `shadow` commands; the `shadow` subcommands are returned, so the
    caller adds --debug to them (it adds it to `replay` with every top-level command)."""
    replay = subparsers.add_parser(
        "replay", help="run recorded production tasks again under a candidate variant")
    replay.add_argument("--since", default="24h",
                        help="tasks created within this long (30m, 24h, 7d; default 24h)")
    replay.add_argument("--limit", type=int, help="at most this many tasks, newest first")
    replay.add_argument("--variant", required=True, help="the candidate variant")
    replay.add_argument("--name", help="the candidate experiment (default replay-VARIANT-<time>)"
                                       "; its baseline is NAME-baseline")
    replay.add_argument("--live-tools", default="", metavar="A,B",
                        help="read-only tools that may run live on a call the record lacks "
                             "('*': every read-only tool)")
    replay.add_argument("--live-memory", action="store_true",
                        help="recall from live memory instead of the recording")
    replay.add_argument("--concurrency", type=int, default=8, help="tasks at once (default 8)")
    replay.add_argument("--quiet", action="store_true", help="no progress line")

    shadow = subparsers.add_parser(
        "shadow", help="run a candidate beside a sample of live tasks, invisibly")
    sub = shadow.add_subparsers(dest="shadow_command", required=True)
    start = sub.add_parser("start", help="start shadowing live tasks")
    start.add_argument("--variant", required=True, help="the candidate variant")
    start.add_argument("--sample", required=True, metavar="RATE",
                       help="share of live tasks shadowed: 10%% or 0.1")
    start.add_argument("--name", help="the candidate experiment (default shadow-VARIANT-<time>)")
    start.add_argument("--budget-usd", type=float, help="stop the shadow once it spent this")
    start.add_argument("--live-tools", default="*", metavar="A,B",
                       help="read-only tools the twins may run (default '*': all of them; "
                            "'' none)")
    start.add_argument("--no-live-memory", action="store_true",
                       help="twins recall nothing (default: they read live memory)")
    status = sub.add_parser("status", help="the shadow's configuration, spend and results")
    status.add_argument("--json", action="store_true")
    sub.add_parser("stop", help="stop starting shadow tasks (running ones finish)")

    for parser in (replay, start):
        parser.add_argument("--filter", action="append", default=[], metavar="KEY=VALUE",
                            help="status=failed, verdict=reject, metadata.KEY=VALUE "
                                 "(repeatable; shadow: metadata only)")
        parser.add_argument("--scorers", type=Path, metavar="EVAL_TOML",
                            help="scorers from a TOML file (default: critic, no_error)")
        parser.add_argument("--scorer", action="append", default=[], metavar="SPEC",
                            help="a reference-free scorer: 'critic', 'no_error', "
                                 "'cost_usd<=0.01', 'llm_judge' (repeatable)")
        parser.add_argument("--threshold", action="append", default=[], metavar="NAME=MIN")
        parser.add_argument("--plugin", action="append", default=[], metavar="MODULE")
    for parser in (replay, *sub.choices.values()):
        parser.add_argument("--nats", help="NATS URL (default $CREWBUS_NATS_URL or localhost)")
    return sub.choices


async def run(args: argparse.Namespace) -> int:
    """Run `crewbus replay` or `crewbus shadow <subcommand>`; errors are one line."""
    from crewbus.eval_cli import _their_errors, one_line_error
    from crewbus.evals.experiments import ExperimentError

    command = "replay" if args.command == "replay" else f"shadow {args.shadow_command}"
    errors: tuple[type[Exception], ...] = (ReplayError, ExperimentError, ValueError,
                                           *_their_errors())
    try:
        if args.command == "replay":
            return await _replay(args)
        match args.shadow_command:
            case "start":
                return await _shadow_start(args)
            case "status":
                return await _shadow_status(args)
            case "stop":
                return await _shadow_stop(args)
    except errors as exc:
        return one_line_error(command, exc)
    return EXIT_USAGE


def _names(text: str) -> list[str]:
    return [n.strip() for n in text.split(",") if n.strip()]


def _name(args: argparse.Namespace, mode: str) -> str:
    from crewbus_contracts.shadow import REPLAY_NAME_MAX

    name = args.name or f"{mode}-{args.variant[:24]}-{time.strftime('%Y%m%d-%H%M%S')}"
    if len(name) > REPLAY_NAME_MAX:
        raise ReplayUsageError(f"--name {name!r} is longer than {REPLAY_NAME_MAX} characters "
                          "(its baseline adds '-baseline')")
    return name


def _scoring(args: argparse.Namespace) -> tuple[list[ScorerSpec], Any, Path]:
    """The scorers (default: the reference-free `critic` and `no_error`), thresholds and
    the folder their files are read from, as `crewbus eval run` reads them."""
    from crewbus.eval_cli import _scoring_plan
    from crewbus.replay.pairs import DEFAULT_SCORERS

    if args.scorers is None and not args.scorer:
        args.scorer = list(DEFAULT_SCORERS)
    specs, thresholds, _, base_dir = _scoring_plan(args)
    return specs, thresholds, base_dir


async def _finish(store: ExperimentStore, name: str, specs: list[ScorerSpec],
                  context: ScorerContext, wanted: set[str] | None = None) -> list[RunItem]:
    """Summarise the experiment's run items (those of `wanted` items) and finish it."""
    from crewbus.evals.runner import _roles
    from crewbus.evals.scorers.registry import build_scorers
    from crewbus.evals.summary import summarise

    runs = [r for r in await store.items(name) if wanted is None or r.item_id in wanted]
    scorers = [(s.name, s.type) for s in build_scorers(specs, context)]
    experiment = await store.require(name)
    summary = summarise(runs, scorers, experiment.config.thresholds, len(runs))
    prompts, models = _roles(runs)
    await store.finish(name, summary, prompts, models)
    return runs


# -- replay ---------------------------------------------------------------------------


async def _replay(args: argparse.Namespace) -> int:
    from crewbus.bootstrap import tracer_for
    from crewbus.config import load_settings
    from crewbus.eval_cli import SERVICES_PATIENCE_S, _connect, _progress_printer, _url
    from crewbus.evals.eval_render import show
    from crewbus.evals.experiments import ExperimentStore
    from crewbus.evals.runner import ExperimentRun, ExperimentRunner
    from crewbus.evals.scorers.context import ScorerContext
    from crewbus.evals.scorers.registry import build_scorers
    from crewbus.evals.summary import summarise
    from crewbus.replay.pairs import fidelity_of, item_of, pair_configs, scored_run_item
    from crewbus.replay.selection import parse_filters, parse_since, recorded_tasks
    from crewbus.variants import open_resolver
    from crewbus_contracts.replay import ReplayOptions
    from crewbus_contracts.shadow import baseline_name

    since = parse_since(args.since)
    wanted = parse_filters(args.filter)
    name = _name(args, "replay")
    base = baseline_name(name)
    specs, thresholds, base_dir = _scoring(args)
    if args.limit is not None and args.limit < 1:
        raise ReplayUsageError("--limit must be at least 1")
    options = ReplayOptions(source_task_id="recorded", live_tools=_names(args.live_tools),
                            live_memory=args.live_memory)
    settings = load_settings(nats_url=_url(args))
    nc = await _connect(args)
    try:
        js = nc.jetstream()
        store = await ExperimentStore.open(js, patience_s=SERVICES_PATIENCE_S)
        await (await open_resolver(js)).check(args.variant)
        states = await recorded_tasks(js, since, wanted, args.limit)
        if not states:
            raise ReplayError(f"no finished production task of the last {args.since} matches"
                              f" {' '.join(args.filter) or 'the selection'}: nothing to replay")
        base_config, config = pair_configs(args.variant, specs, "replay", {
            "crewbus.replay.since": args.since, "crewbus.replay.filter": " ".join(args.filter)})
        config = msgspec.structs.replace(config, thresholds=thresholds,
                                         concurrency=args.concurrency)
        items = [item_of(s) for s in states]
        ids = {i.id for i in items}
        print(f"replay {name}: {len(items)} recorded tasks under variant {args.variant}, "
              f"baseline {base}", file=sys.stderr)
        async with ScorerContext(base_dir=base_dir, judge=settings.judge) as context:
            scorers = build_scorers(specs, context)
            await store.start(base, base_config)
            done = {r.item_id for r in await store.items(base)}
            for item, state in zip(items, states, strict=True):
                if item.id not in done:
                    await store.put_item(await scored_run_item(js, base, item, state, scorers))
            await _finish(store, base, specs, context, ids)
            runner = ExperimentRunner(
                nc, store, summarise, tracer=await tracer_for(settings, nc, "evaluator"),
                on_progress=_progress_printer(name, args.quiet))
            experiment = await runner.run(ExperimentRun(name, config, items, scorers,
                                                        replay=options))
        runs = [r for r in await store.items(name) if r.item_id in ids]
        fidelity = await fidelity_of(js, [r.task_id for r in runs])
        experiment = await store.update(
            name, lambda e: e.config.metadata.update(fidelity.as_metadata()))
    finally:
        await nc.close()
    sys.stdout.write(show(experiment, runs))
    print(fidelity.line())
    print(f"compare: crewbus eval compare {base} {name}")
    return EXIT_OK


# -- shadow -----------------------------------------------------------------------------


def parse_rate(text: str) -> float:
    """`10%` or `0.1` as a share in 0..1."""
    value = text.strip()
    try:
        rate = float(value.removesuffix("%")) / (100 if value.endswith("%") else 1)
    except ValueError:
        raise ReplayUsageError(f"--sample {text!r}: give a share like 10% or 0.1") from None
    if not 0 < rate <= 1:
        raise ReplayUsageError(f"--sample {text!r}: must be above 0 and at most 100%")
    return rate


async def _shadow_start(args: argparse.Namespace) -> int:
    from crewbus.eval_cli import SERVICES_PATIENCE_S, _connect
    from crewbus.evals.experiments import ExperimentStore
    from crewbus.replay.pairs import pair_configs
    from crewbus.replay.selection import parse_filters
    from crewbus.replay.shadow import ShadowStore
    from crewbus.variants import open_resolver
    from crewbus_contracts.shadow import ShadowConfig, baseline_name

    rate = parse_rate(args.sample)
    wanted = parse_filters(args.filter)
    if not wanted.at_submission:
        raise ReplayUsageError("shadow --filter takes metadata.KEY=VALUE only: a task's status "
                          "and verdict are not known when it starts")
    if args.budget_usd is not None and args.budget_usd <= 0:
        raise ReplayUsageError("--budget-usd must be above 0")
    name = _name(args, "shadow")
    specs, thresholds, _ = _scoring(args)
    nc = await _connect(args)
    try:
        js = nc.jetstream()
        store = await ExperimentStore.open(js, patience_s=SERVICES_PATIENCE_S)
        shadows = await ShadowStore.open(js)
        found = await shadows.get()
        if found is not None and found[0].status == "active":
            raise ReplayError(f"shadow {found[0].name} is active: `crewbus shadow stop` first")
        await (await open_resolver(js)).check(args.variant)
        base_config, config = pair_configs(args.variant, specs, "shadow")
        await store.start(baseline_name(name), base_config)
        await store.start(name, msgspec.structs.replace(config, thresholds=thresholds))
        shadow = ShadowConfig(
            name=name, variant=args.variant, sample_rate=rate, started_at=time.time(),
            metadata_filter=wanted.metadata, budget_usd=args.budget_usd, scorers=specs,
            live_tools=_names(args.live_tools), live_memory=not args.no_live_memory)
        await shadows.put(shadow)
    finally:
        await nc.close()
    budget = f", budget ${args.budget_usd:g}" if args.budget_usd is not None else ""
    print(f"shadow {name}: {rate:.0%} of live tasks also run under variant {args.variant}"
          f"{budget}")
    print(f"compare: crewbus eval compare {baseline_name(name)} {name}")
    return EXIT_OK


async def _shadow_status(args: argparse.Namespace) -> int:
    from crewbus.eval_cli import _connect
    from crewbus.evals.experiments import ExperimentStore
    from crewbus.replay.shadow import ShadowStore

    nc = await _connect(args)
    try:
        js = nc.jetstream()
        found = await (await ShadowStore.open(js)).get()
        if found is None:
            raise ReplayError("no shadow has been started (`crewbus shadow start`)")
        shadow = found[0]
        store = await ExperimentStore.open(js)
        baseline = {r.item_id for r in await store.items(shadow.baseline)}
        candidate = {r.item_id for r in await store.items(shadow.name)}
    finally:
        await nc.close()
    counts = {"baseline_items": len(baseline), "candidate_items": len(candidate),
              "pairs": len(baseline & candidate)}
    if args.json:
        document = {"shadow": shadow, **counts}
        sys.stdout.buffer.write(msgspec.json.format(msgspec.json.encode(document), indent=2)
                                + b"\n")
        return EXIT_OK
    budget = f" of ${shadow.budget_usd:g}" if shadow.budget_usd is not None else ""
    print(f"shadow {shadow.name}: {shadow.status}" + (f" ({shadow.reason})" if shadow.reason
                                                       else ""))
    print(f"  variant {shadow.variant}, sample {shadow.sample_rate:.0%}, started "
          f"{time.strftime('%Y-%m-%d %H:%M:%S', time.localtime(shadow.started_at))}")
    print(f"  shadow tasks {shadow.shadow_tasks}, spent ${shadow.spent_usd:.4f}{budget}")
    print(f"  run items: baseline {counts['baseline_items']}, candidate "
          f"{counts['candidate_items']}, pairs {counts['pairs']}")
    print(f"compare: crewbus eval compare {shadow.baseline} {shadow.name}")
    return EXIT_OK


async def _shadow_stop(args: argparse.Namespace) -> int:
    from crewbus.eval_cli import _connect
    from crewbus.evals.experiments import ExperimentStore
    from crewbus.evals.scorers.context import ScorerContext
    from crewbus.replay.shadow import ShadowStore
    from crewbus_contracts.shadow import ShadowConfig

    def stop(shadow: ShadowConfig) -> bool:
        if shadow.status != "active":
            return False
        shadow.status, shadow.stopped_at = "stopped", time.time()
        shadow.reason = "stopped by `crewbus shadow stop`"
        return True

    nc = await _connect(args)
    try:
        js = nc.jetstream()
        shadow = await (await ShadowStore.open(js)).update(stop)
        if shadow is None:
            raise ReplayError("no shadow has been started (`crewbus shadow start`)")
        store = await ExperimentStore.open(js)
        async with ScorerContext() as context:
            for name in (shadow.baseline, shadow.name):
                if await store.get(name) is not None:
                    await _finish(store, name, shadow.scorers, context)
    finally:
        await nc.close()
    print(f"shadow {shadow.name}: {shadow.status} ({shadow.reason}); shadow tasks already "
          "running finish and are still recorded")
    print(f"compare: crewbus eval compare {shadow.baseline} {shadow.name}")
    return EXIT_OK
