"""Benchmark the embedded memory backends directly and through the memory service, up to 1M.

For each backend (Qdrant Edge, qdrant-client local mode) and size: load n memories (384
dims, synthetic unit vectors of intrinsic dimension 32, like sentence embeddings, given
precomputed, so the figures measure storage and transport, not the embedder), build the
index (Edge), then measure

- search latency p50/p95 calling the store, the `MemoryEngine`, and through a real
  nats-server and the memory service (`MemoryClient`); ratio = bus/direct;
- recall@10 of the store's search against an exact scan of the same n vectors (computed
  while the vectors stream in, so the bench never holds all of them), at the default
  search settings and with `hnsw_ef=EF_WIDE`;
- upsert rate (load, and EXTRA more points each way), index build time, the process's RSS
  and the store's size on disk;
- a text query through the bus, embedded by the configured embedder (the default one
  unless --embedder says otherwise), so "text" is what an agent's recall costs.

Index build time is wall clock and CPU seconds of the process (the build's threads
included): on a shared machine under `nice` the wall clock says more about the neighbours,
the CPU seconds extrapolate. `--hnsw-m`, `--ef-construct`, `--int8` (scalar quantization,
kept in RAM) and `--on-disk` (vectors memory-mapped) set the new Edge shard's dense vector.

`--random` uses plain Gaussian vectors instead (intrinsic dimension 384): the worst case
for HNSW, measured at 50k as recall@10 0.23 (0.43 with hnsw_ef=256).

    PYTHONPATH=contracts:agents:services python bench/memory_backends.py --quick   # < 1 min
    PYTHONPATH=contracts:agents:services python bench/memory_backends.py \\
        --backends edge --sizes 1000,50000,1000000
"""

from __future__ import annotations

import argparse
import os
import re
import subprocess
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path

import anyio
import msgspec
import nats
import numpy as np
import numpy.typing as npt
import qdrant_edge as qe

from crewbus.devstack.nats_server import NatsServer
from crewbus.memory.backends import open_store
from crewbus.memory.client import MemoryClient
from crewbus.memory.edge_store import EdgeStore, EdgeTuning
from crewbus.memory.embedders import make_embedder
from crewbus.memory.engine import MemoryEngine
from crewbus.memory.service import MemoryService
from crewbus.memory.settings import EmbedderName, MemorySettings
from crewbus_contracts.memory import MEMORY_KINDS, MemoryRecord, MemorySearch, MemoryUpsert

DIM = 384
BATCH = 100
CHUNK = 20_000
"""Vectors generated (and scanned for the exact answer) at a time."""
EXTRA = 2000
"""Points upserted on top of the loaded collection, once directly and once by the bus."""
K = 10
EF_WIDE = 256


def unit(v: npt.NDArray[np.float32]) -> npt.NDArray[np.float32]:
    return v / np.linalg.norm(v, axis=1, keepdims=True)


LATENT = 32
"""Intrinsic dimension of the synthetic vectors (see `embedding_like`)."""
_MIX = np.random.default_rng(0).standard_normal((LATENT, DIM)).astype(np.float32)


def embedding_like(rng: np.random.Generator, n: int) -> npt.NDArray[np.float32]:
    """Unit vectors in 384 dims that vary along 32 directions plus a little noise. Sentence
    embeddings have a low intrinsic dimension; plain Gaussian vectors (`--random`) have
    384, the worst case for any graph index, and their recall says little about memories."""
    if RANDOM:
        return unit(rng.standard_normal((n, DIM)).astype(np.float32))
    latent = rng.standard_normal((n, LATENT)).astype(np.float32)
    noise = 0.1 * rng.standard_normal((n, DIM)).astype(np.float32)
    return unit(latent @ _MIX / np.sqrt(LATENT) + noise)


RANDOM = False
TEXT_EMBEDDERS: list[EmbedderName] = []
"""More embedders to time the text query with, on the same store (--text-embedders)."""
EDGE_OPTIONS: dict[str, object] = {}
"""Extra EdgeVectorParams for new Edge shards (set from the command line)."""
BEAMS: list[int] = []
"""More hnsw_ef values to measure recall and p50 at (--beams)."""
TUNING = EdgeTuning()
"""New shards' build and search settings: the defaults, or --old-defaults."""


