"""The orchestrator service: consumes submissions and agent results, applies the decisions.

Every input is handled as read state -> decide -> save the state with the decision's
publications (its outbox, checked against the revision read) -> publish them -> clear
the outbox -> ack. A decision that loses its revision race publishes nothing; it is made
again on the fresh state. A crash after the save loses nothing: the next decision on
the task publishes the outbox it finds first (JetStream de-duplicates by `Nats-Msg-Id`).
Any replica can continue any task: nothing about a task lives in this process.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import time
from collections.abc import AsyncIterator, Callable
from typing import Protocol

import anyio
import msgspec
from anyio.abc import TaskStatus
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.kv import KeyValue

from crewbus.bus.codec import BadMessageError, decode, encode
from crewbus.bus.kv_keys import bucket_values
from crewbus.bus.kv_open import open_bucket
from crewbus.bus.publish import publish_retrying
from crewbus.bus.replies import answer
from crewbus.bus.worker import (
    RejectMessage,
    RetryLater,
    WorkerSpec,
    publish_dead_letter,
    run_pull_worker,
)
from crewbus.memory.client import MemoryClient
from crewbus.orchestrator import decisions
from crewbus.orchestrator.actions import Action, Dispatch, Emit
from crewbus.orchestrator.settings import OrchestratorSettings
from crewbus.orchestrator.task_memory import TaskMemory
from crewbus.orchestrator.trace_spans import write_decision_spans
from crewbus.taskstore import StaleStateError, TaskStore
from crewbus.telemetry import metrics
from crewbus.telemetry.queue_collector import QueueCollector
from crewbus.tracing import Tracer, round_context, trace_headers
from crewbus_contracts import (
    ApprovalDecision,
    CancelTask,
    ControlAccepted,
    ControlCommand,
    ErrorReply,
    ResolveApproval,
    StepFinished,
    SubmitTask,
    TaskCompleted,
    TaskCritiqued,
    TaskFailed,
    TaskPlanned,
    TaskReplanned,
    TaskState,
    TokenUsage,
    WorkReport,
    WorkRequest,
    WorkResult,
    event_kind,
    subjects,
)
from crewbus_contracts.work import result_for

log = logging.getLogger(__name__)

Decide = Callable[[TaskState], list[Action]]

_submit_decoder = msgspec.json.Decoder(SubmitTask)
_control_decoder = msgspec.json.Decoder(ControlCommand)
_result_decoder: msgspec.json.Decoder[WorkResult] = msgspec.json.Decoder(WorkResult)
_request_decoder: msgspec.json.Decoder[WorkRequest] = msgspec.json.Decoder(WorkRequest)


class Shadow(Protocol):
    """The orchestrator's part of the shadow run (`crewbus.replay.shadow.Shadow`, given by
    the bootstrap): told of every task started and finished, it never fails a decision."""

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED
                  ) -> None: ...

    async def task_started(self, state: TaskState) -> None: ...

    def task_finished(self, state: TaskState) -> None: ...


OUTBOX_RECOVERY_S = 5.0
"""How soon the sweep looks at a task after a control command, in case its replica died."""
ACTIVE_MARKER_TTL_S = 2.0
"""How long the purge marker of a finished task's index key lasts before the server removes
it. Nothing needs the marker itself: the sweep and the listings read the bucket afresh
each time (a missing key is a finished task), and the sweep reads the task's state before
acting on a timer. It only has to outlive the reads in flight when it is written, so that
one pass does not see a message vanish while delivering (milliseconds; `bucket_values`
bounds a stalled pass). Each second it lasts costs one delivery per sweep pass per
orchestrator replica, so it is short: 2 s, twice the server's minimum (the `Nats-TTL`
header is whole seconds, and the server expires on a timer of its own)."""
OUTBOX_CLEAR_DELAY_S = 0.5
"""How long a published outbox of an unfinished task may wait for this replica's next
decision on the task, which drops it in its own save, before a write of its own clears it."""


class Orchestrator:
    def __init__(
        self, nc: NATS, js: JetStreamContext, settings: OrchestratorSettings,
        tasks_kv: KeyValue, active_kv: KeyValue, tracer: Tracer | None = None,
        shadow: Shadow | None = None, memory: MemoryClient | None = None,
    ) -> None:
        self.nc = nc
        self.js = js
        self.settings = settings
        self.store = TaskStore(tasks_kv)
        self.active = active_kv
        self.task_memory = TaskMemory(memory or MemoryClient(nc, timeout_s=5))
        self.tracer = tracer
        self.redact = tracer.redact if tracer is not None else (lambda value: value)
        self._published: dict[str, tuple[int, TaskState, float]] = {}
        """Task -> (revision, state, when): the outbox saved at that revision was published
        by this replica and is not cleared yet (see `_publish_outbox`)."""
        self._locks: dict[str, anyio.Lock] = {}
        """Task -> its decision lock, while a decision holds or awaits it (`_deciding`)."""
        self.shadow = shadow
        """Starts twins of sampled live tasks and records both as they end (`crewbus shadow`)."""

    @classmethod
    async def create(
        cls, nc: NATS, js: JetStreamContext, settings: OrchestratorSettings,
        tracer: Tracer | None = None, shadow: Shadow | None = None,
        memory: MemoryClient | None = None,
    ) -> Orchestrator:
        # Consistent: a fresh read confirms "nothing to do" before an input is dropped.
        tasks_kv = await open_bucket(js, subjects.TASKS_KV, consistent=True)
        active_kv = await open_bucket(js, subjects.ACTIVE_KV)
        return cls(nc, js, settings, tasks_kv, active_kv, tracer, shadow, memory)

    async def run(self, *, task_status: TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        """Take submissions, results and control commands until cancelled. Submissions
        reach the TASKS stream through the gateway, which is not part of this: whoever
        runs an orchestrator starts one beside it (`crewbus.gateway.start_gateway`)."""
        await self.nc.subscribe(subjects.CONTROL, queue=subjects.CONTROL_QUEUE, cb=self._on_control)
        await self.nc.subscribe(
            subjects.MAX_DELIVERIES_ADVISORY, queue=subjects.ADVISORY_QUEUE,
            cb=self._on_max_deliveries,
        )
        await self.nc.flush()
        async with anyio.create_task_group() as tg:
            if self.shadow is not None:
                await tg.start(self.shadow.run)
            task_status.started()
            tg.start_soon(self._consume, subjects.ORCHESTRATOR_TASKS_CONSUMER,
                          subjects.TASKS_STREAM, self._on_submission)
            tg.start_soon(self._consume, subjects.ORCHESTRATOR_RESULTS_CONSUMER,
                          subjects.RESULTS_STREAM, self._on_result)
            tg.start_soon(self._sweep_deadlines)
            tg.start_soon(self._clear_published_outboxes)
            tg.start_soon(QueueCollector(self.js, interval_s=self.settings.queue_sample_s).run)

    async def _consume(self, consumer: str, stream: str, handler: Callable[[Msg], object]) -> None:
        spec = WorkerSpec(
            role="orchestrator",
            stream=stream,
            consumer=consumer,
            dead_letter_subject=subjects.dead_letter("orchestrator"),
            max_deliver=self.settings.orchestrator_max_deliver,
            heartbeat_s=self.settings.heartbeat_s,
            concurrency=self.settings.concurrency,
        )
        await run_pull_worker(self.js, spec, handler)  # type: ignore[arg-type]

    # -- inputs -------------------------------------------------------------------------

    async def _on_submission(self, msg: Msg) -> None:
        task_id = msg.subject.rsplit(".", 1)[-1]
        try:
            submit = decode(msg.data, _submit_decoder)
        except BadMessageError as exc:
            metrics.record_bad_input(exc.reason, msg.subject)
            raise RejectMessage(exc.reply.message) from exc
        # No read first: the create fails if the task exists (the gateway stores a task id
        # once within the dedupe window, so a first delivery is almost always new).
        first = msg.metadata.num_delivered <= 1
        if not first and await self.store.get(task_id) is not None:
            await self._started_already(task_id)
            return
        state, actions = decisions.start_task(task_id, submit, time.time())
        state.outbox = self._redacted(state, actions)
        # Indexed first, so the sweep knows every stored task (it ignores unknown ones).
        await self.active.put(task_id, str(decisions.next_timer(state)).encode())
        revision = await self.store.create(state)
        if revision is None:
            await self._started_already(task_id, reindex=first)
            return
        await self._publish_outbox(state, revision)
        if self.shadow is not None:
            await self.shadow.task_started(state)

    async def _started_already(self, task_id: str, reindex: bool = False) -> None:
        """A submission of a task stored before (a redelivery, or a resubmission past the
        dedupe window): publish whatever its start left unpublished, if its replica died
        before it could. `reindex`: the index entry just written was the new start's
        timer, so put back the task's own (or take it out, if finished)."""
        state = await self.update(task_id, lambda _state: [])
        if not reindex:
            return
        if state is None or state.is_final:
            await self._forget_active(task_id)
        else:
            await self.active.put(task_id, str(decisions.next_timer(state)).encode())

    async def _on_result(self, msg: Msg) -> None:
        try:
            result = decode(msg.data, _result_decoder)
        except BadMessageError as exc:
            metrics.record_bad_input(exc.reason, msg.subject)
            raise RejectMessage(exc.reply.message) from exc
        state = await self.update(
            result.task_id, lambda s: decisions.apply_result(s, result, time.time())
        )
        if state is None:
            # Not stored yet (or not any more): keep the result and look again later.
            raise RetryLater(f"no state for task {result.task_id} yet")

    async def update(self, task_id: str, decide: Decide) -> TaskState | None:
        """Read, decide, save the decision with its outbox, publish it; on a lost race read
        again and decide again. None when the task is not stored.

        An outbox left by an earlier decision (its replica died, or is still publishing)
        is carried into this decision's outbox and published again with it: JetStream drops
        the copies that already arrived, and what is published keeps the decisions' order.
        The first read may come from this replica's cache. Deciding on it is safe: a save
        names the revision read, and "nothing to do" is confirmed on a fresh read before
        the input is dropped (another replica may have moved the task on).
        """
        async with self._deciding(task_id):
            return await self._update(task_id, decide)

    @contextlib.asynccontextmanager
    async def _deciding(self, task_id: str) -> AsyncIterator[None]:
        """One decision at a time per task in this replica. Two results of one task handled
        at once (parallel steps finish together) would both read one revision and one lose
        the save: a failed write, a read, and its outbox carried and published again.
        Waiting for the other costs less, and replicas still race by revision as before."""
        lock = self._locks.get(task_id)
        if lock is None:
            lock = self._locks[task_id] = anyio.Lock()
        try:
            async with lock:
                yield
        finally:
            # A release hands the lock to the next waiter, so free and unawaited means no
            # decision of this task holds or awaits it.
            if not lock.locked() and not lock.statistics().tasks_waiting:
                self._locks.pop(task_id, None)

    async def _update(self, task_id: str, decide: Decide) -> TaskState | None:
        cached = True
        while True:
            found = await self.store.get(task_id, cached=cached)
            if found is None:
                return None
            state, revision = found
            timer_before = decisions.next_timer(state)
            carried = [] if self._published_at(task_id) == revision else list(state.outbox)
            actions = decide(state)
            if not actions and (cached or not carried):
                if cached:
                    cached = False
                    continue
                return state
            if actions:
                actions = self._redacted(state, actions)
                state.outbox = [*carried, *actions]
                try:
                    revision = await self.store.save(state, revision)
                except StaleStateError:
                    cached = False
                    continue
            if not await self._publish_outbox(state, revision) and not actions:
                cached = False  # someone else moved the task on: decide on their state
                continue
            await self._after_decision(state, actions, timer_before)
            return state

    def _redacted(self, state: TaskState, actions: list[Action]) -> list[Action]:
        """Secrets masked in the events and in the task's outcome, before either is saved:
        the outbox then holds exactly what is published, and events equal the state."""
        if state.result is not None:
            state.result = self.redact(state.result)
        if state.error is not None:
            state.error = self.redact(state.error)
        return [Emit(self.redact(a.event), a.msg_id) if isinstance(a, Emit) else a
                for a in actions]

    async def _publish_outbox(self, state: TaskState, revision: int) -> bool:
        """Publish the saved outbox, then clear it; False when the clear lost its race
        (harmless: the winner carried the outbox forward or published it).

        An unfinished task's clear waits a moment (`OUTBOX_CLEAR_DELAY_S`): this replica's
        next decision on the task, usually a few milliseconds away, knows the outbox was
        published and saves its own without it, so one KV write per decision is saved.
        Another replica that reads the uncleared outbox first publishes it again, which
        JetStream drops as a duplicate. A final state is cleared at once: nothing follows.
        """
        await self._publish(state.outbox)
        if not state.is_final:
            self._published[state.task_id] = (revision, state, time.monotonic())
            return True
        self._published.pop(state.task_id, None)
        state.outbox = []
        try:
            await self.store.save(state, revision)
        except StaleStateError:
            return False
        return True

    def _published_at(self, task_id: str) -> int | None:
        """The revision whose outbox this replica published and has not cleared yet."""
        found = self._published.get(task_id)
        return found[0] if found is not None else None

    async def _clear_published_outboxes(self) -> None:
        """Clear the published outboxes that no next decision has dropped within the delay
        (and all of them on the way out)."""
        try:
            while True:
                await anyio.sleep(OUTBOX_CLEAR_DELAY_S / 2)
                await self._clear_outboxes(time.monotonic() - OUTBOX_CLEAR_DELAY_S)
        finally:
            with anyio.CancelScope(shield=True), anyio.move_on_after(2.0):
                await self._clear_outboxes(float("inf"))

    async def _clear_outboxes(self, published_before: float) -> None:
        due = [(task_id, entry) for task_id, entry in self._published.items()
               if entry[2] <= published_before]
        for task_id, (revision, state, at) in due:
            if self._published.get(task_id) != (revision, state, at):
                continue  # a newer decision of this replica took its place meanwhile
            del self._published[task_id]
            try:
                await self.store.save(msgspec.structs.replace(state, outbox=[]), revision)
            except StaleStateError:
                pass  # moved on since: the next decision carried or dropped the outbox
            except Exception as exc:
                log.debug("clearing the outbox of %s: %s", task_id, exc)

    async def _after_decision(
        self, state: TaskState, actions: list[Action], timer_before: float
    ) -> None:
        """Metrics, spans, the sweep index and memory, for a decision saved and published."""
        observe(actions, state)
        if self.tracer is not None:
            await write_decision_spans(self.tracer, actions, state)
        if state.is_final:
            await self._forget_active(state.task_id)
            # Nothing more is decided on it: the cache holds tasks in flight only (a late
            # result reads the bucket, and changes nothing).
            self.store.forget(state.task_id)
            if actions:
                await self.task_memory.task_finished(state)
                if state.replay is not None:
                    metrics.record_replay_cost(state.replay.mode, state.spent_usd)
                if self.shadow is not None:
                    self.shadow.task_finished(state)
        elif (timer := decisions.next_timer(state)) != timer_before:
            await self.active.put(state.task_id, str(timer).encode())

    async def _publish(self, actions: list[Action]) -> None:
        """Publish every action at once and wait for all the acks: one round trip, not one
        per action. One connection keeps them in order on the wire and in the streams."""
        await asyncio.gather(*(self._publish_one(action) for action in actions))

    async def _publish_one(self, action: Action) -> None:
        match action:
            case Dispatch(role=role, request=request, msg_id=msg_id):
                subject = subjects.work(role)
                context = round_context(request.task_id, request.round)
                await publish_retrying(
                    self.js, subject, encode(request), stream=subjects.WORK_STREAM,
                    msg_id=msg_id, headers=trace_headers(context, {}),
                    within_s=self.settings.publish_retry_s,
                )
            case Emit(event=event, msg_id=msg_id):
                subject = subjects.events(event.task_id, event_kind(event))
                await publish_retrying(
                    self.js, subject, encode(event), stream=subjects.EVENTS_STREAM,
                    msg_id=msg_id, within_s=self.settings.publish_retry_s,
                )
        metrics.record_bus_message(subject, "out")

    async def _on_control(self, msg: Msg) -> None:
        await answer(msg, self.control, "control command")

    async def control(self, data: bytes) -> ControlAccepted | ErrorReply:
        """Cancel a task or resolve an approval; the reply says what the task is now."""
        try:
            command = decode(data, _control_decoder, max_bytes=self.settings.max_submit_bytes)
        except BadMessageError as exc:
            metrics.record_bad_input(exc.reason, subjects.CONTROL)
            return exc.reply
        found = await self.store.get(command.task_id)
        if found is None:
            return ErrorReply(code="not_found", message=f"no task {command.task_id}")
        if found[0].is_final:
            return ErrorReply(code="conflict", message=f"task {command.task_id} already "
                              f"{found[0].status}")
        now = time.time()
        # Should this replica die between saving the decision and publishing it, the sweep
        # looks at the task again soon and publishes the outbox (results and redelivered
        # submissions do that for their own decisions).
        await self.active.put(command.task_id, str(now + OUTBOX_RECOVERY_S).encode())
        match command:
            case CancelTask():
                state = await self.update(
                    command.task_id, lambda s: decisions.cancel(s, command.by, command.reason, now)
                )
            case ResolveApproval():
                key = command.call_key or _oldest_pending(found[0])
                if key is None or key not in found[0].pending_approvals:
                    return ErrorReply(code="conflict", message=f"task {command.task_id} has no "
                                      f"pending approval {command.call_key or ''}".rstrip())
                decision = ApprovalDecision(approved=command.approved, by=command.by,
                                            reason=command.reason, at=now)
                state = await self.update(
                    command.task_id, lambda s: decisions.resolve_approval(s, key, decision, now)
                )
        assert state is not None
        if not state.is_final:
            await self.active.put(command.task_id, str(decisions.next_timer(state)).encode())
        return ControlAccepted(task_id=command.task_id, status=state.status)

    # -- timers and crashes -------------------------------------------------------------

    async def _sweep_deadlines(self) -> None:
        while True:
            await anyio.sleep(self.settings.sweep_interval_s)
            try:
                await self._sweep_once()
            except Exception as exc:
                log.warning("deadline sweep failed: %s", exc)

    async def _sweep_once(self) -> None:
        now = time.time()
        for task_id, due in (await self._timers()).items():
            if due > now:
                continue
            state = await self.update(task_id, lambda s: decisions.check_timers(s, now))
            if state is None or state.is_final:
                await self._forget_active(task_id)
            elif (timer := decisions.next_timer(state)) != due:
                await self.active.put(task_id, str(timer).encode())

    async def _timers(self) -> dict[str, float]:
        """Every indexed task's timer, read in one pass over the bucket (one ordered
        consumer), not a key listing and then a read per key: the sweep runs every second.
        The pass also delivers the markers of the tasks finished within the last
        `ACTIVE_MARKER_TTL_S` (older ones have expired), so its cost follows the unfinished
        tasks and the recent finishes, not every task the bucket ever held."""
        return {key: float(value) for key, value in (await bucket_values(self.active)).items()}

    async def _forget_active(self, task_id: str) -> None:
        """Drop a finished task from the index with a purge marker that expires: it removes
        the key's earlier revisions, and then the server removes the marker too."""
        try:
            await self.active.purge(task_id, msg_ttl=ACTIVE_MARKER_TTL_S)
        except Exception as exc:  # e.g. a bucket whose stream was not allowed TTLs
            log.debug("forgetting %s with an expiring marker: %s", task_id, exc)
            try:
                await self.active.delete(task_id)
            except Exception as exc2:
                log.debug("forgetting %s: %s", task_id, exc2)

    async def _on_max_deliveries(self, msg: Msg) -> None:
        """A worker died holding a message on its last delivery: dead-letter it, fail its step."""
        try:
            advisory = json.loads(msg.data)
            stream_seq = int(advisory["stream_seq"])
            deliveries = int(advisory.get("deliveries", 0))
            role = subjects.worker_role(str(advisory["consumer"]))
            raw = await self.js.get_msg(subjects.WORK_STREAM, stream_seq)
        except Exception as exc:
            log.warning("max-deliveries advisory not handled: %s", exc)
            return
        data = raw.data or b""
        reason = (
            f"dead-lettered after {deliveries} deliveries without a result "
            "(the worker crashed or stopped answering)"
        )
        metrics.record_dead_letter(role, "worker_lost")
        await publish_dead_letter(
            self.js, subjects.dead_letter(role), data,
            reason=reason, origin=raw.subject or "", deliveries=deliveries,
        )
        try:
            request = decode(data, _request_decoder)
        except BadMessageError:
            request = None
        if request is not None:
            report = WorkReport(
                role=role, model="", prompt_version="", simulated_model=False,
                usage=TokenUsage(), duration_s=0.0, worker="orchestrator", attempt=deliveries,
            )
            result = result_for(request, report, error=reason)
            await self.js.publish(
                subjects.results(request.task_id), encode(result), stream=subjects.RESULTS_STREAM
            )
        await self.js.delete_msg(subjects.WORK_STREAM, stream_seq)


