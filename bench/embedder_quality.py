"""Retrieval quality and cost of the memory's text representations, on the labelled set.

For each method, the 26 documents of `tests/data/memory_retrieval.json` go into a fresh
Qdrant Edge shard (temp dir) and every query of both sets (`queries`, `paraphrases`) is
run through `EdgeShard.query`:

- `hashed`        HashedNgramEmbedder, dense 384, cosine
- `bm25`          `qdrant_edge.Bm25` (defaults: English stemmer and stop words, k=1.2,
                  b=0.75, avg_len=256) as a named sparse vector with the IDF modifier
- `bm25 avg_len`  the same with avg_len set to the documents' mean length in words
- `minilm`        MiniLMEmbedder (all-MiniLM-L6-v2), dense 384, cosine, if installed
- `bm25+hashed`, `bm25+minilm`  one shard with both vectors; one query with two
                  prefetches (dense, sparse) fused server-side by `Fusion.Rrf(k=60)`

Printed per query set: recall@1, recall@5 (share of queries with a relevant document
among the first k, as in tests/memory_helpers.py), MRR (first relevant within the top
10, else 0), query p50 (embed the query + search) and search p50 (the shard call alone),
in ms over REPEATS runs of every query, and for the paraphrases the rank of each
query's answer under every method. Then the build cost: embedding the documents and
upserting them. Figures only, no asserts.

    PYTHONPATH=contracts:agents:services:. HF_HUB_OFFLINE=1 python bench/embedder_quality.py
"""

from __future__ import annotations

import json
import re
import statistics
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio
import qdrant_edge as qe

from crewbus.memory.embedders import Embedder, HashedNgramEmbedder, minilm_available

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "memory_retrieval.json"
DENSE = "dense"
SPARSE = "bm25"
RRF_K = 60
PREFETCH = 20
"""Candidates each prefetch hands to the fusion (the set has 26 documents)."""
TOP = 10
REPEATS = 10
"""Each query is run this many times for the timings; the ranking is the first run's."""


@dataclass
class Method:
    name: str
    dense: Embedder | None = None
    bm25: qe.Bm25 | None = None


@dataclass
class Built:
    method: Method
    shard: qe.EdgeShard
    embed_ms: float
    upsert_ms: float


@dataclass
class Scores:
    ranked: list[list[str]] = field(default_factory=list)
    query_ms: list[float] = field(default_factory=list)
    search_ms: list[float] = field(default_factory=list)


def ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


def config(method: Method) -> qe.EdgeConfig:
    vectors = (
        {DENSE: qe.EdgeVectorParams(size=method.dense.dimension, distance=qe.Distance.Cosine)}
        if method.dense
        else None
    )
    sparse = {SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)} if method.bm25 else None
    return qe.EdgeConfig(vectors=vectors, sparse_vectors=sparse)


async def build(method: Method, docs: Sequence[dict[str, str]], root: Path) -> Built:
    shard = qe.EdgeShard.create(str(root / method.name.replace(" ", "_")), config(method))
    texts = [d["text"] for d in docs]
    start = time.perf_counter()
    named: list[dict[str, qe.NamedVector]] = [{} for _ in docs]
    if method.dense:
        for row, vec in zip(named, await method.dense.embed(texts), strict=True):
            row[DENSE] = vec.tolist()
    if method.bm25:
        for row, text in zip(named, texts, strict=True):
            row[SPARSE] = method.bm25.embed_document(text)
    embed_ms = ms(start)
    start = time.perf_counter()
    points = [
        qe.Point(i + 1, vec, {"doc": d["id"]})
        for i, (d, vec) in enumerate(zip(docs, named, strict=True))
    ]
    shard.update(qe.UpdateOperation.upsert_points(points))
    return Built(method, shard, embed_ms, ms(start))


async def request(method: Method, text: str) -> qe.QueryRequest:
    """The query as the store would send it: one vector, or two prefetches fused by RRF."""
    stages: list[qe.Query] = []
    if method.dense:
        vec = (await method.dense.embed([text]))[0].tolist()
        stages.append(qe.Query.Nearest(vec, using=DENSE))
    if method.bm25:
        stages.append(qe.Query.Nearest(method.bm25.embed_query(text), using=SPARSE))
    if len(stages) == 1:
        return qe.QueryRequest(limit=TOP, query=stages[0], with_payload=True)
    return qe.QueryRequest(
        limit=TOP,
        prefetches=[qe.Prefetch(limit=PREFETCH, query=s) for s in stages],
        # The stub declares Rrf nested in Fusion rather than a subclass; the engine takes it.
        query=qe.Fusion.Rrf(k=RRF_K),  # type: ignore[arg-type]
        with_payload=True,
    )


