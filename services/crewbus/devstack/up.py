"""`crewbus up`: NATS, the simulated model when no model is configured, the orchestrator and
one replica of each agent, as child processes of this one, until Ctrl-C."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path

import anyio

from crewbus.auth.permissions import ADMIN
from crewbus.bus.connection import connect_for_command
from crewbus.bus.topology import ensure_topology
from crewbus.config import Settings, load_settings
from crewbus.devstack.cluster import (
    CLUSTER_REPLICAS,
    MAX_NODES,
    MIN_NODES,
    ClusterSizeError,
    NatsCluster,
    wait_for_jetstream,
)
from crewbus.devstack.nats_auth import set_up_bus, stack_auth
from crewbus.devstack.nats_server import NatsServer
from crewbus.devstack.processes import STOP_TIMEOUT_S, env_with, spawn_crewbus, stop_all
from crewbus.devstack.readiness import (
    READY_WAIT_S,
    ChildExitedError,
    Probe,
    probe_host,
    wait_until_ready,
)
from crewbus.llm.settings import SIMULATED_MODEL_NAME, SIMULATED_MODEL_PORT, uses_simulated_model
from crewbus.render import SIMULATED_NOTE
from crewbus.service_names import BUS_SERVICES, EVALUATOR, GATEWAY
from crewbus.tracing.topology import ensure_trace_stream
from crewbus_contracts import AGENT_ROLES

SIGNAL_RACE_S = 1.0
"""How long a child's exit waits for a signal to this process that would explain it."""


class PortInUseError(RuntimeError):
    def __init__(self, what: str, port: int, hint: str) -> None:
        super().__init__(f"port {port} for {what} is in use: is another crewbus up running? "
                         f"({hint})")


def _check_port_free(what: str, port: int, hint: str) -> None:
    """Refuse a port something listens on. SO_REUSEADDR, as the servers themselves bind,
    so connections of a stack just stopped (TIME_WAIT) do not count as in use."""
    with socket.socket() as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        try:
            s.bind(("127.0.0.1", port))
        except OSError as exc:
            raise PortInUseError(what, port, hint) from exc


