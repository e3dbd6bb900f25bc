"""The `crewbus` command line.

Every error is one line on stderr and a non-zero exit code (2: bad usage, 3: NATS or
crewbus not answering, 1: anything else); `--debug` also prints the traceback.
"""

from __future__ import annotations

import argparse
import contextlib
import gc
import importlib
import logging
import os
import sys
import traceback
from collections.abc import Mapping
from pathlib import Path
from typing import NoReturn

import anyio
import msgspec
from nats.errors import ConnectionClosedError, NoRespondersError, NoServersError
from nats.errors import TimeoutError as NatsTimeoutError
from nats.js.errors import NotFoundError

from crewbus import eval_cli, render, replay_cli
from crewbus.auth.permissions import ADMIN, CLIENT
from crewbus.evals import dataset_cli
from crewbus.evals.online import cli as feedback_cli
from crewbus.event_loop import run_options
from crewbus.exception_groups import innermost

DEFAULT_NATS = "nats://127.0.0.1:4222"
EXIT_ERROR, EXIT_USAGE, EXIT_UNREACHABLE = 1, 2, 3
SUBMIT_PATIENCE_S = 30.0
"""How long `submit` waits for the gateway to answer: right after `crewbus up` on a busy
machine its services can take more than 10 s to start."""


def _nats_url(args: argparse.Namespace) -> str:
    return getattr(args, "nats", None) or os.environ.get("CREWBUS_NATS_URL") or DEFAULT_NATS


