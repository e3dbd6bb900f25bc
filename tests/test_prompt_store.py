"""Prompts and variants in JetStream KV on a real nats-server: versions, labels, seeding
of the packaged files, races between writers, and the agents' cached resolver following
label moves through its watch."""

from __future__ import annotations

from collections.abc import AsyncIterator

import anyio
import pytest
from nats.aio.client import Client as NATS

from crewbus.bus.topology import ensure_topology
from crewbus.settings import BusSettings
from crewbus.variants import (
    PromptStore,
    UnknownPromptError,
    UnknownVariantError,
    VariantResolver,
    VariantStore,
    open_resolver,
)
from crewbus.variants.seed import seed_packaged_prompts
from crewbus_agents.prompts import Prompt, PromptFileError, load_prompt, parse_prompt
from crewbus_agents.roles import AGENTS
from crewbus_contracts import PRODUCTION, subjects

pytestmark = pytest.mark.anyio

TERSE = Prompt(version="critic-terse", text="You are the critic. Be terse.")
STRICT = Prompt(version="critic-strict", text="You are the critic. Be strict.")


@pytest.fixture
async def resolver(nc: NATS) -> AsyncIterator[VariantResolver]:
    await ensure_topology(nc.jetstream(), BusSettings())
    yield await open_resolver(nc.jetstream())


async def test_push_label_and_roll_back_round_trip(resolver: VariantResolver) -> None:
    store = resolver.prompts
    seeded = await seed_packaged_prompts(store)
    assert {role: p.number for role, p in seeded.items()} == dict.fromkeys(AGENTS, 1)
    pushed = await store.push("critic", TERSE, label="candidate")
    assert (pushed.number, pushed.created, pushed.labelled) == (2, True, "candidate")
    index, number = await store.resolve("critic", "candidate")
    assert number == 2 and index.labels == {PRODUCTION: 1, "candidate": 2}
    assert (await store.text("critic", 2)).text == TERSE.text

    assert await store.label("critic", 2, PRODUCTION) == 1  # promote: it was on 1
    assert (await store.resolve("critic", PRODUCTION))[1] == 2
    assert await store.label("critic", 1, PRODUCTION) == 2  # roll back
    assert (await store.resolve("critic", PRODUCTION))[1] == 1
    assert (await store.text("critic", 1)).text == AGENTS["critic"].prompt.text
    assert (await store.index("planner")).labels == {PRODUCTION: 1}  # type: ignore[union-attr]


async def test_the_same_text_pushed_again_is_the_same_version(resolver: VariantResolver) -> None:
    store = resolver.prompts
    await seed_packaged_prompts(store)
    first = await store.push("critic", TERSE)
    renamed = Prompt(version="another-name", text=TERSE.text)
    again = await store.push("critic", renamed, label="candidate")
    assert (again.number, again.created, again.labelled) == (first.number, False, "candidate")
    index = await store.require_index("critic")
    assert [v.number for v in index.versions] == [1, 2]


async def test_seeding_is_idempotent_and_a_changed_packaged_file_never_moves_production(
    resolver: VariantResolver,
) -> None:
    store = resolver.prompts
    packaged = AGENTS["critic"].prompt
    for _ in range(3):  # every replica of every service seeds at start
        assert (await store.seed("critic", packaged)).number == 1
    newer_release = Prompt(version="critic-v3", text=packaged.text + "\nBe concise.")
    seeded = await store.seed("critic", newer_release)
    assert (seeded.number, seeded.created, seeded.labelled) == (2, True, None)
    index = await store.require_index("critic")
    assert index.labels == {PRODUCTION: 1}
    assert [(v.number, v.source, v.name) for v in index.versions] == [
        (1, "packaged", packaged.version), (2, "packaged", "critic-v3")]
    assert (await store.seed("critic", packaged)).number == 1  # an older replica restarts


async def test_writers_racing_on_one_role_lose_nothing(resolver: VariantResolver) -> None:
    store = resolver.prompts
    await seed_packaged_prompts(store)
    texts = [Prompt(version=f"v{i}", text=f"critic prompt number {i}") for i in range(8)]
    numbers: dict[str, int] = {}

    async def push(prompt: Prompt) -> None:
        numbers[prompt.text] = (await store.push("critic", prompt)).number

    async with anyio.create_task_group() as tg:
        for prompt in [*texts, *texts, *texts]:  # each text three times, all at once
            tg.start_soon(push, prompt)
    index = await store.require_index("critic")
    # No number is skipped: a writer that lost the index race keeps the number it claimed.
    assert [v.number for v in index.versions] == list(range(1, 10))
    assert len({v.sha256 for v in index.versions}) == 9
    for prompt in texts:
        assert (await store.text("critic", numbers[prompt.text])).text == prompt.text