async def run_stack(nats_url: str | None, nats_port: int,
                    model_port: int = SIMULATED_MODEL_PORT, cluster: int = 1,
                    creds_dir: str | None = None, no_auth: bool = False) -> int:
    settings = load_settings()
    root = Path(settings.data.data_dir).resolve()
    auth = stack_auth(root, creds_dir, no_auth, external=nats_url is not None)
    auth_dir = auth.directory if auth else None
    logs = root / "logs"
    nats: NatsServer | NatsCluster | None = None
    children: list[tuple[str, subprocess.Popen[bytes]]] = []
    exit_code = 1
    bus_env: dict[str, str] = {}
    try:
        if cluster > 1 and nats_url is not None:
            raise ValueError("--cluster starts its own nats-servers; leave out --nats")
        if cluster > 1:
            nats = _cluster_on_ports(root, cluster, nats_port,
                                     auth.server_config if auth else None)
        elif nats_url is None:
            _check_port_free("NATS", nats_port, "pick another with --nats-port, or pass --nats")
        else:  # say so now, not after every child has waited for it in vain
            await (await connect_for_command(nats_url, ADMIN, auth_dir)).close()
        simulated_roles = [r for r in AGENT_ROLES if uses_simulated_model(settings.llm[r])]
        if simulated_roles:
            _check_port_free("the simulated model", model_port, "pick another with --model-port")
        services = bus_services(settings)
        metrics_base = settings.metrics.metrics_port
        for offset, service in enumerate(services):
            if metrics_base:
                _check_port_free(f"the {service}'s metrics", metrics_base + offset,
                                 "set CREWBUS_METRICS_PORT to another base, or 0 for none")
        _check_port_free("the HTTP gateway", settings.http.port,
                         "set CREWBUS_HTTP_PORT to another port")
        if isinstance(nats, NatsCluster):
            bus_env = await _start_cluster(nats, auth_dir)
            nats_url = nats.url
        elif nats_url is None:
            nats = NatsServer(root / "nats", port=nats_port,
                              config_file=auth.server_config if auth else None).start()
            nats_url = nats.url
        if auth is not None and not isinstance(nats, NatsCluster):  # a cluster's: above
            await set_up_bus(nats_url, settings, auth)
        env = env_with({"CREWBUS_NATS_URL": nats_url, "CREWBUS_DATA_DIR": str(root),
                        **bus_env})
        if EVALUATOR in services:  # the children resolve it as this process does
            env["CREWBUS_EVALUATORS_FILE"] = str(
                Path(settings.evaluator.evaluators_file).resolve())
        models: dict[str, str] = {}
        metrics_ports: dict[str, str] = {}
        if simulated_roles:
            sim_url = f"http://127.0.0.1:{model_port}/v1"
            children.append(("simulated-model", spawn_crewbus(
                ["--debug", "serve", "simulated-model", "--port", str(model_port)],
                {**env, "CREWBUS_METRICS_PORT": "0"}, logs / "simulated-model.log")))
            for role in simulated_roles:
                env[f"CREWBUS_{role.upper()}_BASE_URL"] = sim_url
                env[f"CREWBUS_{role.upper()}_MODEL"] = SIMULATED_MODEL_NAME
            if uses_simulated_model(settings.judge):  # the evaluator's llm_judge scorers
                env["CREWBUS_JUDGE_BASE_URL"] = sim_url
                env["CREWBUS_JUDGE_MODEL"] = SIMULATED_MODEL_NAME
        children_models = load_settings(env).llm
        for role in AGENT_ROLES:
            model = children_models[role]
            where = f" at {model.base_url}" if model.base_url else ""
            models[role] = f"{model.model}{where}"
        for offset, service in enumerate(services):
            port = str(metrics_base + offset) if metrics_base else "0"
            metrics_ports[service] = port
            child_env = {**env, "CREWBUS_METRICS_PORT": port,
                         **(auth.child_env(service) if auth else {})}
            children.append((service, spawn_crewbus(
                ["--debug", "serve", service], child_env, logs / f"{service}.log")))
        children.append((GATEWAY, spawn_crewbus(  # serves /metrics on its own port
            ["--debug", "serve", GATEWAY], {**env, "CREWBUS_METRICS_PORT": "0",
                                            **(auth.child_env(GATEWAY) if auth else {})},
            logs / f"{GATEWAY}.log")))
        gateway_line = await _gateway_line(nats_url, settings.http.host, settings.http.port,
                                           auth_dir)
        probes = [Probe(name, f"http://127.0.0.1:{port}/readyz")
                  for name, port in metrics_ports.items() if port != "0"]
        probes.append(Probe(GATEWAY, f"http://{probe_host(settings.http.host)}:"
                                     f"{settings.http.port}/readyz"))
        if simulated_roles:
            probes.append(Probe("simulated-model", f"http://127.0.0.1:{model_port}/v1/models"))
        try:
            starting = await wait_until_ready(probes, children)
        except ChildExitedError as exc:
            print(f"{exc}; stopping", file=sys.stderr)
            return 1
        _print_banner(nats_url, nats, children, models, metrics_ports, simulated_roles, root,
                      {GATEWAY: gateway_line}, auth_dir, starting)
        exit_code = await _wait(children)
    finally:
        clean = _stop(children, nats)
    return exit_code if clean else 1


def bus_services(settings: Settings) -> tuple[str, ...]:
    """The bus services to start: every one, and an evaluator when an evaluators file is
    configured (`CREWBUS_EVALUATORS_FILE`), checked here so a bad one stops `up` at once."""
    if not settings.evaluator.evaluators_file:
        return BUS_SERVICES
    from crewbus.evals.online.config import load_evaluators_file

    load_evaluators_file(settings.evaluator.evaluators_file)
    return (*BUS_SERVICES, EVALUATOR)


def _cluster_on_ports(root: Path, size: int, first_port: int,
                      config_file: Path | None) -> NatsCluster:
    """`size` nats-servers on ports `first_port`.., their stores under `root/nats-cluster`,
    each with the stack's users and permissions (`config_file`) when auth is on."""
    if not MIN_NODES <= size <= MAX_NODES:  # a usage error first, then the machine's
        raise ClusterSizeError(size)
    ports = [first_port + i for i in range(size)]
    for port in ports:
        _check_port_free("NATS", port, "pick another first port with --nats-port")
    return NatsCluster(root / "nats-cluster", size, ports, config_file=config_file)


async def _start_cluster(nats: NatsCluster, auth_dir: Path | None) -> dict[str, str]:
    """Start the nodes, wait for their JetStream meta leader, create the topology at the
    cluster's replicas (here once, rather than by every service racing to); returns the
    variables that give the services the cluster's URLs and replicas."""
    nats.start()
    await wait_for_jetstream(nats.url, creds_dir=auth_dir)
    bus_env = {"CREWBUS_NATS_URL": nats.url, "CREWBUS_STREAM_REPLICAS": str(CLUSTER_REPLICAS)}
    nc = await connect_for_command(nats.url, ADMIN, auth_dir)
    try:
        cluster_settings = load_settings(env_with(bus_env))
        await ensure_topology(nc.jetstream(), cluster_settings.bus)
        await ensure_trace_stream(nc.jetstream(), cluster_settings.tracing)
    finally:
        await nc.close()
    return bus_env