async def run(built: Built, queries: Sequence[dict[str, Any]]) -> Scores:
    scores = Scores()
    for repeat in range(REPEATS):
        for q in queries:
            start = time.perf_counter()
            req = await request(built.method, q["query"])
            searched = time.perf_counter()
            found = built.shard.query(req)
            scores.search_ms.append(ms(searched))
            scores.query_ms.append(ms(start))
            if repeat == 0:
                scores.ranked.append([str((p.payload or {})["doc"]) for p in found])
    return scores


def recall_at(k: int, ranked: list[list[str]], relevant: list[list[str]]) -> float:
    hits = sum(1 for got, want in zip(ranked, relevant, strict=True) if set(got[:k]) & set(want))
    return hits / len(relevant)


def mrr(ranked: list[list[str]], relevant: list[list[str]]) -> float:
    total = 0.0
    for got, want in zip(ranked, relevant, strict=True):
        rank = next((i for i, doc in enumerate(got[:TOP], 1) if doc in want), None)
        total += 1 / rank if rank else 0.0
    return total / len(relevant)


def rank_of(got: list[str], want: list[str]) -> str:
    return next((str(i) for i, doc in enumerate(got, 1) if doc in want), "-")


def table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def methods(avg_len: float) -> tuple[list[Method], str]:
    hashed = HashedNgramEmbedder()
    bm25 = qe.Bm25()
    found = [
        Method("hashed", dense=hashed),
        Method("bm25", bm25=bm25),
        Method("bm25 avg_len", bm25=qe.Bm25(qe.Bm25Config(avg_len=avg_len))),
        Method("bm25+hashed", dense=hashed, bm25=bm25),
    ]
    if not minilm_available():
        return found, "MiniLM: not installed, its rows are skipped"
    from crewbus.memory.embedders import MiniLMEmbedder

    start = time.perf_counter()
    minilm = MiniLMEmbedder()
    anyio.run(minilm.embed, ["warm up the model once"])
    note = f"MiniLM: model load + first embed {ms(start):.0f} ms (not in the figures below)"
    found[3:3] = [Method("minilm", dense=minilm)]
    found.append(Method("bm25+minilm", dense=minilm, bm25=bm25))
    return found, note


async def measure(all_methods: list[Method], data: dict[str, Any], root: Path) -> None:
    built = [await build(m, data["documents"], root) for m in all_methods]
    try:
        for set_name in ("queries", "paraphrases"):
            queries = data[set_name]
            relevant = [q["relevant"] for q in queries]
            rows = []
            ranks: list[list[str]] = [[q["query"]] for q in queries]
            for b in built:
                s = await run(b, queries)
                for row, got, want in zip(ranks, s.ranked, relevant, strict=True):
                    row.append(rank_of(got, want))
                rows.append(
                    [
                        b.method.name,
                        f"{recall_at(1, s.ranked, relevant):.2f}",
                        f"{recall_at(5, s.ranked, relevant):.2f}",
                        f"{mrr(s.ranked, relevant):.2f}",
                        f"{statistics.median(s.query_ms):.3f}",
                        f"{statistics.median(s.search_ms):.3f}",
                    ]
                )
            print(f"\n{set_name}: {len(queries)} queries, {len(data['documents'])} documents")
            header = ["method", "recall@1", "recall@5", "MRR", "query p50 ms", "search p50 ms"]
            print(table(rows, header))
            if set_name == "paraphrases":
                print(f"\nrank of the answer per paraphrase (- = not in the top {TOP})")
                print(table(ranks, ["query"] + [b.method.name for b in built]))
        rows = [
            [
                b.method.name,
                f"{b.embed_ms:.1f}",
                f"{b.upsert_ms:.1f}",
                f"{b.embed_ms + b.upsert_ms:.1f}",
            ]
            for b in built
        ]
        print(f"\nbuild: embed and upsert {len(data['documents'])} documents")
        print(table(rows, ["method", "embed ms", "upsert ms", "total ms"]))
    finally:
        for b in built:
            b.shard.close()


def main() -> None:
    data: dict[str, Any] = json.loads(DATA.read_text())
    words = [len(re.findall(r"\w+", d["text"])) for d in data["documents"]]
    avg_len = sum(words) / len(words)
    all_methods, note = methods(avg_len)
    print(f"qdrant-edge BM25 avg_len: default 256; 'bm25 avg_len' uses {avg_len:.1f}")
    print(f"hybrid: Prefetch(limit={PREFETCH}) per vector, Fusion.Rrf(k={RRF_K}) in the shard")
    print(note)
    with tempfile.TemporaryDirectory(prefix="crewbus-embedder-quality-") as tmp:
        anyio.run(measure, all_methods, data, Path(tmp))


if __name__ == "__main__":
    main()
