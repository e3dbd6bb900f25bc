"""`crewbus tools list|call`: the executor's tools as this machine's settings make them,
built-in and MCP, listed with their source, schema and approval policy, or called by hand.

The registry is built the way the executor builds it (`default_registry` plus the MCP
servers of `CREWBUS_MCP_SERVERS`, started for the command and stopped after it), so what
is listed is what a step's model is offered; `memory_search` is offered to the executor
only when the memory service runs, and is not listed.
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import msgspec

from crewbus.config import Settings, load_settings
from crewbus_agents.mcp_tools import McpToolSource, load_servers, model_name
from crewbus_agents.mcp_tools.policy import describe
from crewbus_agents.tools import (
    Tool,
    ToolContext,
    ToolRegistry,
    ToolUnavailable,
    default_registry,
)

CLI_TASK = "cli"
"""The task id (and workspace) of calls made by hand."""


@asynccontextmanager
async def executor_registry(settings: Settings) -> AsyncIterator[
        tuple[ToolRegistry, McpToolSource | None]]:
    """The executor's registry, its MCP servers running inside."""
    registry = default_registry(settings.tools)
    if not settings.mcp.servers:
        yield registry, None
        return
    source = McpToolSource(load_servers(settings.mcp.servers), settings.mcp)
    registry.add_source(source)
    async with source.running():
        yield registry, source


async def run_tools_command(args: argparse.Namespace) -> int:
    settings = load_settings()
    if args.tools_command == "call":
        try:
            json.loads(args.arguments)
        except json.JSONDecodeError as exc:
            print(f"crewbus tools call: the arguments are not JSON: {exc}", file=sys.stderr)
            return 2
    async with executor_registry(settings) as (registry, source):
        if args.tools_command == "list":
            rows = [_row(t, registry, source) for t in registry.tools()]
            servers = _servers(source)
            if args.json:
                print(json.dumps({"tools": rows, "mcp_servers": servers}, indent=2))
            else:
                _print_list(rows, servers)
            return 0
        return await _call(registry, settings, args.name, args.arguments)


def _row(t: Tool, registry: ToolRegistry, source: McpToolSource | None) -> dict[str, Any]:
    needs = registry.requires_approval(t.name)
    if t.server is None:
        why = "CREWBUS_TOOLS_REQUIRES_APPROVAL" if needs else "not listed for approval"
    else:
        why = _mcp_reason(t, source)
    return {"name": t.name, "source": f"mcp:{t.server}" if t.server else "built-in",
            "approval": needs, "approval_reason": why, "description": t.description,
            "parameters": t.parameters}


def _mcp_reason(t: Tool, source: McpToolSource | None) -> str:
    connection = source.connections.get(t.server or "") if source else None
    if connection is None:
        return ""
    config = connection.config
    for spec in connection.tools.values():
        if model_name(connection.name, spec.name) != t.name:
            continue
        if spec.name in config.trusted_tools:
            return "trusted_tools"
        if config.approval != "auto":
            return f"approval = {config.approval}"
        return describe(spec.annotations)
    return ""


def _servers(source: McpToolSource | None) -> list[dict[str, Any]]:
    if source is None:
        return []
    return [{"name": c.name, "transport": c.config.transport, "state": c.state,
             "detail": c.reason, "protocol_version": c.protocol_version,
             "server": c.server_version, "tools": len(c.tools)}
            for c in source.connections.values()]


def _print_list(rows: list[dict[str, Any]], servers: list[dict[str, Any]]) -> None:
    for server in servers:
        print(f"MCP server {server['name']} ({server['transport']}): {server['state']}, "
              f"{server['detail']}" + (f", {server['server']}" if server["server"] else ""))
    if servers:
        print()
    width = max((len(r["name"]) for r in rows), default=10)
    for r in rows:
        approval = "approval" if r["approval"] else "no approval"
        print(f"{r['name']:<{width}}  {r['source']:<14} {approval:<11} ({r['approval_reason']})")
        print(f"{'':<{width}}  {r['description']}")
        print(f"{'':<{width}}  parameters: {_signature(r['parameters'])}")


def _signature(schema: dict[str, Any]) -> str:
    """`name: type*` for each property; `*` marks the required ones."""
    required = set(schema.get("required") or [])
    parts = []
    for name, spec in (schema.get("properties") or {}).items():
        kind = spec.get("type", "any") if isinstance(spec, dict) else "any"
        parts.append(f"{name}: {kind}{'*' if name in required else ''}")
    return ", ".join(parts) or "(none)"


async def _call(registry: ToolRegistry, settings: Settings, name: str, arguments: str) -> int:
    if name not in registry:
        print(f"crewbus tools call: unknown tool {name!r}; `crewbus tools list` shows them",
              file=sys.stderr)
        return 2
    ctx = ToolContext.create(settings.tools, task_id=CLI_TASK, step_id="call")
    try:
        outcome = await registry.call(name, arguments, ctx)
    except ToolUnavailable as exc:
        print(f"crewbus tools call: {exc}", file=sys.stderr)
        return 1
    if outcome.error is not None:
        print(f"crewbus tools call: {outcome.error_type}: {outcome.error}", file=sys.stderr)
        return 1
    print(outcome.output)
    if outcome.structured is not None:
        structured = msgspec.json.format(msgspec.json.encode(outcome.structured), indent=2)
        print(f"structured content: {structured.decode()}", file=sys.stderr)
    return 0
