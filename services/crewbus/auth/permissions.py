"""The one table of NATS identities and what each may publish and subscribe to.

Every allow list is built from the names in `crewbus_contracts.subjects`, so a new subject
or bucket is granted where it is named; adding a service is one entry in `IDENTITIES`.
What is not allowed is refused by nats-server as a permissions violation.

JetStream is reached through subjects too, so least privilege on streams is a matter of
which `$JS.API.*` requests an identity may publish:
- fetching from a durable consumer: `$JS.API.CONSUMER.MSG.NEXT.<stream>.<consumer>`, and
  acking what it got: `$JS.ACK.<stream>.<consumer>.>`;
- reading a stream (ordered consumers, last message, stream info): consumer create/delete,
  direct and message get on that stream only;
- a KV bucket is the stream `KV_<bucket>`; writing it is publishing to `$KV.<bucket>.>`.
Replies come back on the identity's own inbox prefix (`_INBOX.<identity>.>`), so no
identity can read another's replies.
"""

from __future__ import annotations

from collections.abc import Iterable

import msgspec

from crewbus.service_names import BUS_SERVICES, EVALUATOR, GATEWAY
from crewbus_contracts import AGENT_ROLES, TERMINAL_EVENTS, subjects, tag_of
from crewbus_contracts.subjects import wildcard

ADMIN = "admin"
"""Sets up streams, consumers and buckets (`crewbus up`) and runs the operator commands."""
CLIENT = "client"
"""The CLI's submitter: submit, follow events, send control commands."""
MCP = "mcp"
"""`crewbus mcp serve`: crewbus as an MCP server, a client of the bus like the gateway."""

JS_API = "$JS.API"


class Grants(msgspec.Struct, frozen=True, kw_only=True):
    """What one identity may do: subjects it may publish to and subscribe to, and whether it
    may answer the requests it receives (`allow_responses`)."""

    publish: tuple[str, ...] = ()
    subscribe: tuple[str, ...] = ()
    responds: bool = False

    def __add__(self, other: Grants) -> Grants:
        return Grants(publish=_unique((*self.publish, *other.publish)),
                      subscribe=_unique((*self.subscribe, *other.subscribe)),
                      responds=self.responds or other.responds)


def _unique(names: Iterable[str]) -> tuple[str, ...]:
    return tuple(dict.fromkeys(names))


def grant(*parts: Grants) -> Grants:
    total = Grants()
    for part in parts:
        total = total + part
    return total


# -- Building blocks, each named for what the service does -------------------------------


def publishes(*names: str) -> Grants:
    """Publish to these subjects (core, or into a stream: the JetStream ack comes back on
    the identity's inbox)."""
    return Grants(publish=names)


def listens(*names: str) -> Grants:
    """Core subscriptions (no replies)."""
    return Grants(subscribe=names)


def serves(*names: str) -> Grants:
    """Answers requests on these subjects (reply to whoever asked, and only to them)."""
    return Grants(subscribe=names, responds=True)


def requests(*names: str) -> Grants:
    """Sends requests to these subjects; the reply comes back on its inbox."""
    return Grants(publish=names)


def consumes(stream: str, consumer: str) -> Grants:
    """Fetches from one durable consumer and acks what it fetched."""
    return Grants(publish=(f"{JS_API}.CONSUMER.MSG.NEXT.{stream}.{consumer}",
                           f"{JS_API}.CONSUMER.INFO.{stream}.{consumer}",
                           f"$JS.ACK.{stream}.{consumer}.>"))


def inspects(*streams: str) -> Grants:
    """Stream info (subjects and counts) of these streams."""
    return Grants(publish=tuple(f"{JS_API}.STREAM.INFO.{s}" for s in streams))


