"""The executor: does a step that computes, writes or transforms, producing the
deliverable, through the tool-calling loop (calculator, files, sandboxed Python, HTTP,
memory search; `crewbus_agents/tools/`).

Its prompt is `prompts/executor.md`.
"""

from __future__ import annotations

from crewbus_agents.roles.step import StepAgent


class Executor(StepAgent):
    name = "executor"
    prompt_file = "executor.md"
    uses_tools = True
