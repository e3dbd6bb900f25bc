"""The identity table: every service has its identity, and the grants hold the rules of
least privilege whatever is added to them later (checked on the table, not on a server:
`test_nats_auth.py` checks the server enforces it)."""

from __future__ import annotations

import re

import msgspec

from crewbus.auth.credentials import Credentials
from crewbus.auth.permissions import ADMIN, CLIENT, IDENTITIES, MCP, SERVICE_IDENTITIES
from crewbus.auth.server_config import render_server_config
from crewbus.service_names import BUS_SERVICES, EVALUATOR, GATEWAY, SERVICES
from crewbus_contracts import AGENT_ROLES, subjects
from crewbus_contracts.subjects import wildcard

STREAM_ADMIN = re.compile(r"^\$JS\.API\.(STREAM\.(CREATE|UPDATE|DELETE|PURGE)|ACCOUNT)|^>$")


def test_every_service_on_the_bus_has_an_identity() -> None:
    on_the_bus = set(SERVICES) - {"simulated-model"}  # the model is not a bus client
    assert on_the_bus == set(BUS_SERVICES) | {GATEWAY, EVALUATOR} == set(SERVICE_IDENTITIES)
    assert set(IDENTITIES) == {*SERVICE_IDENTITIES, ADMIN, CLIENT, MCP}


def test_only_admin_may_administer_streams() -> None:
    for identity, grants in IDENTITIES.items():
        admin = [s for s in grants.publish if STREAM_ADMIN.search(s)]
        assert bool(admin) == (identity == ADMIN), (identity, admin)
        assert (">" in grants.subscribe) == (identity == ADMIN), identity


def test_clients_never_touch_work_results_or_kv_internals() -> None:
    for identity in (CLIENT, GATEWAY, MCP):
        grants = IDENTITIES[identity]
        assert subjects.SUBMIT in grants.publish and subjects.CONTROL in grants.publish
        for name in grants.publish:
            assert not name.startswith(("crewbus.work", "crewbus.results", "crewbus.tasks",
                                        "crewbus.events", "$JS.ACK")), (identity, name)
            assert "MSG.NEXT" not in name, (identity, name)
        assert not grants.subscribe, identity  # replies arrive on its own inbox only
    client = IDENTITIES[CLIENT]
    assert not [n for n in client.publish if "KV" in n], client.publish


def test_an_agent_fetches_only_its_own_work_and_never_submits() -> None:
    for role in AGENT_ROLES:
        grants = IDENTITIES[role]
        nexts = [n for n in grants.publish if ".MSG.NEXT." in n]
        assert nexts == [f"$JS.API.CONSUMER.MSG.NEXT.{subjects.WORK_STREAM}."
                         f"{subjects.worker_consumer(role)}"], nexts
        for forbidden in (subjects.SUBMIT, subjects.CONTROL, wildcard(subjects.TASK),
                          wildcard(subjects.WORK), wildcard(subjects.EVENTS),
                          f"$KV.{subjects.TASKS_KV}.>"):
            assert forbidden not in grants.publish, (role, forbidden)
        assert not [s for s in grants.subscribe if s.startswith("crewbus.work")]
        assert subjects.events("*", "step_started") in grants.publish


def test_only_the_orchestrator_writes_the_task_state_and_only_memory_serves_memory() -> None:
    writers = {i for i, g in IDENTITIES.items() if f"$KV.{subjects.TASKS_KV}.>" in g.publish}
    assert writers == {"orchestrator"}
    scorers = {i for i, g in IDENTITIES.items()
               if f"$KV.{subjects.TASK_SCORES_KV}.>" in g.publish}
    assert scorers == {"orchestrator", EVALUATOR}
    servers = {i for i, g in IDENTITIES.items() if subjects.MEMORY_SEARCH in g.subscribe}
    assert servers == {"memory"}


def test_the_server_config_gives_each_user_its_own_inbox_and_no_one_elses() -> None:
    creds = {i: Credentials(i, f"pw-{i}") for i in IDENTITIES}
    config = msgspec.json.decode(render_server_config(creds))
    users = {u["user"]: u for u in config["authorization"]["users"]}
    assert set(users) == set(IDENTITIES)
    for identity, user in users.items():
        inboxes = [s for s in user["permissions"]["subscribe"]["allow"] if "_INBOX" in s]
        assert inboxes == [f"_INBOX.{identity}.>"], (identity, inboxes)
    assert users["memory"]["permissions"]["allow_responses"] is True
    assert "allow_responses" not in users[CLIENT]["permissions"]


def test_the_security_page_holds_the_table_rendered_from_the_code() -> None:
    from crewbus.security_doc import DOC, doc_section, render_section

    assert doc_section(DOC.read_text()) == render_section(), (
        "docs/security.md drifted from the identity table: run "
        "`python -m crewbus.security_doc`")
