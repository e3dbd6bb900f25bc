"""Ingest text and Markdown files into memory as chunks with source path and position.

Chunks follow the document's shape: a Markdown heading starts a new chunk (and its
heading path is kept in front of the text, so a chunk says what it is about), then
paragraphs are packed up to `max_chars`; a paragraph longer than that is split on
sentence boundaries, then hard. A chunk's id is a hash of (source, position, text), and
re-ingesting a file first forgets that source's old chunks, so ingesting twice stores
the file once and an edited file leaves no stale chunks behind.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path

import msgspec

from crewbus.memory.client import MemoryClient
from crewbus_contracts.memory import MemoryRecord

SUFFIXES = frozenset({".md", ".markdown", ".txt", ".text", ".rst"})
_HEADING = re.compile(r"^(#{1,6})\s+(.+?)\s*#*\s*$")
_SENTENCE_END = re.compile(r"(?<=[.!?])\s+")


class Chunk(msgspec.Struct, frozen=True):
    source: str
    position: int
    text: str

    @property
    def id(self) -> str:
        digest = hashlib.sha256(f"{self.source}\0{self.position}\0{self.text}".encode())
        return f"chunk-{digest.hexdigest()[:32]}"


class FileIngested(msgspec.Struct, frozen=True):
    """Progress: one file done, out of `total`."""

    path: str
    chunks: int
    done: int
    total: int


Progress = Callable[[FileIngested], None]


def _split_long(paragraph: str, max_chars: int) -> Iterator[str]:
    piece = ""
    for sentence in _SENTENCE_END.split(paragraph):
        while len(sentence) > max_chars:
            if piece:
                yield piece
                piece = ""
            yield sentence[:max_chars]
            sentence = sentence[max_chars:]
        if piece and len(piece) + 1 + len(sentence) > max_chars:
            yield piece
            piece = ""
        piece = f"{piece} {sentence}" if piece else sentence
    if piece:
        yield piece


def _sections(text: str, markdown: bool) -> Iterator[tuple[str, list[str]]]:
    """(heading path, paragraphs) per section, in order."""
    headings: list[str] = []
    paragraphs: list[str] = []
    current: list[str] = []

    def close_paragraph() -> None:
        if current:
            paragraphs.append(" ".join(line.strip() for line in current))
            current.clear()

    for line in text.splitlines():
        match = _HEADING.match(line) if markdown else None
        if match:
            close_paragraph()
            if paragraphs:
                yield " > ".join(headings), paragraphs
                paragraphs = []
            level = len(match.group(1))
            headings = [*headings[: level - 1], match.group(2)]
        elif line.strip():
            current.append(line)
        else:
            close_paragraph()
    close_paragraph()
    if paragraphs:
        yield " > ".join(headings), paragraphs


def chunk_text(
    text: str, source: str, *, max_chars: int = 1200, markdown: bool = True
) -> list[Chunk]:
    """Split one document into chunks of at most about `max_chars` characters."""
    chunks: list[Chunk] = []
    for heading, paragraphs in _sections(text, markdown):
        prefix = f"{heading}\n" if heading else ""
        budget = max(200, max_chars - len(prefix))
        body = ""
        pieces = (p for para in paragraphs for p in _split_long(para, budget))
        for piece in pieces:
            if body and len(body) + 2 + len(piece) > budget:
                chunks.append(Chunk(source, len(chunks), prefix + body))
                body = ""
            body = f"{body}\n\n{piece}" if body else piece
        if body:
            chunks.append(Chunk(source, len(chunks), prefix + body))
    return chunks


def discover(paths: Iterable[Path]) -> list[Path]:
    """The files to ingest: given files as they are, directories searched for text files."""
    found: list[Path] = []
    for path in paths:
        if path.is_dir():
            found.extend(sorted(p for p in path.rglob("*") if p.suffix.lower() in SUFFIXES))
        elif path.is_file():
            found.append(path)
        else:
            raise FileNotFoundError(f"no such file or directory: {path}")
    return found


def chunk_file(path: Path, max_chars: int = 1200) -> list[Chunk]:
    text = path.read_text(encoding="utf-8", errors="replace")
    markdown = path.suffix.lower() in {".md", ".markdown"}
    return chunk_text(text, str(path.resolve()), max_chars=max_chars, markdown=markdown)


async def ingest(
    client: MemoryClient,
    paths: Iterable[Path],
    *,
    max_chars: int = 1200,
    progress: Progress | None = None,
) -> dict[str, list[str]]:
    """Ingest files as `document` memories; returns the chunk ids stored per source."""
    files = discover(paths)
    stored: dict[str, list[str]] = {}
    for done, path in enumerate(files, start=1):
        chunks = chunk_file(path, max_chars)
        source = str(path.resolve())
        await client.delete(source=source, kind="document")
        records = [
            MemoryRecord(
                id=c.id, text=c.text, kind="document", source=c.source, position=c.position
            )
            for c in chunks
        ]
        stored[source] = (
            (await client.upsert(records, skip_near_duplicates=False)).ids if records else []
        )
        if progress is not None:
            progress(FileIngested(source, len(chunks), done, len(files)))
    return stored
