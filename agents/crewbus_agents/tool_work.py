"""The executor's way of working: the tool-calling loop, with records and approvals on the
bus so a redelivered or resumed step replays instead of repeating side effects."""

from __future__ import annotations

from collections.abc import Container
from typing import Any

from nats.js.kv import KeyValue

from crewbus.llm.adapter import LLMClient
from crewbus.llm.hint import ModelHint
from crewbus_agents.bus_hooks import BusToolHooks
from crewbus_agents.outcome import WorkOutcome
from crewbus_agents.tools import (
    ChatMessage,
    ChatReply,
    ReplayGuard,
    ToolCallRequest,
    ToolContext,
    ToolLoopLimits,
    ToolRegistry,
    ToolSettings,
    run_tool_loop,
)
from crewbus_agents.trace_scope import TraceScope
from crewbus_contracts import ApprovalRequest, StepOutput, StepRequest


class ToolWork:
    def __init__(
        self, llm: LLMClient, registry: ToolRegistry, settings: ToolSettings,
        records: KeyValue, tasks: KeyValue, active: KeyValue | None = None,
        finished: Container[str] = (),
    ) -> None:
        self.llm = llm
        self.registry = registry
        self.settings = settings
        self.records = records
        self.tasks = tasks
        self.active = active
        self.finished = finished

    async def run(
        self, request: StepRequest, system: str, user: str, hint: ModelHint, trace: TraceScope,
        *, llm: LLMClient | None = None, max_tool_calls: int | None = None,
        replay: ReplayGuard | None = None,
    ) -> WorkOutcome:
        """Run the step's tool loop with `llm` (the variant's model client; default the
        agent's) and its tool-call limit (default the tool settings'); with `replay`, under
        a replayed or shadow task's rules."""
        llm = llm or self.llm
        ctx = ToolContext.create(self.settings, request.task_id, request.step.id, request.round)
        limits = ToolLoopLimits(max_tool_calls=max_tool_calls or self.settings.max_tool_calls)
        hooks = BusToolHooks(self.records, self.tasks, request.task_id, request.approvals, trace,
                             replay_mode=replay.mode if replay else None,
                             active=self.active, finished=self.finished)
        observer = trace.chat_observer()
        cost: list[float | None] = []

        async def chat(messages: list[ChatMessage], tools: list[dict[str, Any]]) -> ChatReply:
            turn = await llm.chat(messages, tools or None, trace=observer, hint=hint)
            cost.append(turn.cost_usd)
            calls = [ToolCallRequest(id=c.id, name=c.name, arguments=c.arguments)
                     for c in turn.tool_calls]
            return ChatReply(content=turn.content, tool_calls=calls, usage=turn.usage)

        messages: list[ChatMessage] = [
            {"role": "system", "content": system},
            {"role": "user", "content": user},
        ]
        result = await run_tool_loop(chat, self.registry, ctx, messages, limits=limits,
                                     hooks=hooks, replay=replay)
        outcome = WorkOutcome(
            model=llm.settings.model,
            simulated=llm.simulated,
            usage=result.usage,
            cost_usd=None if None in cost else sum(c for c in cost if c is not None),
        )
        if result.stop_reason == "awaiting_approval" and result.pending is not None:
            pending = result.pending
            outcome.awaiting_approval = ApprovalRequest(
                call_key=pending.key, tool=pending.name, arguments=pending.request.arguments
            )
        elif result.answer is not None:
            outcome.value = StepOutput(content=result.answer)
        else:
            outcome.error = result.error or f"the tool loop ended: {result.stop_reason}"
        return outcome
