"""NATS with authentication, tested as an attacker would: a real nats-server running the
config `crewbus auth init` makes, on a random loopback port. Anonymous connections are
refused; each identity may do only what its role needs, every refusal is a permissions
violation the server reports; and the services, each on its own identity, keep running a
task to completion meanwhile, without one violation of their own."""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import httpx
import nats
import pytest
from nats.aio.client import Client as NATS
from nats.js import JetStreamContext

from crewbus.auth.credentials import credentials_path, generate, read_credentials
from crewbus.auth.permissions import ADMIN, CLIENT, inbox
from crewbus.bus.codec import encode
from crewbus.devstack.nats_auth import StackAuth, set_up_bus
from crewbus.devstack.nats_server import NatsServer, free_port
from crewbus.llm.simulated import SimulatedModel
from crewbus_contracts import SubmitTask, TaskCompleted, subjects
from tests.stack import auth_stack, final_event, stack_settings

pytestmark = pytest.mark.anyio

VIOLATION = "permissions violation"
"""What nats-server says of a refused publish or subscribe (nats-py lower-cases it)."""


ConnectAs = Callable[[str], Awaitable["Attacker"]]
AttackAs = Callable[[str], Awaitable[tuple["Attacker", JetStreamContext]]]


@pytest.fixture
def creds_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "nats-auth"
    generate(directory)
    return directory


@pytest.fixture
def auth_server(tmp_path: Path, creds_dir: Path) -> Iterator[NatsServer]:
    server = NatsServer(tmp_path / "nats", config_file=creds_dir / "nats-server.conf").start()
    try:
        yield server
    finally:
        server.stop()


class Attacker:
    """A connection as one identity that records every error the server reports to it."""

    def __init__(self) -> None:
        self.errors: list[str] = []
        self.nc = NATS()

    async def on_error(self, exc: Exception) -> None:
        self.errors.append(str(exc))

    async def violation(self, subject: str, timeout_s: float = 10.0) -> str:
        """The server's report of the refusal of `subject`, once it arrived."""
        with anyio.fail_after(timeout_s):
            while True:
                for error in self.errors:
                    if VIOLATION in error.lower() and subject.lower() in error.lower():
                        return error
                await anyio.sleep(0.02)


@pytest.fixture
async def connect_as(auth_server: NatsServer, creds_dir: Path) -> AsyncIterator[ConnectAs]:
    opened: list[Attacker] = []

    async def connect(identity: str) -> Attacker:
        creds = read_credentials(credentials_path(creds_dir, identity))
        attacker = Attacker()
        await attacker.nc.connect(auth_server.url, user=creds.user, password=creds.password,
                                  inbox_prefix=inbox(identity), error_cb=attacker.on_error,
                                  allow_reconnect=False)
        opened.append(attacker)
        return attacker

    yield connect
    for attacker in opened:
        await attacker.nc.close()


@pytest.fixture
async def attack_as(auth_server: NatsServer, creds_dir: Path, connect_as: ConnectAs
                    ) -> AttackAs:
    """On a bus set up by `admin`, a connection as `identity` (its JetStream context has a
    short timeout: a refused request is never answered)."""
    await set_up_bus(auth_server.url, stack_settings(auth_server.url), StackAuth(creds_dir, None))

    async def attack(identity: str) -> tuple[Attacker, JetStreamContext]:
        attacker = await connect_as(identity)
        return attacker, attacker.nc.jetstream(timeout=1)

    return attack


async def test_an_anonymous_connection_and_a_wrong_password_are_refused(
    auth_server: NatsServer, creds_dir: Path
) -> None:
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(auth_server.url, allow_reconnect=False, max_reconnect_attempts=0)
    admin = read_credentials(credentials_path(creds_dir, ADMIN))
    with pytest.raises(nats.errors.Error, match="Authorization Violation"):
        await nats.connect(auth_server.url, user=admin.user, password=admin.password + "x",
                           allow_reconnect=False, max_reconnect_attempts=0)


async def test_the_client_cannot_touch_work_the_task_state_or_stream_admin(
    attack_as: AttackAs, connect_as: ConnectAs
) -> None:
    client, js = await attack_as(CLIENT)

    await client.nc.publish(subjects.work("researcher"), b"{}")
    await client.violation(subjects.work("researcher"))
    with pytest.raises(nats.errors.TimeoutError):
        await js.publish(subjects.work("researcher"), b"{}")

    with pytest.raises(nats.errors.TimeoutError):  # the bucket is a stream: no info, no get
        await js.key_value(subjects.TASKS_KV)
    await client.violation(f"$JS.API.STREAM.INFO.KV_{subjects.TASKS_KV}")
    with pytest.raises(nats.errors.TimeoutError):
        await js.get_msg(f"KV_{subjects.TASKS_KV}", subject=f"$KV.{subjects.TASKS_KV}.t1",
                         direct=True)
    await client.violation(f"$JS.API.DIRECT.GET.KV_{subjects.TASKS_KV}")
    await client.nc.subscribe(f"$KV.{subjects.TASKS_KV}.>")
    await client.violation(f"subscription to \"$KV.{subjects.TASKS_KV}.>\"")

    with pytest.raises(nats.errors.TimeoutError):
        await js.delete_stream(subjects.WORK_STREAM)
    await client.violation(f"$JS.API.STREAM.DELETE.{subjects.WORK_STREAM}")
    with pytest.raises(nats.errors.TimeoutError):
        await js.purge_stream(subjects.EVENTS_STREAM)
    await client.violation(f"$JS.API.STREAM.PURGE.{subjects.EVENTS_STREAM}")

    with pytest.raises(nats.errors.TimeoutError):  # nor results, nor another's fetch
        await js.publish(subjects.results("t1"), b"{}")
    await client.violation(subjects.results("t1"))

    admin = await connect_as(ADMIN)
    info = await admin.nc.jetstream().stream_info(subjects.WORK_STREAM)
    assert info.config.name == subjects.WORK_STREAM  # nothing the client did reached it
    assert info.state.messages == 0
    assert not admin.errors


