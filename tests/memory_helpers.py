"""Shared helpers for the memory tests: the labelled set, backends, a running service."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

DATA = Path(__file__).parent / "data" / "memory_retrieval.json"
DEFAULT_EMBEDDER_ID = "onnx:all-MiniLM-L6-v2-onnx-int8:384"
"""What `crewbus memory stats` names when no embedder is configured."""


def retrieval_set() -> dict[str, Any]:
    result: dict[str, Any] = json.loads(DATA.read_text())
    return result


def recall_at(k: int, ranked: list[list[str]], relevant: list[list[str]]) -> float:
    """Fraction of queries with at least one relevant id among the first k results."""
    found = sum(1 for got, want in zip(ranked, relevant, strict=True) if set(got[:k]) & set(want))
    return found / len(relevant)
