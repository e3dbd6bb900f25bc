"""`crewbus mcp serve`: crewbus as an MCP server, so an IDE or a desktop agent can hand
work to a crew.

Tools: `submit_task` (waits for the result by default, reporting every task event as a
progress notification), `get_task`, `cancel_task`, `list_pending_approvals`,
`resolve_approval`, `search_memory`. Built with the official SDK's `MCPServer`, which
answers clients of both protocol eras (the `initialize` handshake and `server/discover`).
Over stdio (the default) or streamable HTTP on a loopback port.
"""

from __future__ import annotations

import logging
from typing import Annotated, Any, Literal

from mcp.server.mcpserver import Context, MCPServer
from mcp.server.mcpserver.exceptions import ToolError
from mcp_types import ToolAnnotations
from nats.aio.client import Client as NATS
from pydantic import Field

from crewbus.mcp_server.crew import Crew, CrewRefused

log = logging.getLogger(__name__)

READS = ToolAnnotations(read_only_hint=True, open_world_hint=False)
ADDS = ToolAnnotations(read_only_hint=False, destructive_hint=False, open_world_hint=True)
DECIDES = ToolAnnotations(read_only_hint=False, destructive_hint=True, open_world_hint=True)

MemoryKindName = Literal["finding", "result", "critique", "document", "task"]


def build_server(nc: NATS, by: str = "mcp") -> MCPServer:
    """The MCP server over the crewbus reached through `nc`; decisions are made as `by`."""
    crew = Crew(nc, by=by)
    server: MCPServer = MCPServer(
        "crewbus", version="0.1.0",
        instructions=("Delegate work to a crewbus crew (planner, researchers, executor, "
                      "critic). submit_task waits for the answer and reports progress; "
                      "a task may pause for approval of a tool call: see "
                      "list_pending_approvals and resolve_approval."))

    @server.tool(annotations=ADDS)
    async def submit_task(
        text: Annotated[str, Field(description="What the crew should do", min_length=1)],
        ctx: Context,
        wait: Annotated[bool, Field(description="Wait for the result (progress is "
                                    "reported as the task goes)")] = True,
        timeout_s: Annotated[float, Field(gt=0, le=3600, description="Longest wait")] = 600,
        idempotency_key: Annotated[str | None, Field(
            description="The same key is the same task")] = None,
        max_rounds: Annotated[int | None, Field(ge=1, le=10)] = None,
        budget_usd: Annotated[float | None, Field(gt=0)] = None,
    ) -> dict[str, Any]:
        """Submit a task to the crew; by default wait for its answer."""
        limits = {k: v for k, v in (("max_rounds", max_rounds), ("max_cost_usd", budget_usd))
                  if v is not None}

        async def progress(n: int, line: str) -> None:
            await ctx.report_progress(n, None, line)

        return await _refusals(crew.submit(text, wait=wait, timeout_s=timeout_s,
                                           progress=progress, limits=limits,
                                           idempotency_key=idempotency_key))

    @server.tool(annotations=READS)
    async def get_task(task_id: str) -> dict[str, Any]:
        """A task's status, its answer or error, and the tool calls waiting for approval."""
        return await _refusals(crew.task(task_id))

    @server.tool(annotations=DECIDES)
    async def cancel_task(task_id: str, reason: str = "") -> dict[str, Any]:
        """Cancel a task: nothing new starts, running steps stop at their next call."""
        return await _refusals(crew.cancel(task_id, reason))

    @server.tool(annotations=READS)
    async def list_pending_approvals(task_id: str | None = None) -> dict[str, Any]:
        """Tool calls waiting for a human's decision, of one task or of every unfinished
        task."""
        return {"pending": await _refusals(crew.pending_approvals(task_id))}

    @server.tool(annotations=DECIDES)
    async def resolve_approval(
        task_id: str,
        approved: bool,
        call_key: Annotated[str | None, Field(
            description="The call to decide (default: the task's oldest pending)")] = None,
        reason: str = "",
    ) -> dict[str, Any]:
        """Approve or deny a task's paused tool call."""
        return await _refusals(crew.resolve(task_id, approved, call_key, reason))

    @server.tool(annotations=READS)
    async def search_memory(
        query: Annotated[str, Field(min_length=1)],
        k: Annotated[int, Field(ge=1, le=50)] = 5,
        kind: MemoryKindName | None = None,
    ) -> dict[str, Any]:
        """Search the crew's shared memory (findings, results, critiques, documents)."""
        return {"hits": await _refusals(crew.search(query, k, kind))}

    return server


async def _refusals(work: Any) -> Any:
    """`work`'s result; crewbus's refusals become the tool's error (isError) for the client."""
    try:
        return await work
    except CrewRefused as exc:
        raise ToolError(str(exc)) from None