async def test_an_agent_cannot_submit_a_task_or_read_another_roles_work(
    attack_as: AttackAs
) -> None:
    planner, js = await attack_as("planner")

    task = SubmitTask(text="an agent must not start tasks", idempotency_key="attack")
    with pytest.raises((nats.errors.TimeoutError, nats.errors.NoRespondersError)):
        await planner.nc.request(subjects.SUBMIT, encode(task), timeout=1)
    await planner.violation(subjects.SUBMIT)
    with pytest.raises(nats.errors.TimeoutError):
        await js.publish(subjects.task("t-attack"), encode(task))
    await planner.violation(subjects.task("t-attack"))

    researcher_consumer = subjects.worker_consumer("researcher")
    sub = await js.pull_subscribe_bind(durable=researcher_consumer,
                                       stream=subjects.WORK_STREAM)
    with pytest.raises(nats.errors.TimeoutError):
        await sub.fetch(1, timeout=1)
    await planner.violation(
        f"$JS.API.CONSUMER.MSG.NEXT.{subjects.WORK_STREAM}.{researcher_consumer}")
    await planner.nc.subscribe(subjects.work("researcher"))
    await planner.violation(f"subscription to \"{subjects.work('researcher')}\"")
    await planner.nc.subscribe(subjects.MEMORY_SEARCH)  # the memory service's own subject
    await planner.violation(f"subscription to \"{subjects.MEMORY_SEARCH}\"")
    await planner.nc.subscribe("_INBOX.client.>")  # the client's replies
    await planner.violation("subscription to \"_INBOX.client.>\"")


async def test_every_service_on_its_own_identity_completes_a_task_while_attacked(
    auth_server: NatsServer, creds_dir: Path, model: SimulatedModel, connect_as: ConnectAs
) -> None:
    assert model.base_url is not None
    port = free_port()
    async with auth_stack(auth_server.url, model.base_url, creds_dir,
                          gateway_port=port) as client:
        attacker = await connect_as(CLIENT)
        await attacker.nc.publish(subjects.work("researcher"), b"not work")
        await attacker.violation(subjects.work("researcher"))

        accepted = await client.submit(SubmitTask(text="Compare NATS and Kafka"))
        event = await final_event(client, accepted.task_id, timeout_s=60)
        assert isinstance(event, TaskCompleted), event
        assert await client.exists(accepted.task_id)
        async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}") as http:
            shown = (await http.get(f"/v1/tasks/{accepted.task_id}")).json()
            assert shown["status"] == "completed", shown
            trace = await http.get(f"/v1/tasks/{accepted.task_id}/trace")
            assert trace.status_code == 200, trace.text
        # The orchestrator's expiring purge marker (a publish, not stream administration)
        # leaves the index of unfinished tasks empty once it expires.
        admin_js = (await connect_as(ADMIN)).nc.jetstream()
        with anyio.fail_after(60):
            while (await admin_js.stream_info(f"KV_{subjects.ACTIVE_KV}")).state.messages:
                await anyio.sleep(0.2)
    # The only violations the server saw are the attacker's.
    log = auth_server.log_path.read_text()
    refused = re.findall(r'"\$G/user:([\w-]+)" - (\w+ Violation)', log)
    assert refused and {user for user, _ in refused} == {CLIENT}, refused


async def test_the_gateway_cannot_delete_streams_consumers_or_buckets(attack_as: AttackAs) -> None:
    """Even the gateway, the client with the most reads, cannot delete or edit a stream."""
    gateway, js = await attack_as("gateway")
    for request in (js.delete_stream(subjects.TASKS_STREAM),
                    js.delete_consumer(subjects.WORK_STREAM, subjects.worker_consumer("critic")),
                    js.delete_key_value(subjects.TASKS_KV)):
        with pytest.raises(nats.errors.TimeoutError):
            await request
    await gateway.violation(f"$JS.API.STREAM.DELETE.{subjects.TASKS_STREAM}")
    await gateway.violation(f"$JS.API.CONSUMER.DELETE.{subjects.WORK_STREAM}.agent-critic")
    await gateway.violation(f"$JS.API.STREAM.DELETE.KV_{subjects.TASKS_KV}")
    info = await js.stream_info(subjects.TASKS_STREAM)  # reading it is allowed
    assert info.config.name == subjects.TASKS_STREAM
    with pytest.raises(nats.errors.TimeoutError):
        await js.stream_info("NOT_A_CREWBUS_STREAM")  # nor any stream it isn't granted
    await gateway.violation("$JS.API.STREAM.INFO.NOT_A_CREWBUS_STREAM")
