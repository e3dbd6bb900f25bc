"""Benchmark the embedded memory backends directly and through the memory service.

For each backend (Qdrant Edge, qdrant-client local mode) and size (1k, 10k, 50k
memories, 384 dims): upsert throughput and search latency p50/p95 calling the
MemoryEngine directly, then the same through a real nats-server and the memory service
(`MemoryClient`), and the ratio bus/direct (the cost of the bus hop). Vectors are given
precomputed so the figures measure storage and transport, not the embedder; one line
per size also times a text query (hashed embedder included) through the bus.

    PYTHONPATH=contracts:agents:services python bench/memory_backends.py [--sizes 1000,10000]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

import anyio
import nats
import numpy as np
import numpy.typing as npt

from crewbus.devstack.nats_server import NatsServer
from crewbus.memory.backends import open_store
from crewbus.memory.client import MemoryClient
from crewbus.memory.edge_store import EdgeStore
from crewbus.memory.embedders import HashedNgramEmbedder
from crewbus.memory.engine import MemoryEngine
from crewbus.memory.service import MemoryService
from crewbus.memory.settings import MemorySettings
from crewbus_contracts.memory import MEMORY_KINDS, MemoryRecord, MemorySearch, MemoryUpsert

DIM = 384
BATCH = 100
EXTRA = 2000
"""Points upserted on top of the loaded collection, once directly and once by the bus."""


def vectors(n: int, seed: int) -> npt.NDArray[np.float32]:
    v = np.random.default_rng(seed).standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def records(vecs: npt.NDArray[np.float32], start: int) -> list[MemoryRecord]:
    return [
        MemoryRecord(
            id=f"bench-{start + i}",
            text=f"memory number {start + i}",
            kind=MEMORY_KINDS[(start + i) % len(MEMORY_KINDS)],
            task_id=f"task-{(start + i) % 97}",
            vector=v.tolist(),
        )
        for i, v in enumerate(vecs)
    ]


async def timed(fn: Callable[[], Awaitable[object]]) -> float:
    t0 = time.perf_counter()
    await fn()
    return time.perf_counter() - t0


def pct(samples: list[float], q: float) -> float:
    return float(np.percentile(samples, q)) * 1000


async def latencies(fn: Callable[[int], Awaitable[object]], rounds: int) -> list[float]:
    out = []
    for i in range(rounds):
        t0 = time.perf_counter()
        await fn(i)
        out.append(time.perf_counter() - t0)
    return out


async def upsert_rate(
    fn: Callable[[list[MemoryRecord]], Awaitable[object]], recs: list[MemoryRecord]
) -> float:
    t0 = time.perf_counter()
    for i in range(0, len(recs), BATCH):
        await fn(recs[i : i + BATCH])
    return len(recs) / (time.perf_counter() - t0)


async def run_one(backend: str, n: int, rounds: int, nats_url: str, root: Path) -> dict[str, float]:
    settings = MemorySettings(data_dir=str(root / f"{backend}-{n}"), backend=backend)  # type: ignore[arg-type]
    store = open_store(settings)
    embedder = HashedNgramEmbedder(DIM)
    store.ensure_collection(DIM, embedder.id)
    engine = MemoryEngine(store, embedder, settings)

    async def direct_upsert(recs: list[MemoryRecord]) -> object:
        return await engine.upsert(MemoryUpsert(records=recs, skip_near_duplicates=False))

    load_rate = await upsert_rate(direct_upsert, records(vectors(n, 1), 0))
    optimize_s = 0.0
    if isinstance(store, EdgeStore):
        t0 = time.perf_counter()
        store.optimize()
        optimize_s = time.perf_counter() - t0

    queries = vectors(rounds, 2)
    qlist = [q.tolist() for q in queries]
    raw = await latencies(lambda i: anyio.to_thread.run_sync(store.search, queries[i], 10), rounds)
    direct = await latencies(lambda i: engine.search(MemorySearch(vector=qlist[i], k=10)), rounds)
    extra = vectors(2 * EXTRA, 3)
    direct_rate = await upsert_rate(direct_upsert, records(extra[:EXTRA], n))

    nc = await nats.connect(nats_url)
    service = await MemoryService(nc, settings, engine=engine).start()
    client = MemoryClient(nc)
    try:
        bus = await latencies(lambda i: client.search_vector(qlist[i], k=10), rounds)
        text = await latencies(lambda i: client.search(f"memory number {i * 7}", k=10), rounds)
        bus_rate = await upsert_rate(
            lambda recs: client.upsert(recs, skip_near_duplicates=False),
            records(extra[EXTRA:], n + EXTRA),
        )
    finally:
        await service.stop()  # closes the engine and its store
        await nc.close()
    return {
        "load_rate": load_rate,
        "optimize_s": optimize_s,
        "raw_p50": pct(raw, 50),
        "direct_p50": pct(direct, 50),
        "direct_p95": pct(direct, 95),
        "bus_p50": pct(bus, 50),
        "bus_p95": pct(bus, 95),
        "text_p50": pct(text, 50),
        "direct_rate": direct_rate,
        "bus_rate": bus_rate,
    }


async def main(sizes: list[int], backends: list[str], rounds: int) -> None:
    with tempfile.TemporaryDirectory(prefix="crewbus-bench-") as tmp:
        root = Path(tmp)
        with NatsServer(root / "nats") as server:
            print(
                f"{'backend':7} {'n':>6} | {'load/s':>7} {'opt s':>5} | search ms p50/p95: "
                f"{'store':>5} {'direct':>12} {'bus':>12} {'ratio':>5} {'text':>5} | "
                f"upsert/s {'direct':>7} {'bus':>7} {'ratio':>5}"
            )
            for backend in backends:
                for n in sizes:
                    r = await run_one(backend, n, rounds, server.url, root)
                    print(
                        f"{backend:7} {n:>6} | {r['load_rate']:>7.0f} {r['optimize_s']:>5.1f} | "
                        f"{'':18}{r['raw_p50']:>5.2f} "
                        f"{r['direct_p50']:>5.2f}/{r['direct_p95']:<6.2f} "
                        f"{r['bus_p50']:>5.2f}/{r['bus_p95']:<6.2f} "
                        f"{r['bus_p50'] / r['direct_p50']:>5.2f} {r['text_p50']:>5.2f} | "
                        f"{'':9}{r['direct_rate']:>7.0f} {r['bus_rate']:>7.0f} "
                        f"{r['bus_rate'] / r['direct_rate']:>5.2f}",
                        flush=True,
                    )


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--backends", default="edge,local")
    parser.add_argument("--rounds", type=int, default=300, help="searches per measurement")
    args = parser.parse_args()
    anyio.run(
        main,
        [int(s) for s in args.sizes.split(",")],
        args.backends.split(","),
        args.rounds,
    )
