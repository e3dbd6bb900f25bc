"""Retrieval quality and cost of every embedder, on the project's sets and on public data.

Sets (each method gets a fresh Qdrant Edge shard per set, all scoring in the shard):

- `queries`, `paraphrases`: the project's own (`tests/data/memory_retrieval.json`, 26
  documents, one relevant document per query). We wrote them.
- `lee`: public data nobody here wrote. The Lee (2005) corpus: 50 news articles whose 1225
  pairs were rated for similarity by people (1 to 5, about ten raters a pair); gensim ships
  the texts and the mean ratings in its test data (`pip install '.[bench]'`). Each article
  is the query for the other 49: graded relevance = (mean rating - 1) / 4, relevant for
  recall when the mean rating is at least 3. No pip package ships a BEIR set (see
  docs/drafts/embedder.md for what was looked at); `--beir DIR` runs any BEIR-format folder
  (corpus.jsonl, queries.jsonl, qrels/test.tsv) the same way, e.g. SciFact.

Methods: `hashed`, `minilm-onnx` (the default), `minilm-onnx-int8` (the same model in int8
arithmetic), `minilm` (torch, if the extra is installed), each dense alone and fused with
BM25 (`bm25+...`: two prefetches, RRF k=60, as `EdgeStore` does), and `bm25` alone.

Metrics: recall@1 and recall@5 (share of the relevant documents in the first k, averaged
over queries: BEIR's definition; with one relevant document it is the hit rate
tests/memory_helpers.py uses), nDCG@10 (graded gains, log2 discount, as trec_eval), MRR
within the top 10; query p50 (embed + search) and search p50 (the shard call) in ms.

Then speed: texts per second embedding the project's documents in batches, wall clock and
per CPU second (the machine is shared: load average printed), and one short query's p50.

    PYTHONPATH=contracts:agents:services:. HF_HUB_OFFLINE=1 python bench/embedder_quality.py
    ... --quick            # project sets only, fewer repeats
    ... --beir ~/scifact   # a BEIR folder as one more set
"""

from __future__ import annotations

import argparse
import json
import math
import os
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
from crewbus.memory.onnx_embedder import OnnxMiniLMEmbedder

DATA = Path(__file__).resolve().parent.parent / "tests" / "data" / "memory_retrieval.json"
DENSE = "dense"
SPARSE = "bm25"
RRF_K = 60
PREFETCH = 20
TOP = 10
LEE_RELEVANT = 0.6
"""Mean rating >= 3 of 5 (the file holds ratings mapped 1..5 -> 0.2..1.0)."""


@dataclass
class Method:
    name: str
    dense: Embedder | None = None
    bm25: qe.Bm25 | None = None


@dataclass
class Query:
    id: str
    text: str
    gains: dict[str, float]
    """doc id -> graded relevance in (0, 1]; relevant for recall at >= `relevant_at`."""
    relevant_at: float = 1.0
    exclude: str | None = None
    """A document never counted (the query's own article in `lee`)."""


@dataclass
class RetrievalSet:
    name: str
    documents: list[tuple[str, str]]
    queries: list[Query]
    note: str = ""


@dataclass
class Scores:
    ranked: list[list[str]] = field(default_factory=list)
    query_ms: list[float] = field(default_factory=list)
    search_ms: list[float] = field(default_factory=list)


def ms(since: float) -> float:
    return (time.perf_counter() - since) * 1000


def project_sets() -> list[RetrievalSet]:
    data: dict[str, Any] = json.loads(DATA.read_text())
    docs = [(d["id"], d["text"]) for d in data["documents"]]
    return [
        RetrievalSet(name, docs, [
            Query(f"{name}-{i}", q["query"], dict.fromkeys(q["relevant"], 1.0))
            for i, q in enumerate(data[name])
        ], "ours")
        for name in ("queries", "paraphrases")
    ]


