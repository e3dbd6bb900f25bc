"""Test helpers for replay and shadow: a local HTTP site that counts its requests, a
candidate variant whose planner prompt carries a marker, and a scripted planner that
plans differently for the candidate (the simulated model follows the steps' tool
directives)."""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from crewbus.client import CrewbusClient
from crewbus.llm.simulated import SimReply
from crewbus.variants import PromptStore, VariantStore
from crewbus_agents.prompts import Prompt
from crewbus_contracts import subjects

MARKER = "CANDIDATE-PLANNER"
CANDIDATE = "candidate"


class Site:
    """A 127.0.0.1 HTTP server recording every path it was asked for."""

    def __init__(self, server: ThreadingHTTPServer) -> None:
        self.server = server
        self.port = server.server_address[1]
        self.requests: list[str] = []

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"


@contextmanager
def local_site() -> Iterator[Site]:
    holder: list[Site] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            holder[0].requests.append(self.path)
            body = b"hello from the site"
            self.send_response(200)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    holder.append(Site(server))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield holder[0]
    finally:
        server.shutdown()
        server.server_close()


def use(tool: str, arguments: dict[str, Any]) -> str:
    return f"use tool {tool} with {json.dumps(arguments)}"


def planner(plans: Callable[[str, bool], list[str]]) -> Callable[[dict[str, Any]], SimReply]:
    """A planner answering one executor step whose instruction is `plans(task text,
    candidate)` joined: the candidate is told apart by its prompt's marker."""

    def reply(body: dict[str, Any]) -> SimReply:
        messages = body["messages"]
        candidate = MARKER in messages[0]["content"]
        user = messages[-1]["content"]
        directives = plans(user, candidate)
        plan = {"steps": [{"id": "e1", "role": "executor",
                           "instruction": "Do it. " + " ".join(directives)}],
                "rationale": "one executor step"}
        return SimReply(content=json.dumps(plan))

    return reply


async def make_candidate(client: CrewbusClient) -> None:
    """Variant `candidate`: the planner's prompt with the marker, the rest production's."""
    js = client.js
    prompts = PromptStore(await js.key_value(subjects.PROMPTS_KV))
    variants = VariantStore(await js.key_value(subjects.VARIANTS_KV))
    await prompts.push("planner", Prompt(version="planner-candidate",
                                         text=f"You are the planner ({MARKER}). Plan it."),
                       label=CANDIDATE)
    await variants.set_role(CANDIDATE, "planner", {"prompt": CANDIDATE})
