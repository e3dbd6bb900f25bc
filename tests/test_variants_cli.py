"""`crewbus prompt ...`, `crewbus variant ...` and `crewbus submit --variant`, run as real
commands against a real nats-server: what they print, their exit codes, and their errors
in one line (2: bad argument or file, 1: unknown version, label or variant, 3: no NATS)."""

from __future__ import annotations

import json
from pathlib import Path

import anyio
import nats
import pytest

from crewbus.bus.topology import ensure_topology
from crewbus.devstack.nats_server import NatsServer, free_port
from crewbus.llm.simulated import SimulatedModel
from crewbus.settings import BusSettings
from crewbus_agents.prompts import parse_prompt
from crewbus_agents.roles import AGENTS
from tests.cli_helpers import crewbus, ok, one_line_error
from tests.stack import in_process_stack

pytestmark = pytest.mark.anyio

CANDIDATE = "---\nversion: critic-v3\n---\nYou are the critic.\nJudge in one line.\n"


@pytest.fixture
async def bus(nats_server: NatsServer) -> str:
    nc = await nats.connect(nats_server.url)
    await ensure_topology(nc.jetstream(), BusSettings(nats_url=nats_server.url))
    await nc.close()
    return nats_server.url


async def test_push_list_show_diff_promote_and_roll_back(bus: str, tmp_path: Path) -> None:
    file = tmp_path / "critic.md"
    file.write_text(CANDIDATE)
    out = ok(await crewbus("prompt", "push", "critic", str(file), "--label", "candidate",
                           "--nats", bus))
    assert out.startswith(f"critic: {file} stored as version 2 (")
    assert out.strip().endswith("candidate (new) -> 2")
    again = ok(await crewbus("prompt", "push", "critic", str(file), "--nats", bus))
    assert "is already version 2" in again

    table = ok(await crewbus("prompt", "list", "critic", "--nats", bus)).splitlines()
    assert table[0].split() == ["version", "labels", "created", "sha256", "name", "source"]
    assert table[1].split()[:2] == ["1", "production"]
    assert table[1].split()[-2:] == [AGENTS["critic"].prompt.version, "packaged"]
    assert table[2].split()[:2] == ["2", "candidate"]
    assert table[2].split()[-2:] == ["critic-v3", "pushed"]
    index = json.loads(ok(await crewbus("prompt", "list", "critic", "--json", "--nats", bus)))
    assert index["labels"] == {"production": 1, "candidate": 2}

    shown = ok(await crewbus("prompt", "show", "critic", "candidate", "--nats", bus))
    assert parse_prompt(shown, "shown") == parse_prompt(CANDIDATE, "file")
    packaged = ok(await crewbus("prompt", "show", "critic", "1", "--nats", bus))
    assert parse_prompt(packaged, "shown") == AGENTS["critic"].prompt

    diff = ok(await crewbus("prompt", "diff", "critic", "production", "candidate",
                            "--nats", bus))
    assert diff.startswith(f"--- critic/1 ({AGENTS['critic'].prompt.version})\n"
                           "+++ critic/2 (critic-v3)\n")
    assert "+Judge in one line.\n" in diff

    promoted = ok(await crewbus("prompt", "label", "critic", "candidate", "production",
                                "--nats", bus))
    assert promoted.strip() == "critic: production 1 -> 2"
    rolled_back = ok(await crewbus("prompt", "label", "critic", "1", "production",
                                   "--nats", bus))
    assert rolled_back.strip() == "critic: production 2 -> 1"


async def test_prompt_errors_are_one_line_with_the_right_exit_code(
    bus: str, tmp_path: Path
) -> None:
    no_header = tmp_path / "plain.md"
    no_header.write_text("You are the critic.\n")
    empty = tmp_path / "empty.md"
    empty.write_text("---\nversion: x\n---\n\n")
    one_line_error(await crewbus("prompt", "push", "judge", str(no_header), "--nats", bus), 2,
                   "invalid choice: 'judge'")
    one_line_error(await crewbus("prompt", "push", "critic", str(no_header), "--nats", bus), 2,
                   "crewbus prompt:", "must start with a '---' header")
    one_line_error(await crewbus("prompt", "push", "critic", str(empty), "--nats", bus), 2,
                   "has no prompt text")
    one_line_error(await crewbus("prompt", "push", "critic", str(tmp_path / "nosuch.md"),
                                 "--nats", bus), 2, "cannot read", "nosuch.md")
    one_line_error(await crewbus("prompt", "show", "critic", "9", "--nats", bus), 1,
                   "critic has no prompt '9'", "version 1; labels production=1")
    one_line_error(await crewbus("prompt", "diff", "critic", "1", "candidate", "--nats", bus),
                   1, "no prompt 'candidate'")
    one_line_error(await crewbus("prompt", "label", "critic", "1", "Prod!", "--nats", bus), 2,
                   "label 'Prod!' must be")
    one_line_error(await crewbus("prompt", "label", "critic", "7", "production", "--nats", bus),
                   1, "no prompt '7'")
    url = f"nats://127.0.0.1:{free_port()}"
    one_line_error(await crewbus("prompt", "list", "critic", "--nats", url), 3, url)
    one_line_error(await crewbus("variant", "list", "--nats", url), 3, url)


