"""HTTP gateway benchmark (issue 12): what the gateway adds to a task, and many open streams.

1. submit -> result through HTTP (`POST /v1/tasks`, then `GET /v1/tasks/{id}/events` until
   the terminal event) against the same through the Python bus client (`submit`, then the
   events on NATS), alternating, on one stack; p50 of each and of the difference. The
   submit round trip alone (HTTP `POST` against `crewbus.submit` request/reply) is measured
   too: it is the gateway's own hop, free of the task's noise.
2. N concurrent SSE streams (default 200) on a task that stays running, held open for a
   bounded time: errors, heartbeats received, and the gateway process's memory over time.

The orchestrator, the agents and the simulated model (zero latency) run in this process's
event loop; the gateway is its own process (`python -m crewbus serve gateway`), as
deployed. Everything listens on 127.0.0.1.

    .venv/bin/python bench/gateway.py [--tasks 40] [--streams 200] [--hold 60] [--quick]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import anyio
import httpx

ROOT = Path(__file__).resolve().parent.parent


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__,
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tasks", type=int, default=40, help="tasks per path (alternating)")
    parser.add_argument("--streams", type=int, default=200, help="concurrent SSE streams")
    parser.add_argument("--hold", type=float, default=60.0, help="seconds the streams stay open")
    parser.add_argument("--quick", action="store_true", help="10 tasks, 200 streams for 5 s")
    args = parser.parse_args(argv)
    if args.quick:
        args.tasks, args.hold = 10, 5.0
    return args


def p50(values: list[float]) -> float:
    return statistics.median(values) * 1000


def rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def free_port() -> int:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


async def wait_ready(url: str, proc: subprocess.Popen[bytes]) -> None:
    async with httpx.AsyncClient() as http:
        with anyio.fail_after(60):
            while True:
                if proc.poll() is not None:
                    raise RuntimeError(f"the gateway exited with {proc.returncode}")
                try:
                    if (await http.get(f"{url}/readyz")).status_code == 200:
                        return
                except httpx.HTTPError:
                    pass
                await anyio.sleep(0.1)


async def http_task(http: httpx.AsyncClient, text: str) -> tuple[float, float]:
    """(submit round trip, submit -> terminal event), over HTTP."""
    started = time.perf_counter()
    response = await http.post("/v1/tasks", json={"text": text})
    submitted = time.perf_counter()
    task_id = response.json()["task_id"]
    async with http.stream("GET", f"/v1/tasks/{task_id}/events") as stream:
        async for line in stream.aiter_lines():
            if line.startswith("event: task_"):
                kind = line.removeprefix("event: ")
                if kind in ("task_completed", "task_failed", "task_cancelled"):
                    break
    return submitted - started, time.perf_counter() - started


async def bus_task(client: object, text: str) -> tuple[float, float]:
    """The same through the Python bus client."""
    import contextlib

    from crewbus_contracts import TERMINAL_EVENTS, SubmitTask

    started = time.perf_counter()
    accepted = await client.submit(SubmitTask(text=text))  # type: ignore[attr-defined]
    submitted = time.perf_counter()
    events = client.events(accepted.task_id)  # type: ignore[attr-defined]
    async with contextlib.aclosing(events) as stream:
        async for event in stream:
            if isinstance(event, TERMINAL_EVENTS):
                break
    return submitted - started, time.perf_counter() - started


async def hold_streams(url: str, task_id: str, count: int, hold_s: float,
                       gateway_pid: int) -> dict[str, float]:
    errors: list[str] = []
    heartbeats = [0] * count
    events = [0] * count
    memory: list[float] = [rss_mb(gateway_pid)]
    limits = httpx.Limits(max_connections=count + 10, max_keepalive_connections=count + 10)
    async with httpx.AsyncClient(base_url=url, limits=limits, timeout=hold_s + 30) as http:

        async def one(i: int) -> None:
            try:
                with anyio.move_on_after(hold_s):
                    async with http.stream("GET", f"/v1/tasks/{task_id}/events") as stream:
                        if stream.status_code != 200:
                            errors.append(f"status {stream.status_code}")
                            return
                        async for line in stream.aiter_lines():
                            if line.startswith(": heartbeat"):
                                heartbeats[i] += 1
                            elif line.startswith("id: "):
                                events[i] += 1
                        errors.append("stream ended early")
            except Exception as exc:  # counted, not raised: the figure is the count
                errors.append(type(exc).__name__)

        async def sample() -> None:
            while True:
                await anyio.sleep(max(hold_s / 6, 0.5))
                memory.append(rss_mb(gateway_pid))

        started = time.perf_counter()
        async with anyio.create_task_group() as tg:
            tg.start_soon(sample)
            async with anyio.create_task_group() as streams:
                for i in range(count):
                    streams.start_soon(one, i)
            tg.cancel_scope.cancel()
        took = time.perf_counter() - started
    memory.append(rss_mb(gateway_pid))
    return {"streams": count, "held_s": took, "errors": len(errors),
            "min_heartbeats": min(heartbeats), "min_events": min(events),
            "rss_start_mb": memory[0], "rss_peak_mb": max(memory), "rss_end_mb": memory[-1]}


async def main(args: argparse.Namespace) -> int:
    sys.path.insert(0, str(ROOT))  # run as a script: make `tests` importable
    from crewbus.devstack.nats_server import NatsServer
    from crewbus.llm.simulated import SimReply, SimulatedModel
    from crewbus_contracts import SubmitTask
    from tests.stack import in_process_stack

    with tempfile.TemporaryDirectory() as tmp:
        server = NatsServer(Path(tmp) / "nats").start()
        model = SimulatedModel()
        await model.start()
        assert model.base_url is not None
        port = free_port()
        env = {**os.environ, "CREWBUS_NATS_URL": server.url, "CREWBUS_HTTP_PORT": str(port),
               "CREWBUS_HTTP_SSE_HEARTBEAT_S": "1", "CREWBUS_METRICS_PORT": "0",
               "CREWBUS_HTTP_RATE_PER_MINUTE": "100000"}
        log = open(Path(tmp) / "gateway.log", "wb")  # noqa: SIM115
        gateway = subprocess.Popen([sys.executable, "-m", "crewbus", "serve", "gateway"],
                                   env=env, stdout=log, stderr=subprocess.STDOUT)
        url = f"http://127.0.0.1:{port}"
        try:
            async with in_process_stack(server.url, model.base_url) as client:
                await wait_ready(url, gateway)
                async with httpx.AsyncClient(base_url=url, timeout=60) as http:
                    for i in range(3):  # warm both paths up
                        await http_task(http, f"warm-up {i}")
                        await bus_task(client, f"warm-up bus {i}")
                    bare = []
                    for _ in range(50):
                        started = time.perf_counter()
                        await http.get("/healthz")
                        bare.append(time.perf_counter() - started)
                    via_http, via_bus = [], []
                    for i in range(args.tasks):
                        via_http.append(await http_task(http, f"Compare queues, HTTP {i}"))
                        via_bus.append(await bus_task(client, f"Compare queues, bus {i}"))
                    model.script("researcher", SimReply(delay_s=args.hold + 30))
                    slow = await client.submit(SubmitTask(text="Held open by the streams"))
                held = await hold_streams(url, slow.task_id, args.streams, args.hold,
                                          gateway.pid)
        finally:
            gateway.terminate()
            gateway.wait(15)
            await model.stop()
            server.stop()
    submit_http, submit_bus = p50([s for s, _ in via_http]), p50([s for s, _ in via_bus])
    e2e_http, e2e_bus = p50([e for _, e in via_http]), p50([e for _, e in via_bus])
    print(f"tasks per path: {args.tasks} (alternating, one stack, gateway in its own process)")
    print(f"bare HTTP round trip (GET /healthz) p50: {p50(bare):.2f} ms")
    print(f"submit round trip p50: HTTP {submit_http:.2f} ms, bus {submit_bus:.2f} ms, "
          f"gateway adds {submit_http - submit_bus:.2f} ms")
    print(f"submit -> result p50:  HTTP {e2e_http:.1f} ms, bus {e2e_bus:.1f} ms, "
          f"difference {e2e_http - e2e_bus:+.1f} ms")
    print(f"SSE: {held['streams']:.0f} streams held {held['held_s']:.1f} s, "
          f"{held['errors']:.0f} errors, each got >= {held['min_heartbeats']:.0f} heartbeats "
          f"and >= {held['min_events']:.0f} events; gateway RSS {held['rss_start_mb']:.0f} MB "
          f"at start, peak {held['rss_peak_mb']:.0f} MB, {held['rss_end_mb']:.0f} MB at end")
    return 1 if held["errors"] else 0


if __name__ == "__main__":
    sys.exit(anyio.run(main, parse_args()))