def reads_stream(stream: str) -> Grants:
    """Reads a stream: info, single messages, and ordered consumers of its own (created,
    fed with flow control, deleted)."""
    return inspects(stream) + Grants(publish=(
        f"{JS_API}.CONSUMER.CREATE.{stream}", f"{JS_API}.CONSUMER.CREATE.{stream}.>",
        f"{JS_API}.CONSUMER.DELETE.{stream}.>", f"{JS_API}.CONSUMER.INFO.{stream}.>",
        f"{JS_API}.DIRECT.GET.{stream}", f"{JS_API}.DIRECT.GET.{stream}.>",
        f"{JS_API}.STREAM.MSG.GET.{stream}", f"$JS.FC.{stream}.>",
    ))


def reads_kv(*buckets: str) -> Grants:
    """Reads (gets, lists, watches) KV buckets, never writes them."""
    return grant(*(reads_stream(f"KV_{b}") for b in buckets))


def writes_kv(*buckets: str) -> Grants:
    """Reads and writes (put, create, update, delete, purge) KV buckets."""
    return reads_kv(*buckets) + Grants(publish=tuple(f"$KV.{b}.>" for b in buckets))


def inbox(identity: str) -> str:
    """The inbox prefix this identity connects with (nats-py `inbox_prefix`)."""
    return f"_INBOX.{identity}"


# -- Who does what -----------------------------------------------------------------------

TERMINAL_KINDS = tuple(sorted(tag_of(event) for event in TERMINAL_EVENTS))
"""The events that end a task, which every agent listens to (to stop work in flight)."""


def agent(role: str) -> Grants:
    """An agent role: its own work, its results, traces and `step_started`, the memory
    service, the prompts and variants it resolves, and (tool users) the tool records."""
    tools = role in ("executor",)
    return grant(
        consumes(subjects.WORK_STREAM, subjects.worker_consumer(role)),
        publishes(wildcard(subjects.RESULTS), subjects.events("*", "step_started"),
                  wildcard(subjects.TRACES), subjects.dead_letter(role)),
        listens(*(subjects.events("*", kind) for kind in TERMINAL_KINDS)),
        requests(subjects.MEMORY_UPSERT, subjects.MEMORY_SEARCH),
        writes_kv(subjects.PROMPTS_KV),  # a role seeds its packaged prompt when it is new
        reads_kv(subjects.VARIANTS_KV),
        writes_kv(subjects.TOOL_RECORDS_KV) + reads_kv(subjects.TASKS_KV, subjects.ACTIVE_KV)
        if tools else Grants(),
        inspects(subjects.TRACES_STREAM),
        # A replayed task's recording (its source task's tool calls and recalls) is its trace.
        reads_stream(subjects.TRACES_STREAM),
    )


def bus_client() -> Grants:
    """What every client of the bus may do: submit, follow task events, send control
    commands, see whether a task is known."""
    return grant(
        requests(subjects.SUBMIT, subjects.CONTROL, subjects.FEEDBACK),
        reads_stream(subjects.EVENTS_STREAM),
        inspects(subjects.TASKS_STREAM),
    )


