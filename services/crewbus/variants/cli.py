"""`crewbus prompt ...` and `crewbus variant ...`: prompts and variants on the bus.

Hooked into `crewbus.cli` by `add_commands` (the parsers) and `run` (the commands). Errors
are exceptions that the CLI's `main` says in one line: a bad argument or file is a
ValueError (exit 2), an unknown version, label or variant a VariantsError (exit 1).
"""

from __future__ import annotations

import argparse
import datetime
import difflib
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

import msgspec
from nats.aio.client import Client as NATS

from crewbus.variants.errors import VariantsError
from crewbus.variants.prompt_store import PromptStore
from crewbus.variants.seed import seed_packaged_prompts
from crewbus.variants.variant_store import VariantStore, check_name
from crewbus_agents.prompts import Prompt, parse_prompt, prompt_file
from crewbus_contracts import (
    AGENT_ROLES,
    PRODUCTION,
    PromptIndex,
    RoleOverride,
    Variant,
    subjects,
)

TOOL_ROLES = ("executor",)
"""Roles that work through the tool loop, the only ones a tool-call limit means anything to."""

AddDebug = Callable[[Mapping[str, argparse.ArgumentParser]], None]


def add_commands(sub: Any, add_debug: AddDebug) -> None:
    """Add `prompt` and `variant` to the CLI's subcommands."""
    prompt = sub.add_parser("prompt", help="versioned, labelled system prompts on the bus")
    psub = prompt.add_subparsers(dest="prompt_command", required=True)
    push = psub.add_parser("push", help="store a prompt file as the next version of a role")
    _role(push)
    push.add_argument("file", type=Path, help="a prompt file: '---', 'version: NAME', '---', "
                      "then the text")
    push.add_argument("--label", help="point this label at it (e.g. candidate)")
    listing = psub.add_parser("list", help="a role's versions and labels")
    _role(listing)
    listing.add_argument("--json", action="store_true")
    show = psub.add_parser("show", help="print a version as a prompt file")
    _role(show)
    show.add_argument("version", help="a version number or a label")
    diff = psub.add_parser("diff", help="unified diff of two versions")
    _role(diff)
    diff.add_argument("old", help="a version number or a label")
    diff.add_argument("new", help="a version number or a label")
    label = psub.add_parser("label", help="point a label at a version (production: promote, "
                            "or roll back)")
    _role(label)
    label.add_argument("version", help="a version number (or a label pointing at one)")
    label.add_argument("label", help="the label to move, e.g. production")

    variant = sub.add_parser("variant", help="named per-role prompt/model overrides")
    vsub = variant.add_subparsers(dest="variant_command", required=True)
    vset = vsub.add_parser("set", help="set one role's overrides in a variant (creating it)")
    vset.add_argument("name")
    vset.add_argument("--role", required=True, choices=AGENT_ROLES)
    vset.add_argument("--prompt", help="a version number or a label (default production)")
    vset.add_argument("--model", help="the model to request")
    vset.add_argument("--endpoint", help="a named endpoint of the agents' "
                      "CREWBUS_MODEL_ENDPOINTS (needs --model)")
    vset.add_argument("--temperature", type=float)
    vset.add_argument("--max-tool-calls", type=int, help="tool calls per step (executor)")
    vset.add_argument("--description", help="what the variant tries")
    vsub.add_parser("list", help="every variant")
    vshow = vsub.add_parser("show", help="a variant, each role resolved")
    vshow.add_argument("name")
    vdelete = vsub.add_parser("delete", help="delete a variant")
    vdelete.add_argument("name")
    for command in (*psub.choices.values(), *vsub.choices.values()):
        command.add_argument("--nats", help="NATS URL (default $CREWBUS_NATS_URL or localhost)")
    add_debug(psub.choices)
    add_debug(vsub.choices)


