"""The runtime every agent replica runs: take work from the role's durable consumer, ask the
model, publish the result durably, then ack.

Replicas of a role share one durable consumer, so starting another replica is the whole of
scaling. A model reply that never validates fails the step with the validation error; an
unreachable model is retried by redelivery, and the last failed delivery is dead-lettered
with a failed result so the orchestrator can say why.
"""

from __future__ import annotations

import logging
import os
import socket
import time
from contextlib import AbstractAsyncContextManager, nullcontext
from dataclasses import dataclass
from typing import Any

import anyio
import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from crewbus.bus.codec import BadMessageError, decode, encode
from crewbus.bus.connection import core_client
from crewbus.bus.kv_open import open_bucket
from crewbus.bus.publish import publish_retrying
from crewbus.bus.worker import RejectMessage, RetryLater, WorkerSpec, run_pull_worker
from crewbus.llm.adapter import LLMClient
from crewbus.llm.errors import LLMRequestError, LLMUnavailableError, OutputValidationError
from crewbus.llm.hint import ModelHint
from crewbus.memory.client import MemoryClient
from crewbus.telemetry import metrics
from crewbus.telemetry.tracecontext import TraceContext
from crewbus.tracing import Tracer, context_from_headers, round_context
from crewbus.tracing.tracer import ActiveSpan
from crewbus.variants import (
    ResolvedRole,
    VariantResolver,
    VariantsError,
    open_resolver,
)
from crewbus.variants.seed import seed_packaged_prompts
from crewbus_agents.finished import FinishedTasks
from crewbus_agents.model_clients import ModelClients
from crewbus_agents.outcome import WorkOutcome
from crewbus_agents.recall import Recall, memory_search_fn
from crewbus_agents.recording import Recordings, ReplayRecall
from crewbus_agents.roles import Role, WrongRoleError
from crewbus_agents.settings import AgentSettings
from crewbus_agents.tool_work import ToolWork
from crewbus_agents.tools import (
    ReplayGuard,
    ToolSettings,
    ToolSource,
    ToolUnavailable,
    default_registry,
)
from crewbus_agents.tools.sandbox import announce_sandbox
from crewbus_agents.trace_scope import TraceScope
from crewbus_contracts import (
    PlanResult,
    StepRequest,
    StepResult,
    StepStarted,
    TokenUsage,
    WorkReport,
    WorkRequest,
    event_kind,
    subjects,
)
from crewbus_contracts.traces import AttributeValue
from crewbus_contracts.work import result_for, work_key

log = logging.getLogger(__name__)

_request_decoder: msgspec.json.Decoder[WorkRequest] = msgspec.json.Decoder(WorkRequest)


def worker_name(role: str) -> str:
    return f"{role}@{socket.gethostname()}:{os.getpid()}"


@dataclass(frozen=True, slots=True)
class WorkSetup:
    """How one piece of work is served under its task's variant: the prompt and its
    version, and the model client (endpoint, model, temperature) to ask."""

    resolved: ResolvedRole
    llm: LLMClient