IDENTITIES: dict[str, Grants] = {
    ADMIN: Grants(publish=(">",), subscribe=(">",), responds=True),
    "orchestrator": grant(
        # The submit gateway and the feedback handler run beside it.
        serves(subjects.CONTROL, subjects.SUBMIT, subjects.FEEDBACK),
        listens(subjects.MAX_DELIVERIES_ADVISORY),
        consumes(subjects.TASKS_STREAM, subjects.ORCHESTRATOR_TASKS_CONSUMER),
        consumes(subjects.RESULTS_STREAM, subjects.ORCHESTRATOR_RESULTS_CONSUMER),
        consumes(subjects.EVALS_STREAM, subjects.EVALS_METRICS_CONSUMER),
        publishes(wildcard(subjects.TASK), wildcard(subjects.WORK), wildcard(subjects.EVENTS),
                  wildcard(subjects.RESULTS), wildcard(subjects.DEAD_LETTER),
                  wildcard(subjects.TRACES)),
        # A work item whose worker died on its last delivery: read it, answer it, remove it.
        publishes(f"{JS_API}.STREAM.MSG.GET.{subjects.WORK_STREAM}",
                  f"{JS_API}.STREAM.MSG.DELETE.{subjects.WORK_STREAM}"),
        # The queue depths on /metrics.
        publishes(f"{JS_API}.CONSUMER.INFO.{subjects.WORK_STREAM}.*",
                  f"{JS_API}.CONSUMER.INFO.{subjects.TASKS_STREAM}.*",
                  f"{JS_API}.CONSUMER.INFO.{subjects.RESULTS_STREAM}.*"),
        writes_kv(subjects.TASKS_KV, subjects.ACTIVE_KV, subjects.TASK_SCORES_KV),
        reads_kv(subjects.PROMPTS_KV, subjects.VARIANTS_KV),
        # The shadow: its configuration (spend, a budget stop), its experiment pair, and
        # the traces its run items are scored from.
        writes_kv(subjects.SHADOW_KV, subjects.EXPERIMENTS_KV),
        reads_stream(subjects.TRACES_STREAM),
        requests(subjects.MEMORY_UPSERT, subjects.MEMORY_SEARCH),
        inspects(subjects.TRACES_STREAM, subjects.TASKS_STREAM, subjects.WORK_STREAM,
                 subjects.RESULTS_STREAM, subjects.EVENTS_STREAM, subjects.EVALS_STREAM),
    ),
    EVALUATOR: grant(
        consumes(subjects.EVENTS_STREAM, subjects.EVALUATOR_CONSUMER),
        # It makes its own durable (only it needs one), and only that one.
        publishes(*(f"{JS_API}.{create}.{subjects.EVENTS_STREAM}.{subjects.EVALUATOR_CONSUMER}"
                    f"{tail}" for create in ("CONSUMER.CREATE", "CONSUMER.DURABLE.CREATE")
                    for tail in ("", ".>"))),
        publishes(wildcard(subjects.TRACES), subjects.dead_letter(EVALUATOR)),
        writes_kv(subjects.TASK_SCORES_KV),
        reads_kv(subjects.TASKS_KV),
        reads_stream(subjects.TRACES_STREAM),
        # `--add-to DATASET`: failing tasks become dataset items.
        writes_kv(subjects.DATASETS_KV),
        reads_stream(f"OBJ_{subjects.DATASETS_OBJECTS}"),
        publishes(f"$O.{subjects.DATASETS_OBJECTS}.>"),
    ),
    "memory": grant(
        serves(subjects.MEMORY_UPSERT, subjects.MEMORY_SEARCH, subjects.MEMORY_DELETE,
               subjects.MEMORY_STATS),
        publishes(wildcard(subjects.TRACES)),
        inspects(subjects.TRACES_STREAM),
    ),
    **{role: agent(role) for role in AGENT_ROLES},
    GATEWAY: grant(
        bus_client(),
        reads_stream(subjects.TRACES_STREAM),
        reads_kv(subjects.TASKS_KV, subjects.ACTIVE_KV, subjects.VARIANTS_KV,
                 subjects.PROMPTS_KV, subjects.EXPERIMENTS_KV, subjects.DATASETS_KV),
        writes_kv(subjects.API_KEYS_KV),  # keys are checked, and last use recorded
        inspects(subjects.WORK_STREAM, subjects.RESULTS_STREAM),
        requests(subjects.MEMORY_SEARCH, subjects.MEMORY_STATS),
    ),
    MCP: grant(bus_client(), reads_kv(subjects.TASKS_KV, subjects.ACTIVE_KV)),
    CLIENT: bus_client(),
}
"""Every identity's grants. The bus services (`BUS_SERVICES`) and the HTTP gateway connect
as themselves; `client` and `admin` are the CLI's; `mcp` is `crewbus mcp serve`'s."""

SERVICE_IDENTITIES: tuple[str, ...] = (*BUS_SERVICES, GATEWAY, EVALUATOR)
"""The identities `crewbus up` hands its children, one each."""


def grants_for(identity: str) -> Grants:
    try:
        return IDENTITIES[identity]
    except KeyError:
        raise UnknownIdentityError(identity) from None


class UnknownIdentityError(KeyError):
    def __init__(self, identity: str) -> None:
        super().__init__(f"no NATS identity {identity!r}; known: {', '.join(IDENTITIES)}")