async def test_unknown_versions_labels_and_variants_are_errors_that_say_what_exists(
    resolver: VariantResolver,
) -> None:
    store = resolver.prompts
    await seed_packaged_prompts(store)
    await store.push("critic", TERSE, label="candidate")
    with pytest.raises(UnknownPromptError, match=r"critic has no prompt '7'.*versions 1-2; "
                       r"labels candidate=2, production=1"):
        await store.resolve("critic", "7")
    with pytest.raises(UnknownPromptError, match="no prompt 'nosuch'"):
        await store.resolve("critic", "nosuch")
    with pytest.raises(UnknownPromptError):
        await store.label("critic", 9, PRODUCTION)
    with pytest.raises(ValueError, match="starting with a letter"):
        await store.label("critic", 2, "2")
    with pytest.raises(UnknownVariantError, match="variant 'nosuch' does not exist"):
        await resolver.resolve("nosuch", "critic")
    await resolver.variants.set_role("ghost", "critic", {"prompt": "gone"})
    with pytest.raises(UnknownPromptError, match="variant 'ghost' asks for critic prompt "
                       "'gone', which does not exist"):
        await resolver.check("ghost")
    await resolver.check(PRODUCTION)


def test_a_prompt_file_without_what_a_version_needs_is_refused_in_one_line() -> None:
    assert parse_prompt("---\nversion: x\n---\nHello\n", "f.md") == Prompt("x", "Hello")
    assert parse_prompt("---\r\nversion: x\r\n---\r\nHi", "f.md").text == "Hi"
    cases = {
        "Just text\n": "must start with a '---' header",
        "---\nversion: x\nHello\n": "not closed",
        "---\nname: x\n---\nHello\n": "no 'version: NAME' line",
        "---\nversion:   \n---\nHello\n": "no 'version: NAME' line",
        "---\nversion: x\n---\n \n\n": "has no prompt text",
    }
    for raw, message in cases.items():
        with pytest.raises(PromptFileError, match=message) as caught:
            parse_prompt(raw, "f.md")
        assert "\n" not in str(caught.value)
    for role in AGENTS:  # the packaged files obey the format they define
        assert load_prompt(f"{role}.md").text


async def test_variants_keep_the_other_roles_and_fields_when_one_is_set(
    resolver: VariantResolver,
) -> None:
    store: VariantStore = resolver.variants
    await store.set_role("fast", "critic", {"model": "gpt-4o-mini"}, description="cheap")
    await store.set_role("fast", "critic", {"temperature": 0.2})
    variant = await store.set_role("fast", "planner", {"prompt": "candidate"})
    assert variant.override("critic").model == "gpt-4o-mini"
    assert variant.override("critic").temperature == 0.2
    assert variant.override("planner").prompt == "candidate"
    assert variant.description == "cheap"
    assert [v.name for v in await store.all()] == ["fast"]
    await store.delete("fast")
    assert await store.all() == []
    with pytest.raises(UnknownVariantError):
        await store.delete("fast")
    with pytest.raises(ValueError, match="implicit variant"):
        await store.set_role(PRODUCTION, "critic", {"model": "m"})


async def test_the_watched_cache_follows_label_moves_and_deletions(
    resolver: VariantResolver, nc: NATS
) -> None:
    """What an agent replica sees, without a restart: the watch delivers each change."""
    store = resolver.prompts
    await seed_packaged_prompts(store)
    await store.push("critic", TERSE, label="candidate")
    await resolver.variants.set_role("terse", "critic", {"prompt": "candidate"})
    # A second writer on its own connection, as `crewbus prompt label` would be.
    other = PromptStore(await nc.jetstream().key_value(subjects.PROMPTS_KV))
    async with anyio.create_task_group() as tg:
        await tg.start(resolver.watch)
        with anyio.fail_after(30):
            await resolver.watched.wait()
        assert set(resolver._indexes) == set(AGENTS)  # served from the cache now
        assert (await resolver.resolve(PRODUCTION, "critic")).prompt_version == "1"
        assert (await resolver.resolve("terse", "critic")).prompt_text == TERSE.text

        await other.push("critic", STRICT, label="candidate")
        await other.label("critic", 2, PRODUCTION)
        with anyio.fail_after(30):
            while (resolver._indexes["critic"].labels.get(PRODUCTION) != 2
                   or resolver._indexes["critic"].labels.get("candidate") != 3):
                await anyio.sleep(0.02)
        production = await resolver.resolve(PRODUCTION, "critic")
        assert (production.prompt_version, production.prompt_text) == ("2", TERSE.text)
        assert (await resolver.resolve("terse", "critic")).prompt_text == STRICT.text

        assert "terse" in resolver._variants
        await resolver.variants.delete("terse")
        with anyio.fail_after(30):
            while "terse" in resolver._variants:
                await anyio.sleep(0.02)
        with pytest.raises(UnknownVariantError):
            await resolver.resolve("terse", "critic")
        tg.cancel_scope.cancel()
