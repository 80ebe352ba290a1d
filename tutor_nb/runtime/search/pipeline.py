"""One file's way into an index: read, chunk, index. What a vector store's background worker runs."""

from __future__ import annotations

from dataclasses import dataclass

from .chunking import ChunkingStrategy, TooManyTokens, chunk_text
from .index import SearchIndex
from .readers import UnreadableFile, read_text


@dataclass(frozen=True)
class Indexed:
    """What indexing a file gave: its chunks, and the bytes of text it adds to the store."""

    chunks: int
    usage_bytes: int


def index_file(
    index: SearchIndex, store_id: str, file_id: str, filename: str, data: bytes,
    strategy: ChunkingStrategy = ChunkingStrategy(),
) -> Indexed:
    """Read, chunk and index one file; :class:`UnreadableFile` if it has nothing to index."""
    text = read_text(filename, data)
    try:
        chunks = chunk_text(text, strategy)
    except TooManyTokens as exc:
        raise UnreadableFile("invalid_file", f"{filename}: {exc}") from None
    index.add(store_id, file_id, chunks)
    return Indexed(len(chunks), len(text.encode("utf-8")))
