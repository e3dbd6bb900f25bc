"""Declaring tools and calling them by name, the way a model asks for them.

A tool is one typed function whose first argument is a msgspec Struct (the model's
arguments; its JSON Schema comes from the type) and, optionally, a second `ToolContext`.
It may be sync (run in a worker thread) or async. It returns a `str`, or any value
msgspec can encode (sent to the model as JSON). It raises `ToolFailed` to tell the model
why it could not do the job.
"""

from __future__ import annotations

import inspect
import logging
import re
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Protocol, get_type_hints

import anyio
import anyio.to_thread
import msgspec

from crewbus_agents.tools.context import ToolContext, ToolOutcome, ToolResult
from crewbus_agents.tools.errors import (
    ToolArgumentsInvalid,
    ToolDefinitionError,
    ToolFailed,
    ToolUnavailable,
    UnknownTool,
)
from crewbus_agents.tools.schema import parameters_schema

log = logging.getLogger(__name__)

TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
"""What OpenAI-compatible APIs accept as a function name."""

ToolFn = Callable[..., Any]


class ToolArgs(msgspec.Struct, kw_only=True, forbid_unknown_fields=True):
    """A convenient base for argument Structs: a misspelt field is an error the model sees."""


@dataclass(frozen=True)
class Tool:
    """A registered tool: the function and what the model is told about it.

    A typed tool has an `args_type` Struct. A tool from elsewhere (an MCP server) has none:
    its `parameters` is the schema it declared, `check_args` validates the decoded JSON
    against it, and `fn` gets the checked dict; `server` names where it runs.
    """

    name: str
    description: str
    fn: ToolFn
    args_type: type[msgspec.Struct] | None
    wants_context: bool
    requires_approval: bool = False
    parameters: dict[str, Any] = field(default_factory=dict)
    check_args: Callable[[Any], Any] | None = None
    server: str | None = None
    read_only: bool = False
    """The tool only reads (no writes, no calls out): a replayed or shadow task may run it
    live when allowed. Off by default, so a tool nobody classified counts as having side
    effects and never runs in a replay (docs/replay.md)."""

    def openai_tool(self) -> dict[str, Any]:
        """This tool in the OpenAI `tools=[...]` format."""
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        """Calling the tool object calls the function, so decorated functions stay usable."""
        return self.fn(*args, **kwargs)


def tool(
    *, name: str | None = None, description: str | None = None, requires_approval: bool = False,
    read_only: bool = False,
) -> Callable[[ToolFn], Tool]:
    """Decorator turning a typed function into a `Tool` (register it on a ToolRegistry).

    `requires_approval=True` makes approval mandatory whatever the settings say; the
    settings' `requires_approval` set can add approval to any tool. `read_only=True`
    declares that it has no side effects (see `Tool.read_only`).
    """

    def wrap(fn: ToolFn) -> Tool:
        return make_tool(
            fn, name=name, description=description, requires_approval=requires_approval,
            read_only=read_only,
        )

    return wrap


def make_tool(
    fn: ToolFn,
    *,
    name: str | None = None,
    description: str | None = None,
    requires_approval: bool = False,
    read_only: bool = False,
) -> Tool:
    """Inspect `fn` and build its Tool; a function the model could not call is refused here."""
    tool_name = name or fn.__name__
    if not TOOL_NAME.match(tool_name):
        raise ToolDefinitionError(f"tool name {tool_name!r} must match {TOOL_NAME.pattern}")
    desc = description or inspect.getdoc(fn) or ""
    if not desc:
        raise ToolDefinitionError(f"tool {tool_name!r} needs a description (or a docstring)")
    params = list(inspect.signature(fn).parameters.values())
    try:
        hints = get_type_hints(fn)
    except NameError as e:
        raise ToolDefinitionError(
            f"tool {tool_name!r}: cannot resolve its annotations ({e}); "
            "define the argument Struct at module level"
        ) from None
    if not params or len(params) > 2:
        raise ToolDefinitionError(
            f"tool {tool_name!r} must take (args: AStruct) or (args: AStruct, ctx: ToolContext)"
        )
    args_type = hints.get(params[0].name)
    if not (isinstance(args_type, type) and issubclass(args_type, msgspec.Struct)):
        raise ToolDefinitionError(
            f"tool {tool_name!r}: first parameter must be annotated with a msgspec.Struct"
        )
    wants_context = len(params) == 2
    if wants_context and hints.get(params[1].name) is not ToolContext:
        raise ToolDefinitionError(f"tool {tool_name!r}: second parameter must be a ToolContext")
    return Tool(
        name=tool_name,
        description=desc,
        fn=fn,
        args_type=args_type,
        wants_context=wants_context,
        requires_approval=requires_approval,
        parameters=parameters_schema(args_type),
        read_only=read_only,
    )


class ToolSource(Protocol):
    """Tools that come and go while the registry lives (an MCP server's list changes)."""

    def tools(self) -> Iterable[Tool]:
        """The tools offered now."""
        ...

    def find(self, name: str) -> Tool | None:
        """The tool called `name`, also one that is not offered right now but whose calls
        should wait for its server rather than be refused as unknown."""
        ...