async def test_variant_set_show_list_and_delete(bus: str, tmp_path: Path) -> None:
    file = tmp_path / "critic.md"
    file.write_text(CANDIDATE)
    ok(await crewbus("prompt", "push", "critic", str(file), "--label", "candidate",
                     "--nats", bus))
    shown = ok(await crewbus("variant", "set", "terse", "--role", "critic", "--prompt",
                             "candidate", "--model", "gpt-4o-mini", "--description",
                             "one-line critiques", "--nats", bus))
    assert shown.splitlines()[0] == "variant terse: one-line critiques"
    assert "  critic      prompt candidate -> 2, model gpt-4o-mini" in shown
    assert "  planner     prompt production -> 1" in shown
    ok(await crewbus("variant", "set", "terse", "--role", "executor", "--max-tool-calls", "3",
                     "--temperature", "0.2", "--nats", bus))
    listed = ok(await crewbus("variant", "list", "--nats", bus)).splitlines()
    assert listed[0].startswith("production ")
    assert listed[1].split(maxsplit=1) == [
        "terse", "critic: prompt candidate, model gpt-4o-mini; executor: temperature 0.2, "
        "max tool calls 3"]
    assert "model gpt-4o-mini" in ok(await crewbus("variant", "show", "terse", "--nats", bus))

    def set_critic(*more: str) -> list[str]:
        return ["variant", "set", "terse", "--role", "critic", *more, "--nats", bus]

    one_line_error(await crewbus(*set_critic("--prompt", "nosuch")), 1,
                   "critic has no prompt 'nosuch'")
    one_line_error(await crewbus(*set_critic()), 2, "nothing to set")
    one_line_error(await crewbus(*set_critic("--max-tool-calls", "3")), 2,
                   "--max-tool-calls applies to roles that use tools (executor)")
    one_line_error(await crewbus(*set_critic("--endpoint", "azure")), 2, "--endpoint needs "
                   "--model")
    one_line_error(await crewbus(*set_critic("--temperature", "5")), 2, "--temperature:")
    one_line_error(await crewbus("variant", "set", "production", "--role", "critic",
                                 "--model", "m", "--nats", bus), 2, "implicit variant")
    one_line_error(await crewbus("variant", "set", "no way", "--role", "critic",
                                 "--model", "m", "--nats", bus), 2, "variant name 'no way'")
    one_line_error(await crewbus("variant", "show", "nosuch", "--nats", bus), 1,
                   "variant 'nosuch' does not exist")
    assert ok(await crewbus("variant", "delete", "terse", "--nats", bus)).strip() == (
        "variant terse deleted")
    one_line_error(await crewbus("variant", "delete", "terse", "--nats", bus), 1,
                   "variant 'terse' does not exist")


async def test_submit_with_a_variant_is_refused_unless_it_resolves(
    nats_server: NatsServer, model: SimulatedModel
) -> None:
    url = nats_server.url
    async with in_process_stack(url, model.base_url, roles=()) as client:  # gateway only
        one_line_error(await crewbus("submit", "Do it", "--variant", "nosuch", "--nats", url),
                       2, "refused: invalid_message: `$.variant`: variant 'nosuch' does not "
                       "exist")
        one_line_error(await crewbus("submit", "Do it", "--variant", "a b", "--nats", url), 2,
                       "refused: invalid_message", "`$.variant`")
        ok(await crewbus("variant", "set", "warm", "--role", "planner", "--temperature", "0.9",
                         "--nats", url))
        task_id = ok(await crewbus("submit", "Do it", "--variant", "warm", "--nats", url))
        state = await client.state(task_id.strip())
        with anyio.fail_after(60):
            while state is None:  # the orchestrator stores it a moment after accepting
                await anyio.sleep(0.05)
                state = await client.state(task_id.strip())
        assert state.variant == "warm"
