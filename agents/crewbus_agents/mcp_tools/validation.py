"""Arguments checked against a tool's input schema before the call leaves crewbus.

A server validates too, but its error arrives after a round trip (and from some servers,
as a crash). Checking here gives the model the same kind of message as a built-in tool's
invalid arguments, naming the field, and never sends the server what it did not declare.
The schema's own `$schema` picks the draft (2020-12 when absent, as MCP specifies).
"""

from __future__ import annotations

from typing import Any

import jsonschema
from jsonschema.exceptions import SchemaError
from jsonschema.protocols import Validator

from crewbus_agents.tools.errors import ToolArgumentsInvalid


class ArgumentsCheck:
    """The compiled check of one tool's `inputSchema`."""

    def __init__(self, tool: str, schema: dict[str, Any]) -> None:
        self.tool = tool
        cls = jsonschema.validators.validator_for(schema, default=jsonschema.Draft202012Validator)
        try:
            cls.check_schema(schema)
            self._validator: Validator | None = cls(schema)
        except SchemaError:
            self._validator = None  # a broken schema: the server alone judges the arguments

    def __call__(self, arguments: Any) -> dict[str, Any]:
        """`arguments` when they are an object the schema accepts; else ToolArgumentsInvalid."""
        if not isinstance(arguments, dict):
            raise ToolArgumentsInvalid(self.tool, "the arguments must be a JSON object")
        if self._validator is not None:
            error = jsonschema.exceptions.best_match(self._validator.iter_errors(arguments))
            if error is not None:
                where = "".join(f"[{p!r}]" if isinstance(p, int) else f".{p}"
                                for p in error.absolute_path)
                raise ToolArgumentsInvalid(self.tool, f"{error.message} - at `${where}`")
        return arguments
