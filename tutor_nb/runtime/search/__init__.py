"""File search: reading files, chunking them and ranking their chunks, with nothing to download.

The default index is BM25 in SQLite's FTS5 (:mod:`.bm25`), in the runtime's own database. With an
OpenAI-compatible embeddings endpoint configured, chunks are also embedded and the two rankings
are fused (:mod:`.fusion`). Vector stores talk to either through one seam, :class:`SearchIndex`.
"""

from __future__ import annotations

from pathlib import Path

from .bm25 import Bm25Index
from .chunking import ChunkingError, ChunkingStrategy, chunk_text, count_tokens
from .filters import FilterError, compile_filter
from .index import Hit, SearchIndex
from .pipeline import Indexed, index_file
from .readers import UnreadableFile, read_text

__all__ = [
    "Bm25Index", "ChunkingError", "ChunkingStrategy", "FilterError", "Hit", "Indexed", "SearchIndex",
    "UnreadableFile", "chunk_text", "compile_filter", "count_tokens", "index_file", "open_index", "read_text",
]


def open_index(
    db_path: Path, *, embeddings_base_url: str | None = None, embeddings_model: str | None = None
) -> SearchIndex:
    """BM25 over ``db_path``; fused with embeddings when an endpoint and model are given."""
    bm25 = Bm25Index(db_path)
    if not embeddings_base_url:
        return bm25
    if not embeddings_model:
        raise ValueError("An embeddings endpoint needs a model: pass --embeddings-model as well.")
    from .embeddings import EmbeddingsClient
    from .fusion import FusedIndex
    from .vectors import EmbeddingIndex

    client = EmbeddingsClient(embeddings_base_url, embeddings_model)
    return FusedIndex(bm25, EmbeddingIndex(db_path, client))
