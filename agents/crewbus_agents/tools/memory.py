"""`memory_search`: recall from the shared memory through a pluggable search function.

The memory client arrives with the memory service; until one is plugged in, the tool is
simply not offered (see `builtin.default_registry`).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import Annotated

import msgspec

from crewbus_agents.tools.registry import Tool, ToolArgs, make_tool


class MemoryHit(msgspec.Struct, kw_only=True):
    """One recalled item, as the model sees it."""

    id: str
    score: float
    text: str
    source: str = ""


MemorySearchFn = Callable[[str, int], Awaitable[list[MemoryHit]]]
"""`await search(query, limit)`: the memory client's recall, best hits first."""


class MemorySearchArgs(ToolArgs):
    query: Annotated[
        str, msgspec.Meta(min_length=1, max_length=2000, description="What to look for")
    ]
    limit: Annotated[int, msgspec.Meta(ge=1, le=20, description="How many hits at most")] = 5


def memory_search_tool(search: MemorySearchFn) -> Tool:
    """The `memory_search` tool backed by `search`."""

    async def memory_search(args: MemorySearchArgs) -> list[MemoryHit]:
        return await search(args.query, args.limit)

    return make_tool(
        memory_search,
        name="memory_search",
        description=(
            "Search the shared memory of past research and tasks; returns the closest "
            "passages with their ids and similarity scores."
        ),
        read_only=True,
    )