class AgentRuntime:
    """Runs one role; what the role does is its hooks' (`roles/base.py`)."""

    def __init__(
        self, role: Role[Any], js: JetStreamContext, llm: LLMClient, settings: AgentSettings,
        tool_work: ToolWork | None = None, finished: FinishedTasks | None = None,
        recall: Recall | None = None, tracer: Tracer | None = None,
        *, resolver: VariantResolver,
    ) -> None:
        self.role = role
        self.js = js
        self.llm = llm
        self.clients = ModelClients(llm, settings.model_endpoints)
        """One client per (endpoint, model) that the variants name; `llm` for the rest."""
        self.resolver = resolver
        self.settings = settings
        self.tool_work = tool_work
        self.finished = finished or FinishedTasks()
        self.recall = recall or Recall(None)
        self.tracer = tracer
        self.recordings = Recordings(js)
        """The recorded tasks replayed tasks are served from (their traces)."""
        self.name = worker_name(role.name)

    async def run(self) -> None:
        spec = WorkerSpec(
            role=self.role.name,
            stream=subjects.WORK_STREAM,
            consumer=subjects.worker_consumer(self.role.name),
            dead_letter_subject=subjects.dead_letter(self.role.name),
            max_deliver=self.settings.max_deliver,
            heartbeat_s=self.settings.heartbeat_s,
            concurrency=self.settings.concurrency,
        )
        try:
            async with anyio.create_task_group() as tg:
                await tg.start(self.resolver.watch)
                await run_pull_worker(self.js, spec, self.handle,
                                      on_dead_letter=self._dead_lettered)
                tg.cancel_scope.cancel()
        finally:
            with anyio.CancelScope(shield=True):
                await self.clients.aclose()

    async def handle(self, msg: Msg) -> None:
        try:
            request: WorkRequest = self.role.accept(decode(msg.data, _request_decoder))
            user_message = self.role.user_message(request)
        except BadMessageError as exc:
            metrics.record_bad_input(exc.reason, msg.subject)
            raise RejectMessage(str(exc)) from exc
        except WrongRoleError as exc:
            metrics.record_bad_input("wrong_role", msg.subject)
            raise RejectMessage(str(exc)) from exc
        if request.task_id in self.finished:
            return  # cancelled or finished: the work would be thrown away
        attempt = msg.metadata.num_delivered
        try:
            setup = await self._setup(request)
        except VariantsError as exc:  # never served with another variant's prompt instead
            await self._refuse(request, attempt, f"variant {request.variant!r}: {exc}")
            return
        await self._started(request, attempt)
        started = time.monotonic()
        parent = context_from_headers(msg.headers) or round_context(request.task_id,
                                                                     request.round)
        # The work's spans go out as one message when it ends, before its result: whoever
        # reads the trace once the task is done finds them (one connection keeps order).
        async with self.tracer.batch() if self.tracer is not None else nullcontext():
            outcome = await self._traced_work(request, setup, user_message, parent, attempt)
        report = WorkReport(
            role=self.role.name,
            model=outcome.model,
            prompt_version=setup.resolved.prompt_version,
            simulated_model=outcome.simulated,
            usage=outcome.usage,
            duration_s=time.monotonic() - started,
            worker=self.name,
            attempt=attempt,
            cost_usd=outcome.cost_usd,
        )
        await self._publish_result(request, report, outcome)

    async def _setup(self, request: WorkRequest) -> WorkSetup:
        """What the task's variant serves this role's work with (raises VariantsError)."""
        resolved = await self.resolver.resolve(request.variant, self.role.name)
        return WorkSetup(resolved, self.clients.for_work(resolved))

    async def _traced_work(
        self, request: WorkRequest, setup: WorkSetup, user_message: str, parent: TraceContext,
        attempt: int,
    ) -> WorkOutcome:
        """Recall, ask the model, then the role's after-work hook, all inside the
        `invoke_agent` span. A replayed or shadow task recalls and calls tools under its
        replay rules (`ReplayRecall`, `ReplayGuard`)."""
        step_id = work_key(request)
        recall, guard = self.recall, None
        if request.replay is not None:
            recording = await self.recordings.of(request.replay)
            recall = ReplayRecall(self.recall.memory, recording, request.replay)
            guard = ReplayGuard(request.replay.mode, recording.calls, request.replay.live_tools)
        async with self._span(request, setup, step_id, parent, attempt) as span:
            trace = TraceScope(self.tracer, span.context if span else None, request, step_id,
                               setup.resolved.prompt_version)
            recalled = await self.role.recall(request, recall, trace)
            if recalled.text:
                user_message = f"{user_message}\n\n{recalled.text}"
            hint = self.role.hint(request, recalled)
            outcome = await self._work(request, setup, user_message, hint, trace, guard)
            await self.role.after_work(request, outcome, recalled, recall)
            if span is not None:
                span.set_input({"system": setup.resolved.prompt_text, "user": user_message})
                span.set_output(msgspec.to_builtins(outcome.value) if outcome.value else None)
                if outcome.repairs:
                    span.set_attributes({"crewbus.degraded": "plan_repaired",
                                         "crewbus.repairs": "; ".join(outcome.repairs),
                                         "crewbus.repair_count": len(outcome.repairs)})
                if outcome.error:
                    span.set_error(outcome.error)
        return outcome

    def _span(
        self, request: WorkRequest, setup: WorkSetup, step_id: str, parent: TraceContext,
        attempt: int,
    ) -> AbstractAsyncContextManager[ActiveSpan | None]:
        """The `invoke_agent <role>` span around one piece of work (none without a tracer)."""
        if self.tracer is None:
            return nullcontext()
        resolved = setup.resolved
        attributes: dict[str, AttributeValue] = {
            "gen_ai.operation.name": "invoke_agent",
            "gen_ai.agent.name": self.role.name,
            "gen_ai.request.model": setup.llm.settings.model,
            "crewbus.variant": resolved.variant,
            "crewbus.prompt_version": resolved.prompt_version,
            "crewbus.prompt_name": resolved.prompt_name,
            "crewbus.prompt_sha256": resolved.prompt_sha256,
            "crewbus.worker": self.name,
            "crewbus.attempt": attempt,
        }
        if request.replay is not None:
            attributes["crewbus.replay.mode"] = request.replay.mode
            attributes["crewbus.replay.source_task"] = request.replay.source_task_id
        return self.tracer.span(
            f"invoke_agent {self.role.name}", "agent", parent=parent,
            task_id=request.task_id, round=request.round, step_id=step_id,
            attributes=attributes,
        )

    async def _work(
        self, request: WorkRequest, setup: WorkSetup, user_message: str, hint: ModelHint,
        trace: TraceScope, replay: ReplayGuard | None = None,
    ) -> WorkOutcome:
        """Ask the model (through the tool loop for tool users); raise only to retry."""
        llm = setup.llm
        model, simulated = llm.settings.model, llm.simulated
        system = setup.resolved.prompt_text
        try:
            if self.tool_work is not None and isinstance(request, StepRequest):
                return await self.tool_work.run(request, system, user_message, hint, trace,
                                                llm=llm,
                                                max_tool_calls=setup.resolved.max_tool_calls,
                                                replay=replay)
            completion = await llm.structured(
                system, user_message, self.role.output_type, trace=trace.chat_observer(),
                repair=self.role.repair(request), hint=hint,
            )
        except OutputValidationError as exc:
            return WorkOutcome(model, simulated, error=f"model reply did not validate: {exc}",
                               usage=exc.usage)
        except LLMRequestError as exc:
            return WorkOutcome(model, simulated, error=f"model request refused: {exc}")
        except LLMUnavailableError as exc:
            raise RetryLater(str(exc)) from exc
        except ToolUnavailable as exc:  # an MCP server is restarting: try the step later
            raise RetryLater(f"{exc}; the step will be retried") from exc
        return WorkOutcome(
            completion.model, completion.simulated, value=completion.value,
            usage=completion.usage, cost_usd=completion.cost_usd, repairs=completion.repairs,
        )

    async def _publish_result(
        self, request: WorkRequest, report: WorkReport, outcome: WorkOutcome
    ) -> None:
        result = result_for(request, report, outcome.value, outcome.error)
        if isinstance(result, StepResult) and outcome.awaiting_approval is not None:
            result.awaiting_approval = outcome.awaiting_approval
        if isinstance(result, PlanResult):
            result.repairs = outcome.repairs
        msg_id = f"{request.task_id}:{request.round}:{work_key(request)}:result"
        if isinstance(request, StepRequest) and request.approvals:
            msg_id += f":{len(request.approvals)}"  # a resumed step answers anew
        metrics.record_bus_message(subjects.results(request.task_id), "out")
        await publish_retrying(
            self.js, subjects.results(request.task_id), encode(result),
            stream=subjects.RESULTS_STREAM, msg_id=msg_id,
            within_s=self.settings.publish_retry_s,
        )

    async def _started(self, request: WorkRequest, attempt: int) -> None:
        event = StepStarted(
            task_id=request.task_id, round=request.round, step_id=work_key(request),
            role=self.role.name, worker=self.name, attempt=attempt, at=time.time(),
        )
        try:
            # Progress is best effort: published without waiting for JetStream's ack.
            await core_client(self.js).publish(
                subjects.events(request.task_id, event_kind(event)), encode(event)
            )
        except Exception as exc:
            log.warning("could not publish step_started: %s", exc)

    async def _dead_lettered(self, msg: Msg, reason: str) -> None:
        """Tell the orchestrator the step is lost, so the task fails with this reason."""
        try:
            request = decode(msg.data, _request_decoder)
        except BadMessageError:
            return
        try:
            version = (await self._setup(request)).resolved.prompt_version
        except Exception:  # the variant is gone, or the bus is: the step failed anyway
            version = ""
        await self._refuse(request, msg.metadata.num_delivered, reason, version)

    async def _refuse(
        self, request: WorkRequest, attempt: int, reason: str, prompt_version: str = ""
    ) -> None:
        """Publish a failed result for work that was not (or could not be) done."""
        report = WorkReport(
            role=self.role.name, model=self.llm.settings.model,
            prompt_version=prompt_version, simulated_model=self.llm.simulated,
            usage=TokenUsage(), duration_s=0.0, worker=self.name, attempt=attempt,
        )
        outcome = WorkOutcome(self.llm.settings.model, self.llm.simulated, error=reason)
        await self._publish_result(request, report, outcome)


