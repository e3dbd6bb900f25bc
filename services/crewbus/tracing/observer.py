"""`chat <model>` spans from the LLM adapter's turns, written as each turn ends."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from crewbus.tracing.draft import SpanDraft, SpanPlace
from crewbus.tracing.tracer import Tracer
from crewbus_contracts.traces import AttributeValue

if TYPE_CHECKING:
    from crewbus.llm.adapter import TurnRecord


class ChatSpanObserver:
    """A `TurnObserver`: pass as `trace=` to `LLMClient.structured()` / `chat()`.

    Every HTTP turn becomes one span at `place` (under the agent's `invoke_agent` span),
    rejected replies and failed calls included, so a trace shows why a retry happened.
    """

    def __init__(
        self, tracer: Tracer, place: SpanPlace, prompt_version: str | None = None
    ) -> None:
        self.tracer = tracer
        self.place = place
        self.prompt_version = prompt_version

    async def on_turn(self, record: TurnRecord) -> None:
        context, parent_id = self.place.ids()
        error = record.error or (
            f"reply did not validate: {record.validation_error}"
            if record.validation_error
            else None
        )
        await self.tracer.write(SpanDraft(
            name=f"chat {record.request_model}",
            kind="chat",
            task_id=self.place.task_id,
            context=context,
            parent_span_id=parent_id,
            start=record.started_at,
            end=record.started_at + record.duration_s,
            round=self.place.round,
            step_id=self.place.step_id,
            status="error" if error else "ok",
            error=error,
            attributes=self._attributes(record),
            input=_input(record),
            output=_output(record),
        ))

    def _attributes(self, record: TurnRecord) -> dict[str, AttributeValue]:
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": "chat",
            "gen_ai.provider.name": record.provider,
            "gen_ai.agent.name": record.agent,
            "gen_ai.request.model": record.request_model,
            "gen_ai.response.model": record.response_model,
            "gen_ai.usage.input_tokens": record.usage.input_tokens,
            "gen_ai.usage.output_tokens": record.usage.output_tokens,
            "gen_ai.response.finish_reasons": record.finish_reason,
            "crewbus.cost_usd": record.cost_usd,
            "crewbus.prompt_version": self.prompt_version,
            "crewbus.attempt": record.attempt,
            "crewbus.simulated": record.simulated,
            "crewbus.output_type": record.output_type,
            "crewbus.time_to_first_token_s": record.time_to_first_token_s,
            "error.type": record.error_type or ("validation" if record.validation_error else None),
        }
        return {k: v for k, v in attributes.items() if v is not None}


def _input(record: TurnRecord) -> dict[str, Any]:
    data: dict[str, Any] = {"messages": record.messages}
    if record.tools:
        data["tools"] = record.tools
    return data


def _output(record: TurnRecord) -> dict[str, Any] | None:
    if record.error is not None:
        return None
    data: dict[str, Any] = {"content": record.content}
    if record.tool_calls:
        data["tool_calls"] = [
            {"id": c.id, "name": c.name, "arguments": c.arguments} for c in record.tool_calls
        ]
    if record.validation_error is not None:
        data["validation_error"] = record.validation_error
    return data