def lee_set() -> RetrievalSet | None:
    import importlib.util

    spec = importlib.util.find_spec("gensim")
    if spec is None or not spec.submodule_search_locations:
        return None
    folder = Path(next(iter(spec.submodule_search_locations))) / "test" / "test_data"
    texts = (folder / "lee.cor").read_text(encoding="latin-1").strip().split("\n")
    rows = [
        [float(x) for x in line.split()]
        for line in (folder / "similarities0-1.txt").read_text().strip().split("\n")
    ]
    sim = [[max(rows[i][j], rows[j][i]) for j in range(len(rows))] for i in range(len(rows))]
    docs = [(f"lee-{i}", t) for i, t in enumerate(texts)]
    queries = []
    for i, text in enumerate(texts):
        gains = {
            f"lee-{j}": (sim[i][j] - 0.2) / 0.8
            for j in range(len(texts)) if j != i and sim[i][j] > 0.2
        }
        relevant_at = (LEE_RELEVANT - 0.2) / 0.8
        if any(g >= relevant_at for g in gains.values()):
            queries.append(Query(f"lee-q{i}", text, gains, relevant_at, exclude=f"lee-{i}"))
    return RetrievalSet("lee", docs, queries, "public, human ratings")


def beir_set(folder: Path) -> RetrievalSet:
    def jsonl(path: Path) -> list[dict[str, Any]]:
        return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]

    docs = [(str(d["_id"]), f"{d.get('title', '')} {d['text']}".strip())
            for d in jsonl(folder / "corpus.jsonl")]
    texts = {str(q["_id"]): q["text"] for q in jsonl(folder / "queries.jsonl")}
    qrels: dict[str, dict[str, float]] = {}
    for line in (folder / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, did, grade = line.split("\t")[:3]
        if float(grade) > 0:
            qrels.setdefault(qid, {})[did] = float(grade)
    top = max((g for q in qrels.values() for g in q.values()), default=1.0)
    queries = [
        Query(qid, texts[qid], {d: g / top for d, g in rel.items()}, 1 / top)
        for qid, rel in qrels.items() if qid in texts
    ]
    return RetrievalSet(folder.name, docs, queries, "public, BEIR")


def config(method: Method) -> qe.EdgeConfig:
    vectors = (
        {DENSE: qe.EdgeVectorParams(size=method.dense.dimension, distance=qe.Distance.Cosine)}
        if method.dense
        else None
    )
    sparse = {SPARSE: qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)} if method.bm25 else None
    return qe.EdgeConfig(vectors=vectors, sparse_vectors=sparse)


async def build(method: Method, rset: RetrievalSet, root: Path) -> qe.EdgeShard:
    shard = qe.EdgeShard.create(
        str(root / f"{rset.name}-{method.name.replace(' ', '_')}"), config(method)
    )
    texts = [t for _, t in rset.documents]
    named: list[dict[str, qe.NamedVector]] = [{} for _ in texts]
    if method.dense:
        for row, vec in zip(named, await method.dense.embed(texts), strict=True):
            row[DENSE] = vec.tolist()
    if method.bm25:
        for row, text in zip(named, texts, strict=True):
            row[SPARSE] = method.bm25.embed_document(text)
    points = [
        qe.Point(i + 1, vec, {"doc": doc_id})
        for i, ((doc_id, _), vec) in enumerate(zip(rset.documents, named, strict=True))
    ]
    for i in range(0, len(points), 500):
        shard.update(qe.UpdateOperation.upsert_points(points[i : i + 500]))
    return shard


async def request(method: Method, text: str, limit: int) -> qe.QueryRequest:
    """The query as the store would send it: one vector, or two prefetches fused by RRF."""
    stages: list[qe.Query] = []
    if method.dense:
        vec = (await method.dense.embed([text]))[0].tolist()
        stages.append(qe.Query.Nearest(vec, using=DENSE))
    if method.bm25:
        stages.append(qe.Query.Nearest(method.bm25.embed_query(text), using=SPARSE))
    if len(stages) == 1:
        return qe.QueryRequest(limit=limit, query=stages[0], with_payload=True)
    return qe.QueryRequest(
        limit=limit,
        prefetches=[qe.Prefetch(limit=max(PREFETCH, limit), query=s) for s in stages],
        query=qe.Fusion.Rrf(k=RRF_K),  # type: ignore[arg-type]  # the stub misses Fusion
        with_payload=True,
    )


