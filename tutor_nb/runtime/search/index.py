"""The seam between vector stores and the indexes that rank their chunks.

A vector store hands an index each file's chunks once, asks it for the best chunks for a query,
and tells it when a file or the whole store goes. Anything with these four methods can rank:
:class:`~.bm25.Bm25Index` (the default, SQLite FTS5, nothing to download),
:class:`~.vectors.EmbeddingIndex` (an OpenAI-compatible ``/v1/embeddings`` endpoint) and
:class:`~.fusion.FusedIndex`, which ranks with several at once.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Protocol


@dataclass(frozen=True)
class Hit:
    """One chunk that matched: which file, which of its chunks, the text, and a score in [0, 1]."""

    file_id: str
    chunk: int
    text: str
    score: float


class SearchIndex(Protocol):
    """What a vector store needs from an index. Methods are synchronous and thread-safe."""

    def add(self, store_id: str, file_id: str, chunks: Sequence[str]) -> None:
        """Index a file's chunks in a store (replacing any it had there)."""

    def remove(self, store_id: str, file_id: str) -> None:
        """Forget a file's chunks in a store."""

    def drop(self, store_id: str) -> None:
        """Forget a whole store."""

    def search(
        self, store_id: str, query: str, *, limit: int, file_ids: Collection[str] | None = None
    ) -> list[Hit]:
        """The best ``limit`` chunks for ``query``, best first; only from ``file_ids`` when given."""


def check_store_id(store_id: str) -> str:
    """Store ids name SQL tables, so only the characters our own ids use are accepted."""
    if not store_id or not store_id.replace("_", "").isalnum() or not store_id.isascii():
        raise ValueError(f"not a vector store id: {store_id!r}")
    return store_id
