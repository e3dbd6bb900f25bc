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

import msgspec
from nats.aio.msg import Msg
from nats.js import JetStreamContext

from crewbus.bus.codec import BadMessageError, decode, encode
from crewbus.bus.worker import RejectMessage, RetryLater, WorkerSpec, run_pull_worker
from crewbus.llm.adapter import LLMClient
from crewbus.llm.errors import LLMRequestError, LLMUnavailableError, OutputValidationError
from crewbus.telemetry import metrics
from crewbus_agents.roles import Agent, WrongRoleError
from crewbus_agents.settings import AgentSettings
from crewbus_contracts import (
    StepStarted,
    TokenUsage,
    WorkReport,
    WorkRequest,
    event_kind,
    subjects,
)
from crewbus_contracts.work import work_key

log = logging.getLogger(__name__)

_request_decoder: msgspec.json.Decoder[WorkRequest] = msgspec.json.Decoder(WorkRequest)


def worker_name(role: str) -> str:
    return f"{role}@{socket.gethostname()}:{os.getpid()}"


class AgentRuntime:
    def __init__(
        self, agent: Agent, js: JetStreamContext, llm: LLMClient, settings: AgentSettings
    ) -> None:
        self.agent = agent
        self.js = js
        self.llm = llm
        self.settings = settings
        self.name = worker_name(agent.role)

    async def run(self) -> None:
        spec = WorkerSpec(
            role=self.agent.role,
            stream=subjects.WORK_STREAM,
            consumer=subjects.worker_consumer(self.agent.role),
            dead_letter_subject=subjects.dead_letter(self.agent.role),
            max_deliver=self.settings.max_deliver,
            heartbeat_s=self.settings.heartbeat_s,
            concurrency=self.settings.concurrency,
        )
        await run_pull_worker(self.js, spec, self.handle, on_dead_letter=self._dead_lettered)

    async def handle(self, msg: Msg) -> None:
        try:
            request = decode(msg.data, _request_decoder)
            user_message = self.agent.user_message(request)
        except BadMessageError as exc:
            metrics.record_bad_input(exc.reply.code, msg.subject)
            raise RejectMessage(str(exc)) from exc
        except WrongRoleError as exc:
            metrics.record_bad_input("wrong_role", msg.subject)
            raise RejectMessage(str(exc)) from exc
        attempt = msg.metadata.num_delivered
        await self._started(request, attempt)
        started = time.monotonic()
        value: msgspec.Struct | None = None
        error: str | None = None
        cost: float | None = 0.0
        try:
            completion = await self.llm.structured(
                self.agent.prompt.text, user_message, self.agent.output_type
            )
            value, usage, model = completion.value, completion.usage, completion.model
            simulated, cost = completion.simulated, completion.cost_usd
        except OutputValidationError as exc:
            error = f"model reply did not validate: {exc}"
            usage, model, simulated = exc.usage, self.llm.settings.model, self.llm.simulated
        except LLMRequestError as exc:
            error = f"model request refused: {exc}"
            usage, model, simulated = TokenUsage(), self.llm.settings.model, self.llm.simulated
        except LLMUnavailableError as exc:
            raise RetryLater(str(exc)) from exc
        report = WorkReport(
            role=self.agent.role,
            model=model,
            prompt_version=self.agent.prompt.version,
            simulated_model=simulated,
            usage=usage,
            duration_s=time.monotonic() - started,
            worker=self.name,
            attempt=attempt,
            cost_usd=cost,
        )
        await self._publish_result(request, report, value, error)

    async def _publish_result(
        self, request: WorkRequest, report: WorkReport,
        value: msgspec.Struct | None, error: str | None,
    ) -> None:
        result = self.agent.result(request, report, value, error)
        msg_id = f"{request.task_id}:{request.round}:{work_key(request)}:result"
        metrics.record_bus_message(subjects.results(request.task_id), "out")
        await self.js.publish(
            subjects.results(request.task_id),
            encode(result),
            stream=subjects.RESULTS_STREAM,
            headers={"Nats-Msg-Id": msg_id},
        )

    async def _started(self, request: WorkRequest, attempt: int) -> None:
        event = StepStarted(
            task_id=request.task_id, round=request.round, step_id=work_key(request),
            role=self.agent.role, worker=self.name, attempt=attempt, at=time.time(),
        )
        try:
            await self.js.publish(
                subjects.events(request.task_id, event_kind(event)),
                encode(event),
                stream=subjects.EVENTS_STREAM,
            )
        except Exception as exc:  # progress is best effort; the work itself is not
            log.warning("could not publish step_started: %s", exc)

    async def _dead_lettered(self, msg: Msg, reason: str) -> None:
        """Tell the orchestrator the step is lost, so the task fails with this reason."""
        try:
            request = decode(msg.data, _request_decoder)
        except BadMessageError:
            return
        report = WorkReport(
            role=self.agent.role, model=self.llm.settings.model,
            prompt_version=self.agent.prompt.version, simulated_model=self.llm.simulated,
            usage=TokenUsage(), duration_s=0.0, worker=self.name,
            attempt=msg.metadata.num_delivered,
        )
        await self._publish_result(request, report, None, reason)