def vectors(n: int, seed: int) -> npt.NDArray[np.float32]:
    return embedding_like(np.random.default_rng(seed), n)


def chunks(n: int, seed: int) -> Iterator[tuple[int, npt.NDArray[np.float32]]]:
    rng = np.random.default_rng(seed)
    for start in range(0, n, CHUNK):
        yield start, embedding_like(rng, min(CHUNK, n - start))


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


class ExactTopK:
    """The exact k nearest of each query over every chunk seen: the truth for recall."""

    def __init__(self, queries: npt.NDArray[np.float32]) -> None:
        self.queries = queries
        self.scores = np.full((len(queries), K), -np.inf, dtype=np.float32)
        self.ids = np.zeros((len(queries), K), dtype=np.int64)

    def add(self, start: int, chunk: npt.NDArray[np.float32]) -> None:
        sims = self.queries @ chunk.T
        scores = np.concatenate([self.scores, sims], axis=1)
        ids = np.concatenate(
            [self.ids, np.broadcast_to(np.arange(start, start + len(chunk)), sims.shape)], axis=1
        )
        best = np.argpartition(-scores, K - 1, axis=1)[:, :K]
        self.scores = np.take_along_axis(scores, best, axis=1)
        self.ids = np.take_along_axis(ids, best, axis=1)

    def recall(self, found: list[list[str]]) -> float:
        hits = sum(
            len({f"bench-{i}" for i in truth} & set(got))
            for truth, got in zip(self.ids.tolist(), found, strict=True)
        )
        return hits / (K * len(found))


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


def rss_mb() -> float:
    status = Path("/proc/self/status").read_text()
    match = re.search(r"VmRSS:\s+(\d+) kB", status)
    return int(match.group(1)) / 1024 if match else float("nan")


def disk_mb(path: Path) -> float:
    out = subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True)
    return int(out.stdout.split()[0]) / 1024


def wide_search(store: EdgeStore, query: npt.NDArray[np.float32], ef: int = EF_WIDE) -> list[str]:
    """The same dense search with another HNSW beam (hnsw_ef), straight on the shard."""
    request = qe.QueryRequest(
        limit=K,
        query=qe.Query.Nearest(query.tolist(), using="dense" if store.hybrid else None),
        with_payload=True,
        params=qe.SearchParams(hnsw_ef=ef),
    )
    return [str((p.payload or {}).get("mid")) for p in store.shard.query(request)]