class ToolRegistry:
    """The tools offered to a model, and the one place they are called."""

    def __init__(
        self,
        tools: Iterable[Tool] = (),
        approval_required_for: Iterable[str] = (),
    ) -> None:
        self._tools: dict[str, Tool] = {}
        self._sources: list[ToolSource] = []
        self._approval = frozenset(approval_required_for)
        for t in tools:
            self.register(t)

    def add_source(self, source: ToolSource) -> None:
        """Offer `source`'s tools too, as they are at each look (a registered tool of the
        same name wins)."""
        self._sources.append(source)

    def _all(self) -> dict[str, Tool]:
        found = {t.name: t for source in self._sources for t in source.tools()
                 if t.name not in self._tools}
        return {**self._tools, **found}

    def _find(self, name: str) -> Tool | None:
        if name in self._tools:
            return self._tools[name]
        for source in self._sources:
            if (t := source.find(name)) is not None:
                return t
        return None

    def register(self, t: Tool | ToolFn) -> Tool:
        """Add a tool (a `Tool`, or a plain typed function with a docstring)."""
        t = t if isinstance(t, Tool) else make_tool(t)
        if t.name in self._tools:
            raise ToolDefinitionError(f"tool {t.name!r} is already registered")
        self._tools[t.name] = t
        return t

    def tool(
        self,
        *,
        name: str | None = None,
        description: str | None = None,
        requires_approval: bool = False,
    ) -> Callable[[ToolFn], Tool]:
        """Decorator: build the Tool and register it here."""

        def wrap(fn: ToolFn) -> Tool:
            return self.register(
                make_tool(
                    fn, name=name, description=description, requires_approval=requires_approval
                )
            )

        return wrap

    @property
    def names(self) -> list[str]:
        return list(self._all())

    def tools(self) -> list[Tool]:
        """Every tool offered now, registered ones first."""
        return list(self._all().values())

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and self._find(name) is not None

    def get(self, name: str) -> Tool:
        t = self._find(name)
        if t is None:
            raise UnknownTool(name, self.names)
        return t

    def requires_approval(self, name: str) -> bool:
        """Whether calls of `name` wait for a human: the tool's own flag or the settings'."""
        t = self._find(name)
        return name in self._approval or (t is not None and t.requires_approval)

    def is_read_only(self, name: str) -> bool:
        """Whether `name` declares itself read-only and nobody asks approval for it: only
        such a tool may run live in a replayed or shadow task."""
        t = self._find(name)
        return t is not None and t.read_only and not self.requires_approval(name)

    def openai_tools(self) -> list[dict[str, Any]]:
        """Every tool in the OpenAI `tools=[{"type": "function", ...}]` format."""
        return [t.openai_tool() for t in self._all().values()]

    async def call(self, name: str, arguments_json: str | bytes, ctx: ToolContext) -> ToolOutcome:
        """Run one call as the model asked. Never raises for the model's or the tool's faults;
        raises `ToolUnavailable` when the tool's server cannot be reached (try later)."""
        start = time.perf_counter()
        server = None
        try:
            t = self.get(name)
            server = t.server
            args = _decode_args(t, arguments_json)
            with anyio.move_on_after(ctx.settings.tool_timeout_s) as scope:
                result = await _invoke(t, args, ctx)
            if scope.cancelled_caught:
                raise ToolFailed(f"did not finish within {ctx.settings.tool_timeout_s:g}s")
        except ToolUnavailable:
            raise
        except (ToolFailed, UnknownTool, ToolArgumentsInvalid) as e:
            outcome = ToolOutcome.failure(name, e, time.perf_counter() - start)
            return msgspec.structs.replace(outcome, server=server)
        except Exception as e:
            # A bug in the tool: the model learns the tool broke; the log keeps the traceback.
            log.warning("tool %s raised %s", name, type(e).__name__, exc_info=True)
            err = ToolFailed(f"tool {name!r} crashed ({type(e).__name__}); try another approach")
            outcome = ToolOutcome.failure(name, err, time.perf_counter() - start)
            return msgspec.structs.replace(outcome, server=server)
        structured = result.structured if isinstance(result, ToolResult) else None
        text = result.text if isinstance(result, ToolResult) else _as_text(result)
        text, truncated = truncate(text, ctx.settings.output_limit_chars)
        return ToolOutcome(
            tool=name, output=text, truncated=truncated, duration_s=time.perf_counter() - start,
            structured=structured, server=server,
        )


def _decode_args(t: Tool, arguments_json: str | bytes) -> Any:
    data = arguments_json.strip() or "{}"
    try:
        if t.args_type is None:
            decoded = msgspec.json.decode(data)
            return decoded if t.check_args is None else t.check_args(decoded)
        return msgspec.json.decode(data, type=t.args_type)
    except msgspec.ValidationError as e:
        raise ToolArgumentsInvalid(t.name, str(e)) from None
    except msgspec.DecodeError as e:
        raise ToolArgumentsInvalid(t.name, f"the arguments are not valid JSON ({e})") from None


async def _invoke(t: Tool, args: Any, ctx: ToolContext) -> Any:
    call_args = (args, ctx) if t.wants_context else (args,)
    if inspect.iscoroutinefunction(t.fn):
        return await t.fn(*call_args)
    return await anyio.to_thread.run_sync(t.fn, *call_args, abandon_on_cancel=True)


def _as_text(result: Any) -> str:
    if isinstance(result, str):
        return result
    if result is None:
        return ""
    return msgspec.json.encode(result).decode()


def truncate(text: str, limit: int) -> tuple[str, bool]:
    """Cut `text` to `limit` characters, saying how much was dropped."""
    if len(text) <= limit:
        return text, False
    dropped = len(text) - limit
    return f"{text[:limit]}\n…[truncated {dropped} characters]", True
