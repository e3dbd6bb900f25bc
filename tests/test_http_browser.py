"""The web UI in a real browser: headless Chromium (Debian's `chromium`, driven by
Playwright's Python API) logs in with an API key, submits a task and watches its timeline
fill live to "completed", approves a paused tool call from the inbox and sees the task
resume, cancels a running task, and opens the trace. Screenshots go to `.artifacts/ui/`."""

from __future__ import annotations

import json
import shutil
from collections.abc import AsyncIterator
from pathlib import Path

import anyio
import pytest

from crewbus.devstack.nats_server import NatsServer
from crewbus.llm.simulated import SimReply, SimulatedModel
from crewbus_agents.tools import ToolSettings
from tests.gateway_helpers import http_stack, keys_enforced

pytestmark = pytest.mark.anyio

CHROMIUM = shutil.which("chromium") or shutil.which("chromium-browser")
ARTIFACTS = Path(__file__).resolve().parents[1] / ".artifacts" / "ui"
TIMEOUT_MS = 60_000


@pytest.fixture
async def browser() -> AsyncIterator[object]:
    if CHROMIUM is None:
        pytest.skip("Debian's chromium is not installed (`apt-get install chromium`, as "
                    ".ci/run does); Playwright's own browser download cannot work here")
    from playwright.async_api import async_playwright

    async with async_playwright() as p:
        launched = await p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                           args=["--no-sandbox"])
        yield launched
        await launched.close()


async def test_a_person_logs_in_submits_watches_approves_cancels_and_reads_the_trace(
    nats_server: NatsServer, model: SimulatedModel, browser: object, tmp_path: Path
) -> None:
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    tools = ToolSettings(workspace_root=str(tmp_path / "workspaces"))
    model.script("executor",
                 SimReply(tool_calls=[("write_file", json.dumps({"path": "note.txt",
                                                                 "content": "hi"}))]),
                 SimReply(content="Wrote note.txt."))
    async with http_stack(nats_server.url, model.base_url, tool_settings=tools) as s:
        key, _ = await s.gateway.app.state.bus.keys.create("ada", ["admin"])
        await keys_enforced(s.http)  # the open gateway notices the key and closes
        context = await browser.new_context(viewport={"width": 1100, "height": 900})  # type: ignore[attr-defined]
        context.set_default_timeout(TIMEOUT_MS)
        page = await context.new_page()

        # Log in: the UI sends a browser without a key to the login page.
        await page.goto(f"{s.gateway.url}/ui/")
        assert "/ui/login" in page.url
        await page.fill("#key", key)
        await page.click("button[type=submit]")
        await page.wait_for_url(f"{s.gateway.url}/ui/")
        assert "key: ada" in await page.inner_text("header")

        # A task that pauses for approval: the timeline shows the request live.
        await page.fill("#text", "Write a note to a file")
        await page.click("#submit-form button")
        await page.wait_for_url("**/ui/tasks/*")
        approval_task = page.url.rsplit("/", 1)[1]
        await page.wait_for_selector("li[data-kind=approval_requested]")
        await page.wait_for_selector("#task-status.awaiting_approval")
        await page.screenshot(path=ARTIFACTS / "task-awaiting-approval.png", full_page=True)

        # The inbox lists it with its tool and arguments; approving resumes the task.
        await page.goto(f"{s.gateway.url}/ui/approvals")
        waiting = page.locator(f"#waiting-{approval_task}")
        assert "write_file" in await waiting.inner_text()
        assert "note.txt" in await waiting.inner_text()
        await page.screenshot(path=ARTIFACTS / "approvals.png", full_page=True)
        await waiting.locator("input[name=reason]").fill("looks fine")
        await waiting.locator("button[value=approve]").click()
        await page.wait_for_selector("#inbox-empty")
        await page.goto(f"{s.gateway.url}/ui/tasks/{approval_task}")
        await page.wait_for_selector("#task-status.completed")
        assert (Path(tools.workspace_root) / approval_task / "note.txt").read_text() == "hi"
        assert "Approved" in await page.inner_text("#timeline")

        # A plain task, watched live from the submit form to "completed".
        await page.goto(f"{s.gateway.url}/ui/")
        await page.fill("#text", "Compare NATS JetStream and Kafka for a small team")
        await page.click("#submit-form button")
        await page.wait_for_url("**/ui/tasks/*")
        await page.wait_for_selector("li[data-kind=task_planned]")
        await page.wait_for_selector("li[data-kind=task_completed]")
        await page.wait_for_selector("#task-status.completed")
        timeline = await page.inner_text("#timeline")
        assert "Plan, round 1" in timeline and "Critique, round 1" in timeline
        assert await page.locator("#answer").count() == 1
        assert await page.locator("#cancel-form").count() == 0
        await page.screenshot(path=ARTIFACTS / "task-completed.png", full_page=True)

        # Its trace: the span tree, collapsible, with the model calls.
        await page.click("#trace-link")
        await page.wait_for_selector("details.span.task")
        with anyio.fail_after(30):  # spans are stored a moment after the work
            while await page.locator("details.span.chat").count() == 0:
                await page.reload()
                await anyio.sleep(0.3)
        assert "invoke_agent planner" in await page.inner_text("#trace")
        await page.screenshot(path=ARTIFACTS / "trace.png", full_page=True)

        # A slow task, cancelled with its button.
        model.script("researcher", SimReply(delay_s=30.0), SimReply(delay_s=30.0))
        await page.goto(f"{s.gateway.url}/ui/")
        await page.fill("#text", "A task nobody needs any more")
        await page.click("#submit-form button")
        await page.wait_for_url("**/ui/tasks/*")
        await page.wait_for_selector("li[data-kind=task_planned]")
        await page.fill("#cancel-reason", "not needed")
        await page.click("#cancel-form button")
        await page.wait_for_selector("#task-status.cancelled")

        # The task list at phone width, readable in monochrome.
        phone = await browser.new_context(  # type: ignore[attr-defined]
            viewport={"width": 375, "height": 800}, is_mobile=True,
            storage_state=await context.storage_state())
        small = await phone.new_page()
        await small.goto(f"{s.gateway.url}/ui/")
        rows = await small.locator("#tasks tbody tr").count()
        width = await small.evaluate("document.documentElement.scrollWidth")
        await small.emulate_media(color_scheme="light", forced_colors="active")
        await small.screenshot(path=ARTIFACTS / "tasks-phone.png", full_page=True)
        await small.goto(f"{s.gateway.url}/ui/tasks/{approval_task}")
        await small.screenshot(path=ARTIFACTS / "task-phone.png", full_page=True)
        statuses = await small.locator(".status").all_inner_texts()
        await phone.close()
        await context.close()
    assert rows == 3
    assert width <= 375, f"the page is {width}px wide at phone width"
    assert all(text.strip() for text in statuses)  # a word for each status, not a colour