class _Parser(argparse.ArgumentParser):
    """argparse whose usage errors are one line, like every other crewbus error."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _add_debug(parsers: Mapping[str, argparse.ArgumentParser]) -> None:
    """`--debug` after the command too (SUPPRESS: a subcommand must not reset the flag)."""
    for command in parsers.values():
        command.add_argument("--debug", action="store_true", default=argparse.SUPPRESS,
                             help="print the traceback of an error")


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="crewbus", description="Run and use crewbus: agents on a message bus.")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    parser.add_argument("--debug", action="store_true", help="print the traceback of an error")
    sub = parser.add_subparsers(dest="command", required=True)

    up = sub.add_parser("up", help="run the whole stack on this machine until Ctrl-C")
    up.add_argument("--nats", help="use this NATS server instead of starting one")
    up.add_argument("--nats-port", type=int, default=4222, help="port of the embedded NATS")
    up.add_argument("--cluster", type=int, default=1, metavar="N",
                    help="run N nats-servers (3 or more) as one JetStream cluster, on ports "
                         "--nats-port and up, with streams and buckets at replicas 3")
    up.add_argument("--model-port", type=int, default=8765,
                    help="port of the simulated model (when no model is configured)")
    up.add_argument("--creds", metavar="DIR",
                    help="NATS credentials made by `crewbus auth init` (default: made in "
                    "<data dir>/nats-auth/ on the first run)")
    up.add_argument("--no-auth", action="store_true",
                    help="run NATS without authentication (anyone who reaches it may do "
                    "anything)")

    auth = sub.add_parser("auth", help="NATS identities: make credentials, show who may do what")
    auth_sub = auth.add_subparsers(dest="auth_command", required=True)
    auth_init = auth_sub.add_parser("init", help="make credentials and the nats-server config")
    auth_init.add_argument("--dir", help="where (default <data dir>/nats-auth)")
    auth_init.add_argument("--rotate", action="store_true",
                           help="replace existing credentials with new passwords")
    auth_show = auth_sub.add_parser("show", help="who may publish and subscribe where")
    auth_show.add_argument("--dir", help="credentials to list (default <data dir>/nats-auth)")
    auth_show.add_argument("--identity", help="only this identity, every subject in full")
    auth_setup = auth_sub.add_parser(
        "setup-bus", help="make the streams, consumers and buckets as admin (services on "
        "their own identities may not)")
    auth_setup.add_argument("--dir", help="credentials (default <data dir>/nats-auth)")
    auth_setup.add_argument("--nats")
    _add_debug(auth_sub.choices)

    serve = sub.add_parser("serve", help="run one service")
    serve.add_argument("service", help="planner|researcher|executor|critic|orchestrator|"
                       "memory|gateway|evaluator|simulated-model")
    serve.add_argument("--nats", help="NATS URL (default $CREWBUS_NATS_URL or localhost)")
    serve.add_argument("--port", type=int, help="HTTP port (gateway, simulated-model)")
    serve.add_argument("--host", help="HTTP bind address (gateway, simulated-model; default "
                       "127.0.0.1, 0.0.0.0 in containers)")
    serve.add_argument("--file", dest="evaluators_file", metavar="EVALUATORS_TOML",
                       help="evaluator: the evaluators file (default $CREWBUS_EVALUATORS_FILE)")
    serve.add_argument("--add-to", metavar="DATASET",
                       help="evaluator: add every task with a failing score to DATASET")

    apikey = sub.add_parser("apikey", help="create, list or revoke the HTTP gateway's API keys")
    apikey_sub = apikey.add_subparsers(dest="apikey_command", required=True)
    create = apikey_sub.add_parser("create", help="a new key (printed once)")
    create.add_argument("name")
    create.add_argument("--scope", default="submit,read",
                        help="comma-separated: submit,read,approve,admin (default submit,read)")
    create.add_argument("--rate", type=int, help="requests a minute (default "
                        "CREWBUS_HTTP_RATE_PER_MINUTE)")
    apikey_sub.add_parser("list", help="every key: name, scopes, created (never the secret)")
    revoke = apikey_sub.add_parser("revoke", help="revoke a key at once, on every gateway")
    revoke.add_argument("name")
    for command in apikey_sub.choices.values():
        command.add_argument("--nats")

    submit = sub.add_parser("submit", help="submit a task")
    submit.add_argument("text")
    submit.add_argument("--key", help="idempotency key: the same key is the same task")
    submit.add_argument("--max-rounds", type=int)
    submit.add_argument("--deadline", type=float, help="seconds before the task fails")
    submit.add_argument("--min-score", type=float, help="critic score needed to accept")
    submit.add_argument("--budget-usd", type=float, help="end the task past this spend")
    submit.add_argument("--budget-tokens", type=int, help="end the task past these tokens")
    submit.add_argument("--approval-timeout", type=float,
                        help="seconds before an ungiven tool approval counts as denied")
    submit.add_argument("--variant", default="production",
                        help="serve it under this variant (`crewbus variant list`)")
    submit.add_argument("--no-degrade", action="store_true",
                        help="fail with plan_failed on an invalid plan instead of repairing "
                        "it or answering in one executor step")
    mode = submit.add_mutually_exclusive_group()
    mode.add_argument("--wait", action="store_true", help="wait and print the result")
    mode.add_argument("--stream", action="store_true", help="print events as they happen")
    submit.add_argument("--nats")

    watch = sub.add_parser("watch", help="print a task's events live")
    watch.add_argument("task_id")
    watch.add_argument("--nats")

    status = sub.add_parser("status", help="print a task's state")
    status.add_argument("task_id")
    status.add_argument("--json", action="store_true")
    status.add_argument("--nats")

    for name, help_text in (("approve", "approve a task's paused tool call"),
                            ("deny", "deny a task's paused tool call"),
                            ("cancel", "cancel a task")):
        command = sub.add_parser(name, help=help_text)
        command.add_argument("task_id")
        command.add_argument("--reason", default="")
        command.add_argument("--by", default=os.environ.get("USER", "cli"),
                             help="who decides (default $USER)")
        if name != "cancel":
            command.add_argument("--call", help="tool-call key (default: the oldest pending)")
        command.add_argument("--nats")

    trace = sub.add_parser("trace", help="print a task's decisions as a tree")
    trace.add_argument("task_id")
    trace.add_argument("--json", action="store_true", help="export every span as JSON")
    trace.add_argument("--nats")

    ingest = sub.add_parser("ingest", help="load text/Markdown files into memory")
    ingest.add_argument("paths", nargs="+", type=Path, help="files or directories")
    ingest.add_argument("--max-chars", type=int, default=1200, help="chunk size")
    ingest.add_argument("--nats")

    memory = sub.add_parser("memory", help="search memory or show its statistics")
    memory_sub = memory.add_subparsers(dest="memory_command", required=True)
    search = memory_sub.add_parser("search", help="the memories closest to a query")
    search.add_argument("query")
    search.add_argument("--kind", choices=["finding", "result", "critique", "document", "task"])
    search.add_argument("-k", type=int, default=5)
    search.add_argument("--nats")
    stats = memory_sub.add_parser("stats", help="counts per kind and the backend in use")
    stats.add_argument("--nats")
    memory_sub.add_parser(
        "reindex", help="re-embed the embedded store with the configured embedder (service "
        "stopped; resumable)")

    tools = sub.add_parser("tools", help="list or call the executor's tools (built-in, MCP)")
    tools_sub = tools.add_subparsers(dest="tools_command", required=True)
    tools_list = tools_sub.add_parser("list", help="every tool, its source, schema, approval")
    tools_list.add_argument("--json", action="store_true", help="as JSON")
    tools_call = tools_sub.add_parser("call", help="call one tool by hand (no approval asked)")
    tools_call.add_argument("name")
    tools_call.add_argument("arguments", nargs="?", default="{}", help="JSON object")

    mcp = sub.add_parser("mcp", help="crewbus as an MCP server")
    mcp_sub = mcp.add_subparsers(dest="mcp_command", required=True)
    mcp_serve = mcp_sub.add_parser("serve", help="serve crewbus's tools to MCP clients")
    how = mcp_serve.add_mutually_exclusive_group()
    how.add_argument("--stdio", action="store_true", help="over stdin/stdout (the default)")
    how.add_argument("--http", type=int, metavar="PORT", help="streamable HTTP on PORT")
    mcp_serve.add_argument("--host", default="127.0.0.1", help="HTTP bind address")
    mcp_serve.add_argument("--by", default="mcp", help="who approvals and cancels are by")
    mcp_serve.add_argument("--nats")

    schema = sub.add_parser("schema", help="write the JSON Schema of every contract")
    schema.add_argument("--out", default="schema", help="directory (default ./schema)")
    feedback_cli.add_parser(sub)
    _add_debug(dataset_cli.add_parser(sub))
    from crewbus.variants.cli import add_commands as add_variant_commands

    add_variant_commands(sub, _add_debug)
    _add_debug(eval_cli.add_parser(sub))
    _add_debug(replay_cli.add_parser(sub))
    _add_debug(sub.choices)
    _add_debug(memory_sub.choices)
    _add_debug(apikey_sub.choices)
    _add_debug(tools_sub.choices)
    _add_debug(mcp_sub.choices)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("nats").setLevel(logging.WARNING if not args.verbose else logging.DEBUG)
    logging.getLogger("httpx").setLevel(logging.WARNING)
    try:
        _import_ahead(args.command)
        return anyio.run(_dispatch, args, **run_options())
    except KeyboardInterrupt:
        return 130
    except Exception as exc:  # every error, said in one line
        if args.debug:
            traceback.print_exc()
        code, message = _explain(innermost(exc), _nats_url(args), args.command)
        print(f"crewbus {args.command}: {' '.join(message.split())}", file=sys.stderr)
        return code
    finally:
        if args.command in _HEAVY_COMMAND_MODULES:
            _spare_the_teardown_collections()


_HEAVY_COMMAND_MODULES = {"up": "crewbus.devstack.up", "serve": "crewbus.serve"}


def _import_ahead(command: str) -> None:
    """Import a command's module before the event loop starts. Inside the loop, a Ctrl-C
    only cancels the main task at its next await, so one during these imports (seconds on
    a busy machine: openai, pydantic, onnxruntime) waited for all of them to finish."""
    module = _HEAVY_COMMAND_MODULES.get(command)
    if module is not None:
        importlib.import_module(module)


def _spare_the_teardown_collections() -> None:
    """For a `crewbus serve` or `crewbus up` process that exits next, once its event loop
    has closed (`up` exited 2-3 s after its "stopped" line without this, on a busy machine).

    The interpreter's teardown would run full garbage collections over every object the
    imports made (openai, pydantic, onnxruntime...): ~0.6 s of CPU per service, which on a
    busy machine with every service stopping at once took longer than `crewbus up` waits
    (STOP_TIMEOUT_S). Frozen objects are left out of those collections; atexit handlers,
    thread joins and log flushes still run. Only after the loop has closed: with the freeze
    inside the loop, one memory service (NATS killed under it) hung in asyncio's closing
    "cancel every task", possibly on a task the collector would have freed."""
    gc.freeze()


def _explain(exc: BaseException, url: str, command: str) -> tuple[int, str]:
    """The exit code and the sentence for an error that reached the top."""
    from crewbus.auth.credentials import CredentialsError
    from crewbus.auth.options import TlsSettingsError
    from crewbus.bus.connection import NatsAuthRefusedError, NatsUnreachableError, command_violation

    if isinstance(exc, NatsAuthRefusedError | CredentialsError | TlsSettingsError):
        return EXIT_ERROR, str(exc)
    violation = command_violation()
    if violation and isinstance(exc, NatsTimeoutError | TimeoutError):
        return EXIT_ERROR, (f"NATS refused this identity ({violation}): "
                            "set CREWBUS_NATS_CREDS to an identity that may (crewbus auth "
                            "show)")

    if isinstance(exc, NoServersError | NatsUnreachableError | ConnectionRefusedError):
        hint = ("is it running? (or leave out --nats to start one)" if command == "up"
                else "is `crewbus up` running? (or pass --nats URL)")
        return EXIT_UNREACHABLE, f"no NATS server at {url}: {hint}"
    if isinstance(exc, NoRespondersError | NatsTimeoutError | TimeoutError):
        return EXIT_UNREACHABLE, (f"crewbus did not answer at {url} ({type(exc).__name__}): "
                                  "is `crewbus up` running? (or pass --nats URL)")
    if isinstance(exc, ConnectionClosedError):
        return EXIT_UNREACHABLE, f"the connection to NATS at {url} closed"
    if isinstance(exc, NotFoundError):
        return EXIT_ERROR, (f"crewbus has not run on the NATS server at {url} "
                            f"({exc.description or 'stream or bucket not found'})")
    if isinstance(exc, ValueError | msgspec.ValidationError):
        return EXIT_USAGE, str(exc) or type(exc).__name__
    return EXIT_ERROR, str(exc) or type(exc).__name__


async def _dispatch(args: argparse.Namespace) -> int:
    match args.command:
        case "up":
            from crewbus.devstack.up import run_stack

            return await run_stack(nats_url=args.nats, nats_port=args.nats_port,
                                   model_port=args.model_port, cluster=args.cluster,
                                   creds_dir=args.creds,
                                   no_auth=args.no_auth)
        case "auth":
            from crewbus.auth.cli import auth_command
            from crewbus.devstack.nats_auth import set_up_bus_command

            if args.auth_command == "setup-bus":
                return await set_up_bus_command(_nats_url(args), args.dir)
            return auth_command(args)
        case "serve":
            from crewbus.serve import serve

            await serve(args.service, nats_url=args.nats, port=args.port, host=args.host,
                        evaluators_file=args.evaluators_file, add_to=args.add_to)
            return 0
        case "submit":
            return await _submit(args)
        case "watch":
            return await _watch(_nats_url(args), args.task_id)
        case "status":
            return await _status(args)
        case "approve" | "deny" | "cancel":
            return await _control(args)
        case "trace":
            from crewbus.tracing.cli import trace_command

            return await trace_command(_nats_url(args), args.task_id, args.json)
        case "ingest":
            return await _ingest(args)
        case "memory":
            return await _memory(args)
        case "apikey":
            from crewbus.httpapi.cli import apikey_command

            return await apikey_command(_nats_url(args), args)
        case "dataset":
            return await dataset_cli.run(args)
        case "feedback":
            nc = await _connect(_nats_url(args), CLIENT)
            try:
                return await feedback_cli.feedback_command(nc, args)
            finally:
                await nc.close()
        case "prompt" | "variant":
            from crewbus.variants.cli import run as run_variant_command

            return await run_variant_command(args, lambda: _connect(_nats_url(args)))
        case "tools":
            from crewbus.tools_cli import run_tools_command

            return await run_tools_command(args)
        case "mcp":
            from crewbus.mcp_server.serve import serve_mcp

            await serve_mcp(args.nats, http_port=args.http, host=args.host, by=args.by)
            return 0
        case "eval":
            return await eval_cli.run(args)
        case "replay" | "shadow":
            return await replay_cli.run(args)
        case "schema":
            from crewbus_contracts.schema import export_schemas

            for path in export_schemas(Path(args.out)):
                print(path)
            return 0
    return 2


async def _connect(url: str, identity: str = ADMIN):  # type: ignore[no-untyped-def]
    """A connection as `identity`: `client` for the task commands (submit, watch, cancel,
    approve, deny, feedback), `admin` for the operator commands (everything else)."""
    from crewbus.bus.connection import connect_for_command

    return await connect_for_command(url, identity)


async def _submit(args: argparse.Namespace) -> int:
    from crewbus.client import CrewbusClient, SubmissionRefusedError
    from crewbus_contracts import SubmitTask, TaskLimits

    limits = {
        k: v
        for k, v in (("max_rounds", args.max_rounds), ("deadline_seconds", args.deadline),
                     ("min_score", args.min_score), ("max_cost_usd", args.budget_usd),
               ("max_tokens", args.budget_tokens),
               ("approval_timeout_seconds", args.approval_timeout))
        if v is not None
    }
    if args.no_degrade:
        limits["allow_degraded"] = False
    try:
        task = SubmitTask(
            text=args.text,
            idempotency_key=args.key,
            limits=msgspec.convert(limits, TaskLimits),
            variant=args.variant,
        )
    except (ValueError, msgspec.ValidationError) as exc:
        print(f"invalid task: {exc}", file=sys.stderr)
        return 2
    nc = await _connect(_nats_url(args), CLIENT)
    try:
        client = CrewbusClient(nc)
        try:
            accepted = await client.submit(task, timeout_s=SUBMIT_PATIENCE_S)
        except SubmissionRefusedError as exc:
            print(f"refused: {exc}", file=sys.stderr)
            return 2
        note = " (already submitted with this key)" if accepted.duplicate else ""
        print(f"task {accepted.task_id}{note}", file=sys.stderr)
        if not (args.wait or args.stream):
            print(accepted.task_id)
            return 0
        return await _follow(client, accepted.task_id, print_events=args.stream)
    finally:
        await nc.close()


async def _follow(client, task_id: str, print_events: bool) -> int:  # type: ignore[no-untyped-def]
    from crewbus_contracts import TaskCancelled, TaskCompleted, TaskFailed

    # Closed here, before the connection is: left to the garbage collector, the
    # generator would unsubscribe from a closed connection and asyncio would log it.
    async with contextlib.aclosing(client.events(task_id)) as events:
        async for event in events:
            if print_events:
                print(render.event_line(event), flush=True)
            if isinstance(event, TaskCompleted):
                print(render.result_block(task_id, event.result))
                return 0
            if isinstance(event, TaskFailed):
                print(f"Task {task_id} failed [{event.error.code}]: {event.error.message}")
                return 1
            if isinstance(event, TaskCancelled):
                print(f"Task {task_id} was cancelled by {event.by}: {event.reason}")
                return 1
    return 1


async def _watch(url: str, task_id: str) -> int:
    from crewbus.client import CrewbusClient

    nc = await _connect(url, CLIENT)
    try:
        client = CrewbusClient(nc)
        if not await client.exists(task_id):
            print(f"crewbus watch: no task {task_id}", file=sys.stderr)
            return EXIT_ERROR
        return await _follow(client, task_id, print_events=True)
    finally:
        await nc.close()


async def _control(args: argparse.Namespace) -> int:
    from crewbus.client import CommandRefusedError, CrewbusClient
    from crewbus_contracts import CancelTask, ControlCommand, ResolveApproval

    command: ControlCommand
    if args.command == "cancel":
        command = CancelTask(task_id=args.task_id, by=args.by, reason=args.reason)
    else:
        command = ResolveApproval(task_id=args.task_id, approved=args.command == "approve",
                                  by=args.by, reason=args.reason, call_key=args.call)
    nc = await _connect(_nats_url(args), CLIENT)
    try:
        accepted = await CrewbusClient(nc).control(command)
    except CommandRefusedError as exc:
        print(f"refused: {exc}", file=sys.stderr)
        return 1
    finally:
        await nc.close()
    print(f"task {accepted.task_id} is now {accepted.status}")
    return 0


async def _ingest(args: argparse.Namespace) -> int:
    from crewbus.memory.client import MemoryClient, MemoryClientError
    from crewbus.memory.ingest import FileIngested, ingest

    def progress(done: FileIngested) -> None:
        width = 30
        filled = int(width * done.done / max(done.total, 1))
        bar = "#" * filled + "-" * (width - filled)
        print(f"\r[{bar}] {done.done}/{done.total} {Path(done.path).name[:40]:<40} "
              f"({done.chunks} chunks)", end="", file=sys.stderr, flush=True)

    nc = await _connect(_nats_url(args))
    try:
        # Right after `crewbus up` the memory service may still be loading its model.
        client = MemoryClient(nc, timeout_s=60, service_patience_s=SUBMIT_PATIENCE_S)
        stored = await ingest(client, args.paths, max_chars=args.max_chars, progress=progress)
    except MemoryClientError as exc:
        print(f"\ningest failed: {exc}", file=sys.stderr)
        return 1
    finally:
        await nc.close()
    chunks = sum(len(ids) for ids in stored.values())
    print(f"\ningested {len(stored)} files as {chunks} chunks", file=sys.stderr)
    return 0 if stored else 1


async def _memory(args: argparse.Namespace) -> int:
    from crewbus.memory.client import MemoryClient, MemoryClientError

    if args.memory_command == "reindex":
        return await _reindex()
    nc = await _connect(_nats_url(args))
    try:
        client = MemoryClient(nc)
        if args.memory_command == "stats":
            stats = await client.stats()
            print(f"backend {stats.backend}, embedder {stats.embedder} "
                  f"({stats.dimension} dims), collection {stats.collection}")
            for kind, count in sorted(stats.counts.items()):
                print(f"  {kind:<10} {count}")
            print(f"  {'total':<10} {stats.total}")
            return 0
        hits = await client.search(args.query, k=args.k, kind=args.kind)
    except MemoryClientError as exc:
        print(f"memory: {exc}", file=sys.stderr)
        return 1
    finally:
        await nc.close()
    if not hits:
        print("no memories match")
    for hit in hits:
        where = hit.source or hit.task_id or ""
        if hit.position is not None:
            where += f"#{hit.position}"
        print(f"{hit.score:.3f}  {hit.kind:<9} {hit.id}  {where}")
        print("        " + hit.text[:300].replace("\n", " "))
    return 0


async def _reindex() -> int:
    from crewbus.memory.reindex import ReindexProgress, reindex
    from crewbus.memory.settings import load_memory_settings

    def progress(p: ReindexProgress) -> None:
        width = 30
        filled = int(width * p.done / max(p.total, 1))
        print(f"\r[{'#' * filled}{'-' * (width - filled)}] {p.done}/{p.total} memories",
              end="", file=sys.stderr, flush=True)

    settings = load_memory_settings()
    done = await reindex(settings, progress)
    if done.previous is None:
        print(f"collection {settings.collection} is already embedded by {done.embedder}; "
              "nothing to do")
        return 0
    print(f"\nreindexed {done.copied} memories of {settings.collection}: {done.previous} -> "
          f"{done.embedder}", file=sys.stderr)
    if done.kept_at is not None:
        print(f"the old shard is kept at {done.kept_at} (delete it when you no longer need it)",
              file=sys.stderr)
    return 0


async def _status(args: argparse.Namespace) -> int:
    from crewbus.client import CrewbusClient
    from crewbus.evals.online.render import scores_block, status_document

    nc = await _connect(_nats_url(args))
    try:
        state = await CrewbusClient(nc).state(args.task_id)
        scores = [] if state is None else await feedback_cli.task_scores(nc, args.task_id)
    finally:
        await nc.close()
    if state is None:
        print(f"crewbus status: no task {args.task_id}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        document = status_document(state, scores)
        print(msgspec.json.format(msgspec.json.encode(document), indent=2).decode())
    else:
        print(render.state_block(state))
        if scores:
            print(scores_block(scores))
    return 0