def _role(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("role", choices=AGENT_ROLES)


async def run(args: argparse.Namespace, connect: Callable[[], Any]) -> int:
    """Run `crewbus prompt ...` or `crewbus variant ...`; `connect` opens NATS."""
    pushed = _read_prompt(args.file) if getattr(args, "prompt_command", "") == "push" else None
    changes = _changes(args) if getattr(args, "variant_command", "") == "set" else {}
    nc: NATS = await connect()
    try:
        js = nc.jetstream()
        prompts = PromptStore(await js.key_value(subjects.PROMPTS_KV))
        variants = VariantStore(await js.key_value(subjects.VARIANTS_KV))
        await seed_packaged_prompts(prompts)
        if args.command == "prompt":
            return await _prompt(args, prompts, pushed)
        return await _variant(args, prompts, variants, changes)
    finally:
        await nc.close()


async def _prompt(args: argparse.Namespace, store: PromptStore, pushed: Prompt | None) -> int:
    role = args.role
    match args.prompt_command:
        case "push":
            assert pushed is not None
            done = await store.push(role, pushed, label=args.label)
            what = "stored as version" if done.created else "is already version"
            line = f"{role}: {args.file} {what} {done.number} ({pushed.sha256[:12]})"
            if done.labelled:
                line += f"; {_moved(done.labelled, done.previous, done.number)}"
            print(line)
        case "list":
            index = await store.require_index(role)
            print(msgspec.json.format(msgspec.json.encode(index), indent=2).decode()
                  if args.json else _table(index))
        case "show":
            _, number = await store.resolve(role, args.version)
            text = await store.text(role, number)
            sys.stdout.write(prompt_file(Prompt(version=text.name, text=text.text)))
        case "diff":
            print(await _diff(store, role, args.old, args.new), end="")
        case "label":
            _, number = await store.resolve(role, args.version)
            previous = await store.label(role, number, args.label)
            print(f"{role}: {_moved(args.label, previous, number)}")
    return 0


async def _variant(args: argparse.Namespace, prompts: PromptStore, store: VariantStore,
                   changes: dict[str, object]) -> int:
    match args.variant_command:
        case "set":
            check_name(args.name)
            ref = changes.get("prompt")
            if isinstance(ref, str):
                await prompts.resolve(args.role, ref)  # refuse one that does not resolve now
            variant = await store.set_role(args.name, args.role, changes, args.description)
            print(await _describe(variant, prompts))
        case "list":
            print(f"{PRODUCTION:<24} every role on its production label (implicit)")
            for variant in await store.all():
                roles = "; ".join(f"{role}: {_override(o)}" for role, o in variant.roles.items())
                print(f"{variant.name:<24} {roles}")
        case "show":
            print(await _describe(await store.require(args.name), prompts))
        case "delete":
            await store.delete(args.name)
            print(f"variant {args.name} deleted")
    return 0


def _read_prompt(path: Path) -> Prompt:
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) else "not UTF-8 text"
        raise ValueError(f"cannot read {path}: {reason}") from None
    return parse_prompt(raw, str(path))


def _changes(args: argparse.Namespace) -> dict[str, object]:
    """The RoleOverride fields `variant set` was given, checked before NATS is asked."""
    changes = {name: value for name, value in (
        ("prompt", args.prompt), ("model", args.model), ("endpoint", args.endpoint),
        ("temperature", args.temperature), ("max_tool_calls", args.max_tool_calls))
        if value is not None}
    if not changes:
        raise ValueError("nothing to set: give --prompt, --model, --endpoint, --temperature "
                         "or --max-tool-calls")
    if "max_tool_calls" in changes and args.role not in TOOL_ROLES:
        raise ValueError(f"--max-tool-calls applies to roles that use tools "
                         f"({', '.join(TOOL_ROLES)}), not the {args.role}")
    if "endpoint" in changes and "model" not in changes:
        raise ValueError("--endpoint needs --model: which model to ask that endpoint for")
    try:
        msgspec.convert(changes, RoleOverride)
    except msgspec.ValidationError as exc:
        field = str(exc).rsplit("$.", 1)[-1].rstrip("`")
        raise ValueError(f"--{field.replace('_', '-')}: {str(exc).split(' - at ')[0]}"
                         ) from None
    return changes


async def _diff(store: PromptStore, role: str, old: str, new: str) -> str:
    texts = []
    for ref in (old, new):
        _, number = await store.resolve(role, ref)
        texts.append(await store.text(role, number))
    a, b = texts
    lines = difflib.unified_diff(
        a.text.splitlines(keepends=True), b.text.splitlines(keepends=True),
        fromfile=f"{role}/{a.number} ({a.name})", tofile=f"{role}/{b.number} ({b.name})")
    return "".join(line if line.endswith("\n") else line + "\n" for line in lines)


def _table(index: PromptIndex) -> str:
    rows = [("version", "labels", "created", "sha256", "name", "source")]
    for v in index.versions:
        created = datetime.datetime.fromtimestamp(v.created_at).strftime("%Y-%m-%d %H:%M:%S")
        rows.append((str(v.number), ",".join(index.labels_of(v.number)) or "-", created,
                     v.sha256[:12], v.name, v.source))
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(row, widths, strict=True))
                     .rstrip() for row in rows)


def _moved(label: str, previous: int | None, number: int) -> str:
    if previous == number:
        return f"{label} is on {number} already"
    return f"{label} {previous if previous is not None else '(new)'} -> {number}"


def _override(o: RoleOverride) -> str:
    parts = [f"prompt {o.prompt}" if o.prompt else "",
             f"model {o.model}" if o.model else "",
             f"endpoint {o.endpoint}" if o.endpoint else "",
             f"temperature {o.temperature:g}" if o.temperature is not None else "",
             f"max tool calls {o.max_tool_calls}" if o.max_tool_calls is not None else ""]
    return ", ".join(p for p in parts if p) or "no change"


async def _describe(variant: Variant, prompts: PromptStore) -> str:
    """Each role of `variant` with the prompt version it resolves to now."""
    title = f"variant {variant.name}"
    if variant.description:
        title += f": {variant.description}"
    lines = [title]
    for role in AGENT_ROLES:
        override = variant.override(role)
        ref = override.prompt or PRODUCTION
        index = await prompts.index(role)
        number = index.resolve(ref) if index is not None else None
        prompt = f"prompt {ref} -> {number}" if number is not None else (
            f"prompt {ref} -> DOES NOT RESOLVE")
        rest = _override(msgspec.structs.replace(override, prompt=None))
        lines.append(f"  {role:<11} {prompt}" + ("" if rest == "no change" else f", {rest}"))
    return "\n".join(lines)


__all__ = ["VariantsError", "add_commands", "run"]