async def test_experiments_and_a_comparison_fit_a_phone(
    nats_server: NatsServer, model: SimulatedModel, browser: object
) -> None:
    from tests.test_http_experiments import run_experiment

    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    async with http_stack(nats_server.url, model.base_url) as s:
        await run_experiment(s, "base", failing=set())
        await run_experiment(s, "cand", failing={"q1"})
        phone = await browser.new_context(  # type: ignore[attr-defined]
            viewport={"width": 375, "height": 800}, is_mobile=True)
        phone.set_default_timeout(TIMEOUT_MS)
        page = await phone.new_page()
        await page.goto(f"{s.gateway.url}/ui/")
        await page.click("header a[href='/ui/experiments']")
        await page.wait_for_selector("#experiments")
        await page.screenshot(path=ARTIFACTS / "experiments-phone.png", full_page=True)
        await page.click("#experiments a[href='/ui/experiments/cand']")
        await page.wait_for_selector("#run-items")
        first_row = await page.locator("#run-items tbody tr").first.inner_text()
        widths = [await page.evaluate("document.documentElement.scrollWidth")]
        await page.screenshot(path=ARTIFACTS / "experiment-phone.png", full_page=True)
        await page.goto(f"{s.gateway.url}/ui/compare")
        await page.select_option("#baseline", "base")
        await page.select_option("#candidate", "cand")
        await page.click("#compare-form button")
        await page.wait_for_selector("table.regressed")
        widths.append(await page.evaluate("document.documentElement.scrollWidth"))
        await page.emulate_media(forced_colors="active")
        await page.screenshot(path=ARTIFACTS / "compare-phone.png", full_page=True)
        regressed = await page.locator("table.regressed tbody tr").all_inner_texts()
        await page.click("table.regressed a:text('candidate')")
        await page.wait_for_selector("#task-status")
        await phone.close()
    assert "✗" in first_row and "q1" in first_row  # the failure first, marked without colour
    assert all(w <= 375 for w in widths), f"pages are {widths}px wide at phone width"
    assert len(regressed) == 1 and "q1" in regressed[0]
