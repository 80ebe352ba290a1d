"""The files of vector stores: one row per (store, file), with its status, in the runtime's SQLite.

A file can sit in several stores, each with its own status, attributes and chunking, and it keeps
its file id there; that is why these rows are not in the object table (whose ids are unique).
Lists page by creation order with OpenAI's ``after``/``before`` cursors, as other lists do.
"""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any

from openai.types.vector_stores import VectorStoreFile

from ..store import Page
from .bm25 import _connect

_SCHEMA = """
CREATE TABLE IF NOT EXISTS vector_store_files (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    store TEXT NOT NULL,
    file TEXT NOT NULL,
    batch TEXT,
    status TEXT NOT NULL,
    body TEXT NOT NULL,
    UNIQUE (store, file)
);
CREATE INDEX IF NOT EXISTS vector_store_files_by_batch ON vector_store_files (batch, status);
CREATE INDEX IF NOT EXISTS vector_store_files_by_status ON vector_store_files (store, status);
"""

STATUSES = ("in_progress", "completed", "failed", "cancelled")


class StoreFiles:
    """Rows of ``vector_store_files``; thread-safe."""

    def __init__(self, path: Path) -> None:
        self._lock = threading.Lock()
        self._db = _connect(Path(path))
        self._db.executescript(_SCHEMA)

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def put(self, vsf: VectorStoreFile, batch: str | None = None) -> None:
        """Add a file to a store, or start it over if it is there already (it moves to the end)."""
        with self._lock:
            self._db.execute("DELETE FROM vector_store_files WHERE store = ? AND file = ?", (vsf.vector_store_id, vsf.id))
            self._db.execute(
                "INSERT INTO vector_store_files (store, file, batch, status, body) VALUES (?, ?, ?, ?, ?)",
                (vsf.vector_store_id, vsf.id, batch, vsf.status, vsf.model_dump_json()),
            )

    def save(self, vsf: VectorStoreFile, *, only_if: str | None = None) -> bool:
        """Write back a file's row; with ``only_if``, only while its status is still that one."""
        sql = "UPDATE vector_store_files SET status = ?, body = ? WHERE store = ? AND file = ?"
        args: list[Any] = [vsf.status, vsf.model_dump_json(), vsf.vector_store_id, vsf.id]
        if only_if is not None:
            sql += " AND status = ?"
            args.append(only_if)
        with self._lock:
            return self._db.execute(sql, args).rowcount == 1

    def finish(self, store_id: str, file_id: str, status: str, *, usage_bytes: int = 0,
               last_error: dict[str, str] | None = None) -> bool:
        """End a file's indexing, unless it was removed, cancelled or started over meanwhile.

        Only the status fields change, so attributes set while it was indexed are kept.
        """
        with self._lock:
            return self._db.execute(
                "UPDATE vector_store_files SET status = ?, body = json_set(body, '$.status', ?, '$.usage_bytes', ?, "
                "'$.last_error', json(?)) WHERE store = ? AND file = ? AND status = 'in_progress'",
                (status, status, usage_bytes, json.dumps(last_error), store_id, file_id),
            ).rowcount == 1

    def get(self, store_id: str, file_id: str) -> VectorStoreFile | None:
        with self._lock:
            row = self._db.execute(
                "SELECT body FROM vector_store_files WHERE store = ? AND file = ?", (store_id, file_id)
            ).fetchone()
        return VectorStoreFile.model_validate_json(row[0]) if row else None

    def batch_of(self, store_id: str, file_id: str) -> str | None:
        with self._lock:
            row = self._db.execute(
                "SELECT batch FROM vector_store_files WHERE store = ? AND file = ?", (store_id, file_id)
            ).fetchone()
        return row[0] if row else None

    def delete(self, store_id: str, file_id: str) -> bool:
        with self._lock:
            return self._db.execute(
                "DELETE FROM vector_store_files WHERE store = ? AND file = ?", (store_id, file_id)
            ).rowcount == 1

    def drop(self, store_id: str) -> None:
        with self._lock:
            self._db.execute("DELETE FROM vector_store_files WHERE store = ?", (store_id,))

    def all(self, store_id: str, status: str | None = None) -> list[VectorStoreFile]:
        sql, args = "SELECT body FROM vector_store_files WHERE store = ?", [store_id]
        if status:
            sql += " AND status = ?"
            args.append(status)
        with self._lock:
            rows = self._db.execute(sql + " ORDER BY seq", args).fetchall()
        return [VectorStoreFile.model_validate_json(r[0]) for r in rows]

    def in_progress(self) -> list[VectorStoreFile]:
        """Every file still waiting to be indexed, in every store (the work left by the last run)."""
        with self._lock:
            rows = self._db.execute(
                "SELECT body FROM vector_store_files WHERE status = 'in_progress' ORDER BY seq"
            ).fetchall()
        return [VectorStoreFile.model_validate_json(r[0]) for r in rows]

    def counts(self, *, store: str | None = None, batch: str | None = None) -> dict[str, int]:
        """``file_counts`` of a store or of a batch."""
        column, value = ("store", store) if batch is None else ("batch", batch)
        with self._lock:
            rows = self._db.execute(
                f"SELECT status, COUNT(*) FROM vector_store_files WHERE {column} = ? GROUP BY status", (value,)
            ).fetchall()
        counts = {status: 0 for status in STATUSES}
        counts.update(dict(rows))
        counts["total"] = sum(counts[s] for s in STATUSES)
        return counts

    def usage_bytes(self, store_id: str) -> int:
        with self._lock:
            row = self._db.execute(
                "SELECT COALESCE(SUM(json_extract(body, '$.usage_bytes')), 0) FROM vector_store_files "
                "WHERE store = ? AND status = 'completed'", (store_id,)
            ).fetchone()
        return int(row[0])

    def page(
        self, store_id: str, *, limit: int = 20, order: str = "desc", after: str | None = None,
        before: str | None = None, status: str | None = None, batch: str | None = None,
    ) -> Page:
        """A page of a store's (or a batch's) files; cursors are file ids, as the SDK sends them."""
        clauses, args = ["store = ?"], [store_id]
        if status:
            clauses.append("status = ?")
            args.append(status)
        if batch:
            clauses.append("batch = ?")
            args.append(batch)
        descending = order == "desc"
        for cursor, later in ((after, True), (before, False)):
            if cursor is None:
                continue
            op = "<" if later == descending else ">"
            clauses.append(f"seq {op} COALESCE((SELECT seq FROM vector_store_files WHERE store = ? AND file = ?), ?)")
            args += [store_id, cursor, -1 if op == ">" else 2**62]
        backwards = before is not None and after is None
        direction = "DESC" if descending != backwards else "ASC"
        with self._lock:
            rows = self._db.execute(
                f"SELECT body FROM vector_store_files WHERE {' AND '.join(clauses)} ORDER BY seq {direction} LIMIT ?",
                [*args, limit + 1],
            ).fetchall()
        items = [VectorStoreFile.model_validate_json(r[0]) for r in rows[:limit]]
        if backwards:
            items.reverse()
        return Page(items, len(rows) > limit)