def _stop(children: list[tuple[str, subprocess.Popen[bytes]]],
          nats: NatsServer | NatsCluster | None) -> bool:
    """Stop the services together, then nats-server last (they need it to hand work back).
    Signals are ignored meanwhile: the stop is bounded, and a second Ctrl-C reaches the
    services themselves, which then stop at once. False if something had to be killed."""
    if not children and nats is None:
        return True
    started = time.monotonic()
    previous = {sig: signal.signal(sig, signal.SIG_IGN) for sig in (signal.SIGINT, signal.SIGTERM)}
    try:
        killed = stop_all([p for _, p in children])
        for name, proc in children:
            if proc in killed:
                print(f"{name} did not stop within {STOP_TIMEOUT_S:.0f}s; killed it",
                      file=sys.stderr)
        if nats is not None:
            nats.stop()
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    print(f"crewbus stopped in {time.monotonic() - started:.1f}s; no process left running.",
          file=sys.stderr)
    return not killed


async def _gateway_line(nats_url: str, host: str, port: int, auth_dir: Path | None) -> str:
    """Where the gateway listens and who may use it, decided as the gateway decides it."""
    from crewbus.httpapi.access import access_line, choose_host
    from crewbus.httpapi.apikeys import open_key_store

    nc = await connect_for_command(nats_url, ADMIN, auth_dir)
    try:
        have_keys = await (await open_key_store(nc.jetstream())).any()
    finally:
        await nc.close()
    bound, _ = choose_host(host, have_keys)
    return f"  http://{bound}:{port}/ (UI, API, /metrics; {access_line(have_keys)})"


def _print_banner(
    nats_url: str, nats: NatsServer | NatsCluster | None,
    children: list[tuple[str, subprocess.Popen[bytes]]], models: dict[str, str],
    metrics_ports: dict[str, str], simulated_roles: Sequence[str], root: object,
    notes: dict[str, str] | None = None, auth_dir: Path | None = None,
    starting: Sequence[str] = (),
) -> None:
    print("crewbus is up" if not starting else
          f"crewbus is up, but {', '.join(starting)} did not answer within "
          f"{READY_WAIT_S:.0f}s: still starting (see the logs)", flush=True)
    kind = "external"
    if isinstance(nats, NatsCluster):
        pids = ", ".join(str(n.process.pid) for n in nats.nodes if n.process is not None)
        kind = (f"{len(nats.nodes)}-node JetStream cluster, pids {pids}, replicas "
                f"{CLUSTER_REPLICAS}, stores in {root}/nats-cluster")
    elif nats is not None and nats.process is not None:
        kind = f"embedded nats-server pid {nats.process.pid}, JetStream in {root}/nats"
    print(f"  NATS        {nats_url} ({kind})")
    access = (f"one identity per service, credentials in {auth_dir}/ (crewbus auth show)"
              if auth_dir else "no authentication: anyone who reaches it can do anything")
    print(f"  NATS auth   {access}")
    for name, proc in children:
        port = metrics_ports.get(name, "0")
        where = f"  metrics http://127.0.0.1:{port}/metrics" if port != "0" else ""
        model = f"  model {models[name]}" if name in models else ""
        note = (notes or {}).get(name, "")
        print(f"  {name:<16} pid {proc.pid:<7}{where}{model}{note}")
    if simulated_roles:
        print(f"  NOTE: {', '.join(simulated_roles)} use the crewbus SIMULATED model "
              f"({SIMULATED_NOTE.split(', ')[1]}); set OPENAI_API_KEY / OPENAI_BASE_URL for "
              "a real one.")
    print(f"  logs        {root}/logs/", flush=True)
    print("Submit from another terminal:  crewbus submit \"your task\" --wait", flush=True)
    print("Ctrl-C stops everything.", flush=True)


async def _wait(children: list[tuple[str, subprocess.Popen[bytes]]]) -> int:
    with anyio.open_signal_receiver(signal.SIGINT, signal.SIGTERM) as signals:
        async with anyio.create_task_group() as tg:
            exit_code = 0

            async def on_signal() -> None:
                async for _ in signals:
                    tg.cancel_scope.cancel()
                    return

            async def on_child_exit() -> None:
                nonlocal exit_code
                while True:
                    for name, proc in children:
                        if proc.poll() is not None:
                            # A Ctrl-C reaches the whole group: a quick child may be gone
                            # before this process has handled its own SIGINT.
                            await anyio.sleep(SIGNAL_RACE_S)
                            print(f"{name} exited with code {proc.returncode}; stopping "
                                  "(see its log)", file=sys.stderr)
                            exit_code = 1
                            tg.cancel_scope.cancel()
                            return
                    await anyio.sleep(0.5)

            tg.start_soon(on_signal)
            tg.start_soon(on_child_exit)
        return exit_code