async def run(
    method: Method, shard: qe.EdgeShard, queries: Sequence[Query], repeats: int
) -> Scores:
    scores = Scores()
    for repeat in range(repeats):
        for q in queries:
            start = time.perf_counter()
            req = await request(method, q.text, TOP + (q.exclude is not None))
            searched = time.perf_counter()
            found = shard.query(req)
            scores.search_ms.append(ms(searched))
            scores.query_ms.append(ms(start))
            if repeat == 0:
                ids = [str((p.payload or {})["doc"]) for p in found]
                scores.ranked.append([i for i in ids if i != q.exclude][:TOP])
    return scores


def recall_at(k: int, ranked: list[list[str]], queries: Sequence[Query]) -> float:
    total = 0.0
    for got, q in zip(ranked, queries, strict=True):
        relevant = {d for d, g in q.gains.items() if g >= q.relevant_at}
        total += len(relevant & set(got[:k])) / len(relevant)
    return total / len(queries)


def ndcg_at(k: int, ranked: list[list[str]], queries: Sequence[Query]) -> float:
    total = 0.0
    for got, q in zip(ranked, queries, strict=True):
        dcg = sum(q.gains.get(d, 0.0) / math.log2(r + 2) for r, d in enumerate(got[:k]))
        ideal = sorted(q.gains.values(), reverse=True)[:k]
        idcg = sum(g / math.log2(r + 2) for r, g in enumerate(ideal))
        total += dcg / idcg if idcg else 0.0
    return total / len(queries)


def mrr(ranked: list[list[str]], queries: Sequence[Query]) -> float:
    total = 0.0
    for got, q in zip(ranked, queries, strict=True):
        rank = next((i for i, d in enumerate(got[:TOP], 1) if q.gains.get(d, 0) >= q.relevant_at),
                    None)
        total += 1 / rank if rank else 0.0
    return total / len(queries)


def table(rows: list[list[str]], header: list[str]) -> str:
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join(" --- " for _ in header) + "|"]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    return "\n".join(lines)


def dense_embedders() -> tuple[list[tuple[str, Embedder]], list[str]]:
    notes = []
    start = time.perf_counter()
    onnx = OnnxMiniLMEmbedder()
    anyio.run(onnx.embed, ["warm up the model once"])
    notes.append(f"minilm-onnx: model load + first embed {ms(start):.0f} ms")
    start = time.perf_counter()
    int8 = OnnxMiniLMEmbedder(variant="int8")
    anyio.run(int8.embed, ["warm up the model once"])
    notes.append(f"minilm-onnx-int8: model load (+ build, first time) + first embed "
                 f"{ms(start):.0f} ms")
    start = time.perf_counter()
    int8_row = OnnxMiniLMEmbedder(variant="int8-row")
    anyio.run(int8_row.embed, ["warm up the model once"])
    notes.append(f"minilm-onnx-int8-row: model load (+ build, first time) + first embed "
                 f"{ms(start):.0f} ms")
    found: list[tuple[str, Embedder]] = [
        ("hashed", HashedNgramEmbedder()), ("minilm-onnx", onnx), ("minilm-onnx-int8", int8),
        ("minilm-onnx-int8-row", int8_row),
    ]
    if minilm_available():
        import torch

        from crewbus.memory.embedders import MiniLMEmbedder

        torch.set_num_threads(2)  # the same two threads the ONNX session gets
        start = time.perf_counter()
        reference = MiniLMEmbedder()
        anyio.run(reference.embed, ["warm up the model once"])
        notes.append(f"minilm (torch): model load + first embed {ms(start):.0f} ms")
        found.append(("minilm", reference))
    else:
        notes.append("minilm (torch): not installed, its rows are skipped")
    return found, notes


def methods(dense: list[tuple[str, Embedder]]) -> list[Method]:
    bm25 = qe.Bm25()
    out = [Method(name, dense=e) for name, e in dense] + [Method("bm25", bm25=bm25)]
    return out + [Method(f"bm25+{name}", dense=e, bm25=bm25) for name, e in dense]


