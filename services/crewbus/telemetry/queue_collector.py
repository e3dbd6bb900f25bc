"""Queue depth from JetStream consumer info, sampled on a timer into the queue gauges.

Pending and ack-pending are read from the server, never inferred from what a process
saw, so every replica of a role shares one truthful number per consumer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from nats.js import JetStreamContext
from nats.js.errors import NotFoundError

from crewbus.telemetry import metrics
from crewbus_contracts import subjects
from crewbus_contracts.base import AGENT_ROLES

log = logging.getLogger(__name__)

DEFAULT_INTERVAL_S = 5.0


@dataclass(frozen=True, slots=True)
class ConsumerRef:
    stream: str
    consumer: str


def default_consumers() -> list[ConsumerRef]:
    """Every durable consumer crewbus creates: one per agent role, two for the orchestrator."""
    refs = [ConsumerRef(subjects.WORK_STREAM, subjects.worker_consumer(r)) for r in AGENT_ROLES]
    refs.append(ConsumerRef(subjects.TASKS_STREAM, subjects.ORCHESTRATOR_TASKS_CONSUMER))
    refs.append(ConsumerRef(subjects.RESULTS_STREAM, subjects.ORCHESTRATOR_RESULTS_CONSUMER))
    return refs


class QueueCollector:
    """Samples `consumers` every `interval_s`; run it in a task group, cancel to stop."""

    def __init__(
        self,
        js: JetStreamContext,
        consumers: Iterable[ConsumerRef] | None = None,
        interval_s: float = DEFAULT_INTERVAL_S,
    ) -> None:
        self.js = js
        self.consumers: Sequence[ConsumerRef] = list(
            default_consumers() if consumers is None else consumers
        )
        self.interval_s = interval_s

    async def sample_once(self) -> int:
        """Read each consumer's info and set its gauges; return how many were found."""
        found = 0
        for ref in self.consumers:
            try:
                info = await self.js.consumer_info(ref.stream, ref.consumer)
            except NotFoundError:
                # Not created yet (its service has not started): no series, not a zero.
                self._forget(ref)
                continue
            labels = (ref.stream, ref.consumer)
            metrics.queue_pending.labels(*labels).set(info.num_pending or 0)
            metrics.queue_ack_pending.labels(*labels).set(info.num_ack_pending or 0)
            metrics.queue_redelivered.labels(*labels).set(info.num_redelivered or 0)
            found += 1
        return found

    async def run(self) -> None:
        """Sample until cancelled; a failed sample is logged and retried next tick."""
        while True:
            try:
                await self.sample_once()
            except asyncio.CancelledError:
                raise
            except Exception:
                log.warning("queue sample failed", exc_info=True)
            await asyncio.sleep(self.interval_s)

    @staticmethod
    def _forget(ref: ConsumerRef) -> None:
        for gauge in (metrics.queue_pending, metrics.queue_ack_pending, metrics.queue_redelivered):
            with contextlib.suppress(KeyError):
                gauge.remove(ref.stream, ref.consumer)
