"""The Python client: submit a task, follow its events, read its state."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import AsyncGenerator

import anyio
import msgspec
from nats.aio.client import Client as NATS
from nats.aio.msg import Msg
from nats.errors import ConnectionClosedError, ConnectionDrainingError, NoRespondersError
from nats.js.api import DeliverPolicy

from crewbus.bus.codec import BadMessageError, decode, encode
from crewbus.taskstore import TaskStore
from crewbus_contracts import (
    ControlAccepted,
    ControlCommand,
    ErrorReply,
    SubmitTask,
    TaskAccepted,
    TaskEvent,
    TaskState,
    subjects,
)
from crewbus_contracts.events import TERMINAL_EVENTS
from crewbus_contracts.feedback import Feedback, FeedbackAccepted


class SubmissionRefusedError(RuntimeError):
    """The gateway refused the submission; `reply` holds its code and message."""

    def __init__(self, reply: ErrorReply) -> None:
        super().__init__(f"{reply.code}: {reply.message}")
        self.reply = reply


class CommandRefusedError(SubmissionRefusedError):
    """The orchestrator refused a control command (unknown task, nothing to approve...)."""


log = logging.getLogger(__name__)

_reply_decoder = msgspec.json.Decoder(TaskAccepted | ErrorReply)
_control_reply_decoder = msgspec.json.Decoder(ControlAccepted | ErrorReply)
_feedback_reply_decoder = msgspec.json.Decoder(FeedbackAccepted | ErrorReply)
_event_decoder: msgspec.json.Decoder[TaskEvent] = msgspec.json.Decoder(TaskEvent)


class CrewbusClient:
    def __init__(self, nc: NATS) -> None:
        self.nc = nc
        self.js = nc.jetstream()

    async def submit(self, task: SubmitTask, timeout_s: float = 10.0) -> TaskAccepted:
        reply = await self._request(subjects.SUBMIT, encode(task), timeout_s)
        decoded = _reply_decoder.decode(reply.data)
        if isinstance(decoded, ErrorReply):
            raise SubmissionRefusedError(decoded)
        return decoded

    async def _request(self, subject: str, payload: bytes, timeout_s: float) -> Msg:
        """Request, waiting for a responder to appear (services may still be starting)."""
        deadline = time.monotonic() + timeout_s
        while True:
            try:
                return await self.nc.request(subject, payload, timeout=timeout_s)
            except NoRespondersError:
                if time.monotonic() > deadline:
                    raise
                await anyio.sleep(0.2)

    async def control(self, command: ControlCommand, timeout_s: float = 10.0) -> ControlAccepted:
        """Cancel a task or resolve an approval; raises CommandRefusedError when refused."""
        reply = await self._request(subjects.CONTROL, encode(command), timeout_s)
        decoded = _control_reply_decoder.decode(reply.data)
        if isinstance(decoded, ErrorReply):
            raise CommandRefusedError(decoded)
        return decoded

    async def feedback(self, feedback: Feedback, timeout_s: float = 10.0) -> FeedbackAccepted:
        """Store a person's score of a finished task; raises CommandRefusedError when
        refused (no such task, not finished yet, a bad score)."""
        reply = await self._request(subjects.FEEDBACK, encode(feedback), timeout_s)
        decoded = _feedback_reply_decoder.decode(reply.data)
        if isinstance(decoded, ErrorReply):
            raise CommandRefusedError(decoded)
        return decoded

    async def events(
        self, task_id: str, until_final: bool = True
    ) -> AsyncGenerator[TaskEvent, None]:
        """Every event of the task from its first, live, ending after completed/failed.

        An event of a type this client doesn't know (a newer orchestrator's) is skipped
        with a warning: the events are a record to follow, and the task's state is the
        truth, so an older watcher keeps following instead of failing. Close it
        (`contextlib.aclosing`) before closing the connection when you stop early.
        """
        sub = await self.js.subscribe(
            subjects.events(task_id),
            stream=subjects.EVENTS_STREAM,
            ordered_consumer=True,
            deliver_policy=DeliverPolicy.ALL,
        )
        try:
            async for msg in sub.messages:
                try:
                    event = decode(msg.data, _event_decoder)
                except BadMessageError as exc:
                    if exc.reason != "unknown_type":
                        raise
                    log.warning("skipping an event on %s: %s", msg.subject, exc.reply.message)
                    continue
                yield event
                if until_final and isinstance(event, TERMINAL_EVENTS):
                    return
        finally:
            # The connection may be gone already (closed by the caller): nothing to undo.
            with contextlib.suppress(ConnectionClosedError, ConnectionDrainingError):
                await sub.unsubscribe()

    async def exists(self, task_id: str) -> bool:
        """Whether the bus knows the task: its events, or (just submitted, not started yet)
        its submission. Only stream info, which a client identity may read (the task
        state's bucket it may not)."""
        for stream, subject in ((subjects.EVENTS_STREAM, subjects.events(task_id)),
                                (subjects.TASKS_STREAM, subjects.task(task_id))):
            info = await self.js.stream_info(stream, subjects_filter=subject)
            if info.state.subjects:
                return True
        return False

    async def state(self, task_id: str) -> TaskState | None:
        store = TaskStore(await self.js.key_value(subjects.TASKS_KV))
        found = await store.get(task_id)
        return found[0] if found else None