async def run_one(
    backend: str, n: int, rounds: int, nats_url: str, root: Path, embedder: EmbedderName
) -> dict[str, float]:
    settings = MemorySettings(
        data_dir=str(root / f"{backend}-{n}"), backend=backend,  # type: ignore[arg-type]
        embedder=embedder,
    )
    opened = (
        EdgeStore(settings.store_dir() / "edge", settings.collection, settings.uses_hybrid(),
                  dense_options=EDGE_OPTIONS, tuning=TUNING)
        if backend == "edge" else open_store(settings)
    )
    engine = await MemoryEngine.open(settings, opened)
    store = engine.store
    rss_before = rss_mb()
    queries = vectors(rounds, 2)
    exact = ExactTopK(queries)

    async def direct_upsert(recs: list[MemoryRecord]) -> object:
        return await engine.upsert(MemoryUpsert(records=recs, skip_near_duplicates=False))

    loaded = time.perf_counter()
    for start, chunk in chunks(n, 1):
        exact.add(start, chunk)
        for i in range(0, len(chunk), BATCH):
            await direct_upsert(records(chunk[i : i + BATCH], start + i))
    load_rate = n / (time.perf_counter() - loaded)
    optimize_s = optimize_cpu = 0.0
    if isinstance(store, EdgeStore):
        t0, cpu0 = time.perf_counter(), time.process_time()
        store.optimize()
        optimize_s, optimize_cpu = time.perf_counter() - t0, time.process_time() - cpu0
        print(f"  {backend} {n}: index built in {optimize_s:.1f} s ({optimize_cpu:.1f} CPU s), "
              f"load average {os.getloadavg()[0]:.1f}", flush=True)

    found: list[list[str]] = []

    async def raw_search(i: int) -> None:
        hits = await anyio.to_thread.run_sync(store.search, queries[i], K)
        found.append([h.id for h in hits])

    raw = await latencies(raw_search, rounds)
    recall = exact.recall(found)
    wide_recall, wide_p50 = float("nan"), float("nan")
    beams: dict[str, float] = {}
    if isinstance(store, EdgeStore):
        wide_found: list[list[str]] = []

        async def wide(i: int) -> None:
            wide_found.append(wide_search(store, queries[i]))

        wide_p50 = pct(await latencies(wide, rounds), 50)
        wide_recall = exact.recall(wide_found)
        for ef in BEAMS:
            beam_found: list[list[str]] = []

            async def beam(i: int, ef: int = ef, out: list[list[str]] = beam_found) -> None:
                out.append(wide_search(store, queries[i], ef))

            beams[f"ef_p50_{ef}"] = pct(await latencies(beam, rounds), 50)
            beams[f"ef_recall_{ef}"] = exact.recall(beam_found)
    qlist = [q.tolist() for q in queries]
    direct = await latencies(lambda i: engine.search(MemorySearch(vector=qlist[i], k=K)), rounds)
    extra = vectors(2 * EXTRA, 3)
    direct_rate = await upsert_rate(direct_upsert, records(extra[:EXTRA], n))
    rss = rss_mb()
    disk = disk_mb(settings.store_dir())

    nc = await nats.connect(nats_url)
    service = await MemoryService(nc, settings, engine=engine).start()
    client = MemoryClient(nc)
    try:
        bus = await latencies(lambda i: client.search_vector(qlist[i], k=K), rounds)
        text = await latencies(lambda i: client.search(f"memory number {i * 7}", k=K), rounds)
        texts_by: dict[str, float] = {}
        for name in TEXT_EMBEDDERS:  # the same store and bus, the query embedded by another
            kept = engine.embedder
            engine.embedder = await make_embedder(MemorySettings(embedder=name))
            texts_by[name] = pct(await latencies(
                lambda i: client.search(f"memory number {i * 7}", k=K), rounds), 50)
            engine.embedder = kept
        bus_rate = await upsert_rate(
            lambda recs: client.upsert(recs, skip_near_duplicates=False),
            records(extra[EXTRA:], n + EXTRA),
        )
    finally:
        await service.stop()  # closes the engine and its store
        await nc.close()
    return {
        "load_rate": load_rate, "optimize_s": optimize_s, "optimize_cpu_s": optimize_cpu,
        "raw_p50": pct(raw, 50), "raw_p95": pct(raw, 95),
        "direct_p50": pct(direct, 50), "direct_p95": pct(direct, 95),
        "bus_p50": pct(bus, 50), "bus_p95": pct(bus, 95), "text_p50": pct(text, 50),
        "direct_rate": direct_rate, "bus_rate": bus_rate, "recall": recall,
        "wide_recall": wide_recall, "wide_p50": wide_p50,
        "rss_mb": rss, "rss_growth_mb": rss - rss_before, "disk_mb": disk,
        **{f"text_p50_{name}": v for name, v in texts_by.items()}, **beams,
    }


HEADER = (
    f"{'backend':7} {'n':>7} | {'load/s':>6} {'index s':>7} {'CPU s':>6} | search ms p50/p95: "
    f"{'store':>5} {'direct':>11} {'bus':>11} {'ratio':>5} {'text':>5} | "
    f"recall@10 {'':>4} ef={EF_WIDE} (p50) | upsert/s {'direct':>6} {'bus':>6} | "
    f"{'RSS MB':>6} {'disk MB':>7}"
)