async def measure_set(all_methods: list[Method], rset: RetrievalSet, root: Path,
                      repeats: int) -> None:
    rows = []
    for method in all_methods:
        shard = await build(method, rset, root)
        try:
            s = await run(method, shard, rset.queries, repeats)
        finally:
            shard.close()
        rows.append([
            method.name,
            f"{recall_at(1, s.ranked, rset.queries):.3f}",
            f"{recall_at(5, s.ranked, rset.queries):.3f}",
            f"{ndcg_at(10, s.ranked, rset.queries):.3f}",
            f"{mrr(s.ranked, rset.queries):.3f}",
            f"{statistics.median(s.query_ms):.2f}",
            f"{statistics.median(s.search_ms):.2f}",
        ])
    print(f"\n{rset.name} ({rset.note}): {len(rset.queries)} queries, "
          f"{len(rset.documents)} documents")
    header = ["method", "recall@1", "recall@5", "nDCG@10", "MRR", "query p50 ms",
              "search p50 ms"]
    print(table(rows, header), flush=True)


async def agreement(dense: list[tuple[str, Embedder]], sets: list[RetrievalSet]) -> None:
    """Cosine of every other dense embedder's vectors to minilm-onnx's, on every text."""
    texts = [t for rset in sets for _, t in rset.documents]
    texts += [q.text for rset in sets for q in rset.queries]
    named = dict(dense)
    base = await named["minilm-onnx"].embed(texts)
    for name, embedder in dense:
        if name in ("minilm-onnx", "hashed"):
            continue
        cos = (await embedder.embed(texts) * base).sum(axis=1)
        print(f"cosine of {name} to minilm-onnx over {len(texts)} texts: min {cos.min():.4f}, "
              f"mean {cos.mean():.4f}")


async def speed(dense: list[tuple[str, Embedder]], texts: list[str], rounds: int) -> None:
    rows = []
    batch = (texts * (1 + 512 // len(texts)))[:512]
    for name, embedder in dense:
        for size in (1, 8, 16, 32, 64):
            await embedder.embed(batch[:size])
            wall, cpu0 = time.perf_counter(), os.times()
            for i in range(0, len(batch), size):
                await embedder.embed(batch[i : i + size])
            took, cpu1 = time.perf_counter() - wall, os.times()
            cpu = (cpu1.user - cpu0.user) + (cpu1.system - cpu0.system)
            rows.append([name, str(size), f"{len(batch) / took:.0f}",
                         f"{len(batch) / cpu:.0f}" if cpu else "-", ""])
        one = []
        for i in range(rounds):
            start = time.perf_counter()
            await embedder.embed([f"how is a failed step retried {i}"])
            one.append(ms(start))
        rows[-1][-1] = f"{statistics.median(one):.2f}"
    print(f"\nspeed: {len(batch)} of the project's documents (~30 tokens each), "
          f"{os.cpu_count()} cores, load average {os.getloadavg()[0]:.2f}")
    print(table(rows, ["embedder", "batch", "texts/s (wall)", "texts per CPU-second",
                       "one query p50 ms"]))


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--quick", action="store_true", help="project sets only, 2 repeats")
    parser.add_argument("--beir", type=Path, action="append", default=[],
                        help="a BEIR-format folder to measure as one more set")
    parser.add_argument("--repeats", type=int, default=5, help="runs of every query (timings)")
    args = parser.parse_args()
    repeats = 2 if args.quick else args.repeats
    dense, notes = dense_embedders()
    sets = project_sets()
    if not args.quick:
        lee = lee_set()
        if lee is None:
            notes.append("lee: gensim not installed (pip install '.[bench]'), set skipped")
        else:
            sets.append(lee)
        sets += [beir_set(folder) for folder in args.beir]
    print(f"hybrid: Prefetch(limit={PREFETCH}) per vector, Fusion.Rrf(k={RRF_K}) in the shard")
    print("\n".join(notes))
    all_methods = methods(dense)
    with tempfile.TemporaryDirectory(prefix="crewbus-embedder-quality-") as tmp:
        for rset in sets:
            anyio.run(measure_set, all_methods, rset, Path(tmp), repeats)
    anyio.run(agreement, dense, sets)
    anyio.run(speed, dense, [t for _, t in sets[0].documents], 20 if args.quick else 100)


if __name__ == "__main__":
    main()
