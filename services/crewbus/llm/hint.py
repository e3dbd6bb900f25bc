"""What crewbus tells the simulated model on purpose, so that it never reads a prompt.

A real model reads the prompt. The simulated one must not: if it picked the task out of
the prompt's wording, rewording a prompt would silently change what it answers. So every
request to the simulated model carries two headers:

    X-Crewbus-Agent: researcher        the agent's role (sent to every server, as always;
                                       `SimulatedModel.script(role, ...)` keys on it)
    X-Crewbus-Hint:  {"output":"StepOutput","task":"...","step":"r1","instruction":"..."}

The hint carries only what the agent shows the model anyway (the task, the step, the
outputs of the steps it depends on, the recalled memories), never anything a real model
would not see: an evaluation's expected answer, for one, never reaches it.

`X-Crewbus-Hint` is a `ModelHint` as compact JSON with every non-ASCII character escaped,
so it is always a valid header value. It is sent only when the client talks to the
simulated model (`LLMClient.simulated`): a real server never sees it, so nothing about a
task goes into a header that proxies may log, and no API key or setting is ever in it.
"""

from __future__ import annotations

import json

import msgspec

HINT_HEADER = "X-Crewbus-Hint"


class ShownMemory(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """A recalled memory as the prompt shows it to the model."""

    id: str
    kind: str = ""
    """`document`, `finding`, `task`, ... (`crewbus_contracts.memory.MemoryKind`)."""
    text: str = ""


class ModelHint(msgspec.Struct, kw_only=True, frozen=True, omit_defaults=True):
    """The work behind one model request. Every field is optional and empty when unknown;
    a reader ignores fields it does not know."""

    output: str = ""
    """The contract `structured()` asks for (`Plan`, `StepOutput`, `Critique`, ...), set
    by the LLM adapter; empty for a raw `chat()` turn."""
    task: str = ""
    """The task's text, as the user submitted it."""
    step: str = ""
    """The step's id, for a researcher's or an executor's step."""
    instruction: str = ""
    """The step's instruction."""
    inputs: tuple[str, ...] = ()
    """The ids of the steps whose outputs the prompt shows."""
    input_texts: tuple[str, ...] = ()
    """Those steps' outputs, as the prompt shows them, in the order of `inputs`."""
    memory: tuple[str, ...] = ()
    """The ids of the recalled memories the prompt shows, in the order shown."""
    memories: tuple[ShownMemory, ...] = ()
    """Those memories as the prompt shows them (id, kind, text), in the order of `memory`."""

    def header_value(self) -> str:
        return json.dumps(msgspec.to_builtins(self), ensure_ascii=True, separators=(",", ":"))


def read_hint(value: str | None) -> ModelHint | None:
    """The hint in a header value (None when there is none); raises `msgspec.DecodeError`
    (or its `ValidationError`) when the value is not a hint."""
    if value is None:
        return None
    return msgspec.json.decode(value, type=ModelHint)