def line(backend: str, n: int, r: dict[str, float]) -> str:
    others = "".join(
        f" | text p50 with {k.removeprefix('text_p50_')} {v:.2f}"
        for k, v in r.items() if k.startswith("text_p50_")
    ) + "".join(
        f" | ef={ef} {v:.3f} ({r['ef_p50_' + ef]:.2f})"
        for k, v in r.items() if k.startswith("ef_recall_") for ef in [k.removeprefix("ef_recall_")]
    )
    return (
        f"{backend:7} {n:>7} | {r['load_rate']:>6.0f} {r['optimize_s']:>7.1f} "
        f"{r['optimize_cpu_s']:>6.0f} | "
        f"{'':18}{r['raw_p50']:>5.2f} {r['direct_p50']:>5.2f}/{r['direct_p95']:<5.2f} "
        f"{r['bus_p50']:>5.2f}/{r['bus_p95']:<5.2f} {r['bus_p50'] / r['direct_p50']:>5.2f} "
        f"{r['text_p50']:>5.2f} | {r['recall']:>9.3f} {r['wide_recall']:>11.3f} "
        f"({r['wide_p50']:.2f}) | {'':9}{r['direct_rate']:>6.0f} {r['bus_rate']:>6.0f} | "
        f"{r['rss_mb']:>6.0f} {r['disk_mb']:>7.0f}{others}"
    )


async def main(
    sizes: list[int], backends: list[str], rounds: int, embedder: EmbedderName,
    json_out: Path | None,
) -> None:
    results = []
    with tempfile.TemporaryDirectory(prefix="crewbus-bench-") as tmp:
        root = Path(tmp)
        with NatsServer(root / "nats") as server:
            probe = await make_embedder(MemorySettings(embedder=embedder))
            print(f"embedder {probe.id}, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
            print(HEADER, flush=True)
            for backend in backends:
                for n in sizes:
                    r = await run_one(backend, n, rounds, server.url, root, embedder)
                    print(line(backend, n, r), flush=True)
                    results.append({"backend": backend, "n": n, **r})
                    if json_out is not None:
                        json_out.write_bytes(msgspec.json.encode(results))
            print(f"load average at the end {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--sizes", default="1000,10000,50000")
    parser.add_argument("--backends", default="edge,local")
    parser.add_argument("--rounds", type=int, default=300, help="searches per measurement")
    parser.add_argument("--embedder", default="minilm-onnx", help="embeds the text queries")
    parser.add_argument("--quick", action="store_true",
                        help="edge only, 1000 and 5000 memories, 50 searches: under a minute")
    parser.add_argument("--json", type=Path, help="also write the figures here")
    parser.add_argument("--random", action="store_true",
                        help="plain Gaussian vectors (intrinsic dimension 384) instead")
    parser.add_argument("--hnsw-m", type=int, help="Edge HNSW m (Qdrant's default 16)")
    parser.add_argument("--ef-construct", type=int, help="Edge HNSW ef_construct (default 100)")
    parser.add_argument("--int8", action="store_true", help="Edge scalar int8 quantization")
    parser.add_argument("--on-disk", action="store_true", help="Edge vectors memory-mapped")
    parser.add_argument("--old-defaults", action="store_true",
                        help="new Edge shards as before: ef_construct 100, no int8, default beam")
    parser.add_argument("--beams", default="",
                        help="also recall@10 and p50 at these hnsw_ef (comma-separated)")
    parser.add_argument("--text-embedders", default="",
                        help="also time the text query with these embedders (comma-separated)")
    args = parser.parse_args()
    RANDOM = args.random
    TEXT_EMBEDDERS.extend(e for e in args.text_embedders.split(",") if e)
    BEAMS.extend(int(e) for e in args.beams.split(",") if e)
    if args.old_defaults:
        TUNING = EdgeTuning(ef_construct=100, int8=False, search_ef=None, large_from=2**62)
    if args.hnsw_m or args.ef_construct:
        EDGE_OPTIONS["hnsw_config"] = qe.HnswIndexConfig(
            m=args.hnsw_m or 16, ef_construct=args.ef_construct or 100, full_scan_threshold=10_000
        )
    if args.int8:
        EDGE_OPTIONS["quantization_config"] = qe.ScalarQuantizationConfig(
            qe.ScalarType.Int8, quantile=0.99, always_ram=True
        )
    if args.on_disk:
        EDGE_OPTIONS["on_disk"] = True
    if args.quick:
        args.sizes, args.backends, args.rounds = "1000,5000", "edge", 50
    anyio.run(
        main,
        [int(s) for s in args.sizes.split(",")],
        args.backends.split(","),
        args.rounds,
        args.embedder,
        args.json,
    )
