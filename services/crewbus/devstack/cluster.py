"""A JetStream cluster of real nats-server processes on one machine (`crewbus up --cluster 3`
and the cluster tests): every node routes to every other, each keeps its own store."""

from __future__ import annotations

import time
from collections.abc import Sequence
from pathlib import Path

import anyio

from crewbus.auth.permissions import ADMIN
from crewbus.bus.connection import connect_for_command
from crewbus.devstack.nats_server import NatsServer, NatsServerError, free_port

CLUSTER_NAME = "crewbus"
CLUSTER_REPLICAS = 3
"""Streams and buckets on a cluster: three copies, so one node can fail (a quorum of 2)."""
MIN_NODES = 3
MAX_NODES = 9


class ClusterSizeError(ValueError):
    def __init__(self, size: int) -> None:
        super().__init__(f"--cluster takes {MIN_NODES} to {MAX_NODES} nodes, not {size}: "
                         f"streams keep {CLUSTER_REPLICAS} copies, which needs at least "
                         f"{MIN_NODES} nodes")


class NatsCluster:
    """`size` nats-servers named by their client port, each with its store in
    `root/node-<n>`, joined by routes on free loopback ports. A node keeps its ports and
    its store when it is restarted, so it rejoins as the same JetStream peer."""

    def __init__(self, root: Path, size: int = 3, client_ports: Sequence[int] = (),
                 host: str = "127.0.0.1", config_file: Path | None = None) -> None:
        if not MIN_NODES <= size <= MAX_NODES:
            raise ClusterSizeError(size)
        ports = list(client_ports) or [0] * size
        route_ports = [free_port(host) for _ in range(size)]
        routes = ",".join(f"nats://{host}:{p}" for p in route_ports)
        self.nodes = [
            NatsServer(Path(root) / f"node-{i + 1}", port=ports[i], host=host, extra_args=[
                "--cluster", f"nats://{host}:{route_ports[i]}",
                "--cluster_name", CLUSTER_NAME,
                "--routes", routes,
            ], config_file=config_file)
            for i in range(size)
        ]

    @property
    def url(self) -> str:
        """Every node's URL, comma-separated: what `CREWBUS_NATS_URL` takes."""
        return ",".join(node.url for node in self.nodes)

    def start(self) -> NatsCluster:
        """Start every node (each until it accepts clients); `wait_for_jetstream` next."""
        for node in self.nodes:
            node.start()
        return self

    def node_named(self, name: str) -> NatsServer:
        """The node JetStream knows as `name` (a stream's `cluster.leader`, say)."""
        for node in self.nodes:
            if node.name == name:
                return node
        raise KeyError(name)

    def stop(self) -> None:
        for node in self.nodes:
            node.stop()


async def wait_for_jetstream(url: str, timeout_s: float = 30.0,
                             creds_dir: Path | None = None) -> float:
    """Until the cluster has a JetStream meta leader (an account info request succeeds),
    so streams can be created; returns the seconds waited."""
    started = time.monotonic()
    nc = await connect_for_command(url, ADMIN, creds_dir)
    last: Exception | None = None
    try:
        js = nc.jetstream(timeout=2)
        while time.monotonic() - started < timeout_s:
            try:
                await js.account_info()
                return time.monotonic() - started
            except Exception as exc:  # no meta leader yet: 503 or a timeout
                last = exc
                await anyio.sleep(0.1)
    finally:
        await nc.close()
    raise NatsServerError(f"no JetStream meta leader in the cluster after {timeout_s:.0f}s "
                          f"({last})")