def _oldest_pending(state: TaskState) -> str | None:
    pending = sorted(state.pending_approvals.items(), key=lambda kv: kv[1].requested_at)
    return pending[0][0] if pending else None


def observe(actions: list[Action], state: TaskState) -> None:
    """Metrics for what a saved decision did; counted once, since replays decide nothing."""
    for action in actions:
        if not isinstance(action, Emit):
            continue
        match action.event:
            case StepFinished() as e:
                metrics.record_step(e.role, "ok" if e.ok else "failed", e.duration_s)
            case TaskCritiqued() as e:
                for role, version in _contributors(state, e.round):
                    metrics.record_critique(role, version, e.critique.score, e.critique.verdict,
                                            variant=state.variant)
            case TaskReplanned():
                metrics.record_replan()
            case TaskPlanned(degraded=str() as reason):
                metrics.record_degraded(reason)
            case TaskCompleted() as e:
                metrics.record_task_finished(
                    "completed", "", e.at - state.created_at, e.result.rounds)
            case TaskFailed() as e:
                metrics.record_task_finished(
                    "failed", e.error.code, e.at - state.created_at, len(state.rounds))


def _contributors(state: TaskState, round_number: int) -> set[tuple[str, str]]:
    """(role, prompt version) of every agent whose work the critique judged, and of the
    critic itself: its prompt shapes the score as much (and `role="critic"` counts each
    critique once)."""
    round_ = state.rounds[round_number - 1]
    # A planner whose plan was replaced by the fallback step shaped nothing judged here.
    planner = [] if round_.planner.degraded == "single_step" else [round_.planner]
    steps = [*planner, *round_.steps.values(), round_.critic]
    return {(s.role, s.prompt_version) for s in steps if s.prompt_version}