async def build_agent_runtime(
    role: Role[Any], js: JetStreamContext, llm: LLMClient, settings: AgentSettings,
    tool_settings: ToolSettings, memory: MemoryClient | None = None,
    tracer: Tracer | None = None, tool_sources: tuple[ToolSource, ...] = (),
) -> AgentRuntime:
    """The runtime for `role`, with the tool loop and its bus records when it uses tools
    (the built-in tools, and those of `tool_sources`, such as MCP servers), serving every
    variant; the role's packaged prompt is stored first if it is new."""
    resolver = await open_resolver(js)
    await seed_packaged_prompts(resolver.prompts, (role.name,))
    finished = FinishedTasks()
    await finished.listen(core_client(js))
    tool_work = None
    if role.uses_tools:
        # Consistent: a record missed on a lagging replica would make a call made twice.
        records = await open_bucket(js, subjects.TOOL_RECORDS_KV, consistent=True)
        tasks = await js.key_value(subjects.TASKS_KV)  # direct: only cancellations read it
        active = await js.key_value(subjects.ACTIVE_KV)  # direct: the cancel check's first look
        search = memory_search_fn(memory) if memory is not None else None
        announce_sandbox(tool_settings)
        registry = default_registry(tool_settings, search)
        for source in tool_sources:
            registry.add_source(source)
        tool_work = ToolWork(llm, registry, tool_settings, records, tasks, active, finished)
    return AgentRuntime(role, js, llm, settings, tool_work=tool_work, finished=finished,
                        recall=Recall(memory), tracer=tracer, resolver=resolver)
