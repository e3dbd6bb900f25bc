"""A service whose set-up NATS stops answering starts again instead of exiting: here its
first NATS has no JetStream (every JetStream request finds no responder, as while a
restarted nats-server recovers its streams), then a JetStream server takes the port."""

from __future__ import annotations

import subprocess
from pathlib import Path

from crewbus.devstack.nats_server import NatsServer, free_port, nats_server_binary
from tests.stack import PROCESS_START_S, service_env, spawn_service, wait_until


def test_an_agent_starting_while_jetstream_does_not_answer_starts_again_and_gets_ready(
    tmp_path: Path,
) -> None:
    port = free_port()
    without_jetstream = subprocess.Popen(
        [nats_server_binary(), "-a", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    logs = tmp_path / "logs"
    # Nothing here calls the model: the address only has to be well formed.
    # A short connect timeout: the set-up gives up on JetStream sooner, and starts again.
    env = service_env(f"nats://127.0.0.1:{port}", "http://127.0.0.1:9/v1", connect_timeout_s=15)
    planner = spawn_service("planner", env, logs)
    server = NatsServer(tmp_path / "js", port=port)
    try:
        def log() -> str:
            return "".join(p.read_text(errors="replace") for p in logs.glob("*.log"))

        wait_until(lambda: "starting again" in log() or planner.poll() is not None,
                    PROCESS_START_S, "the planner starting again")
        assert planner.poll() is None, log()
        without_jetstream.terminate()
        without_jetstream.wait(30)
        server.start()
        wait_until(lambda: "planner ready" in log() or planner.poll() is not None,
                    PROCESS_START_S, "the planner ready once JetStream answers")
        assert planner.poll() is None, log()
        assert "Traceback" not in log(), log()
    finally:
        planner.terminate()
        planner.wait(60)
        if without_jetstream.poll() is None:
            without_jetstream.kill()
        server.stop()
