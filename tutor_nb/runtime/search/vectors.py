"""Ranking by embeddings: cosine similarity between a query's vector and each chunk's.

Vectors are stored as float32 blobs in the runtime's SQLite file and searched exactly (a matrix
product), which at classroom sizes (tens of thousands of chunks) takes milliseconds and needs no
approximate index. A store's matrix is loaded once and kept until the store changes.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Collection, Sequence
from pathlib import Path

import numpy as np

from .bm25 import _connect
from .embeddings import EmbeddingsClient
from .index import Hit, check_store_id

_SCHEMA = """
CREATE TABLE IF NOT EXISTS search_vectors (
    id INTEGER PRIMARY KEY,
    store TEXT NOT NULL,
    file TEXT NOT NULL,
    ord INTEGER NOT NULL,
    text TEXT NOT NULL,
    vector BLOB NOT NULL
);
CREATE INDEX IF NOT EXISTS search_vectors_by_file ON search_vectors (store, file, ord);
"""


class _Matrix:
    def __init__(self, rows: list[tuple[str, int, str, bytes]]) -> None:
        self.files = [r[0] for r in rows]
        self.ords = [r[1] for r in rows]
        self.texts = [r[2] for r in rows]
        self.vectors = np.stack([np.frombuffer(r[3], dtype=np.float32) for r in rows]) if rows else None


class EmbeddingIndex:
    """A :class:`~.index.SearchIndex` ranking by an embeddings endpoint's vectors."""

    def __init__(self, path: Path, client: EmbeddingsClient) -> None:
        self.client = client
        self._lock = threading.Lock()
        self._db: sqlite3.Connection = _connect(Path(path))
        self._db.executescript(_SCHEMA)
        self._cache: dict[str, _Matrix] = {}

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def add(self, store_id: str, file_id: str, chunks: Sequence[str]) -> None:
        check_store_id(store_id)
        vectors = self.client.embed(chunks)  # before taking the lock: this is the slow part
        with self._lock:
            self._cache.pop(store_id, None)
            self._db.execute("BEGIN IMMEDIATE")
            try:
                self._db.execute("DELETE FROM search_vectors WHERE store = ? AND file = ?", (store_id, file_id))
                self._db.executemany(
                    "INSERT INTO search_vectors (store, file, ord, text, vector) VALUES (?, ?, ?, ?, ?)",
                    [(store_id, file_id, i, text, vectors[i].tobytes()) for i, text in enumerate(chunks)],
                )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def remove(self, store_id: str, file_id: str) -> None:
        with self._lock:
            self._cache.pop(store_id, None)
            self._db.execute("DELETE FROM search_vectors WHERE store = ? AND file = ?", (store_id, file_id))

    def drop(self, store_id: str) -> None:
        with self._lock:
            self._cache.pop(store_id, None)
            self._db.execute("DELETE FROM search_vectors WHERE store = ?", (store_id,))

    def search(
        self, store_id: str, query: str, *, limit: int, file_ids: Collection[str] | None = None
    ) -> list[Hit]:
        matrix = self._matrix(check_store_id(store_id))
        if matrix.vectors is None or not query.strip():
            return []
        query_vector = self.client.embed([query])[0]
        if query_vector.shape[0] != matrix.vectors.shape[1]:
            raise ValueError(
                f"The query's embedding has {query_vector.shape[0]} dimensions but the store's have "
                f"{matrix.vectors.shape[1]}: the embeddings model changed. Add the files to a new vector store."
            )
        similarity = matrix.vectors @ query_vector
        if file_ids is not None:
            allowed = np.fromiter((f in file_ids for f in matrix.files), dtype=bool, count=len(matrix.files))
            similarity = np.where(allowed, similarity, -np.inf)
        best = np.argsort(-similarity, kind="stable")[:limit]
        return [
            Hit(matrix.files[i], matrix.ords[i], matrix.texts[i], float(max(0.0, min(1.0, similarity[i]))))
            for i in best
            if similarity[i] > -np.inf
        ]

    def _matrix(self, store_id: str) -> _Matrix:
        with self._lock:
            cached = self._cache.get(store_id)
            if cached is None:
                rows = self._db.execute(
                    "SELECT file, ord, text, vector FROM search_vectors WHERE store = ? ORDER BY id", (store_id,)
                ).fetchall()
                cached = self._cache[store_id] = _Matrix(rows)
            return cached
