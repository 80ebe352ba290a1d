"""BM25 ranking with SQLite's FTS5, in the runtime's own database file.

Each vector store gets its own contentless FTS5 table, so BM25's document frequencies are those
of the store being searched and dropping a store is one ``DROP TABLE``. Chunk texts live in one
ordinary table beside them. The index opens its own connections to the file (WAL lets readers
run while a writer indexes) and writes in short transactions, so indexing a large file never
holds up the rest of the runtime.

Scores: FTS5's ``bm25()`` is unbounded and grows with the number of query terms. Each is divided
by the most the query could score, every term at saturation (``idf * (k1 + 1)`` summed over the
terms, with FTS5's own ``k1 = 1.2`` and idf), which puts scores in [0, 1] with a meaning that does
not depend on the other hits: 1 is every query word, densely; 0.2 is a passing mention.
"""

from __future__ import annotations

import math
import sqlite3
import threading
from collections.abc import Collection, Sequence
from pathlib import Path

from .analysis import index_form, query_terms
from .index import Hit, check_store_id

K1 = 1.2  # FTS5's bm25() constants
_BATCH = 256  # chunks per write transaction: a few milliseconds each

_SCHEMA = """
CREATE TABLE IF NOT EXISTS search_chunks (
    id INTEGER PRIMARY KEY,
    store TEXT NOT NULL,
    file TEXT NOT NULL,
    ord INTEGER NOT NULL,
    text TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS search_chunks_by_file ON search_chunks (store, file, ord);
CREATE TABLE IF NOT EXISTS search_files (
    store TEXT NOT NULL,
    file TEXT NOT NULL,
    ready INTEGER NOT NULL,
    PRIMARY KEY (store, file)
);
"""


def _connect(path: Path) -> sqlite3.Connection:
    db = sqlite3.connect(path, check_same_thread=False, isolation_level=None)
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA busy_timeout=10000")
    return db


class Bm25Index:
    """The default :class:`~.index.SearchIndex`: FTS5 BM25 over one SQLite file."""

    def __init__(self, path: Path) -> None:
        self.path = Path(path)
        self._write_lock = threading.Lock()
        self._writer = _connect(self.path)
        self._writer.executescript(_SCHEMA)
        self._local = threading.local()
        self._readers: list[sqlite3.Connection] = []
        self._cache_lock = threading.Lock()
        self._df: dict[str, dict[str | None, int]] = {}  # store -> term (None: all chunks) -> chunks holding it
        self._generation: dict[str, int] = {}

    def close(self) -> None:
        with self._write_lock:
            self._writer.close()
            for db in self._readers:
                db.close()
            self._readers.clear()

    def _reader(self) -> sqlite3.Connection:
        db = getattr(self._local, "db", None)
        if db is None:
            db = self._local.db = _connect(self.path)
            with self._write_lock:
                self._readers.append(db)
        return db

    @staticmethod
    def _table(store_id: str) -> str:
        return f"search_fts_{check_store_id(store_id)}"

    # -- writing ---------------------------------------------------------------------------

    def add(self, store_id: str, file_id: str, chunks: Sequence[str]) -> None:
        table = self._table(store_id)
        self.remove(store_id, file_id)
        with self._write_lock, self._transaction():
            self._writer.execute(
                f"CREATE VIRTUAL TABLE IF NOT EXISTS {table} USING fts5(body, content='', "
                "tokenize='porter unicode61 remove_diacritics 2')"
            )
            self._writer.execute("INSERT INTO search_files (store, file, ready) VALUES (?, ?, 0)", (store_id, file_id))
        for start in range(0, len(chunks), _BATCH):
            batch = chunks[start : start + _BATCH]
            forms = [index_form(text) for text in batch]  # outside the lock: other writers go on
            with self._write_lock, self._transaction():
                first = self._writer.execute("SELECT COALESCE(MAX(id), 0) + 1 FROM search_chunks").fetchone()[0]
                self._writer.executemany(
                    "INSERT INTO search_chunks (id, store, file, ord, text) VALUES (?, ?, ?, ?, ?)",
                    [(first + i, store_id, file_id, start + i, text) for i, text in enumerate(batch)],
                )
                self._writer.executemany(
                    f"INSERT INTO {table} (rowid, body) VALUES (?, ?)", [(first + i, f) for i, f in enumerate(forms)]
                )
            self._changed(store_id)
        with self._write_lock:
            self._writer.execute("UPDATE search_files SET ready = 1 WHERE store = ? AND file = ?", (store_id, file_id))
        self._changed(store_id)

    def remove(self, store_id: str, file_id: str) -> None:
        table = self._table(store_id)
        with self._write_lock:
            if not self._has_table(self._writer, table):
                return
            # hidden from searches first, so a half-removed file is never found either
            self._writer.execute("UPDATE search_files SET ready = 0 WHERE store = ? AND file = ?", (store_id, file_id))
            while True:
                with self._transaction():
                    rows = self._writer.execute(
                        "SELECT id, text FROM search_chunks WHERE store = ? AND file = ? LIMIT ?",
                        (store_id, file_id, _BATCH),
                    ).fetchall()
                    for id_, text in rows:
                        # a contentless table forgets a row when told the text it was given
                        self._writer.execute(
                            f"INSERT INTO {table} ({table}, rowid, body) VALUES ('delete', ?, ?)",
                            (id_, index_form(text)),
                        )
                    self._writer.executemany("DELETE FROM search_chunks WHERE id = ?", [(r[0],) for r in rows])
                self._changed(store_id)
                if len(rows) < _BATCH:
                    break
            self._writer.execute("DELETE FROM search_files WHERE store = ? AND file = ?", (store_id, file_id))

    def drop(self, store_id: str) -> None:
        table = self._table(store_id)
        with self._write_lock, self._transaction():
            self._writer.execute(f"DROP TABLE IF EXISTS {table}")
            self._writer.execute("DELETE FROM search_chunks WHERE store = ?", (store_id,))
            self._writer.execute("DELETE FROM search_files WHERE store = ?", (store_id,))
        self._changed(store_id)

    def _transaction(self) -> "_Tx":
        return _Tx(self._writer)

    @staticmethod
    def _has_table(db: sqlite3.Connection, table: str) -> bool:
        return db.execute("SELECT 1 FROM sqlite_master WHERE name = ?", (table,)).fetchone() is not None

    # -- searching -------------------------------------------------------------------------

    def search(
        self, store_id: str, query: str, *, limit: int, file_ids: Collection[str] | None = None
    ) -> list[Hit]:
        table = self._table(store_id)
        db = self._reader()
        if (file_ids is not None and not file_ids) or not self._has_table(db, table):
            return []
        terms, best = self._weigh(db, table, store_id, query_terms(query))
        if not terms:
            return []
        expression = " OR ".join(terms)
        hidden = self._unfinished(db, store_id)
        wanted = (lambda f: f in file_ids and f not in hidden) if file_ids is not None else (lambda f: f not in hidden)
        # FTS5 ranks fastest on its own (ORDER BY rank LIMIT); files left out are dropped afterwards,
        # and only a filter that leaves out most of the best chunks needs the slower joined query
        fetch = limit if file_ids is None and not hidden else limit * 4
        ranked = db.execute(
            f"SELECT rowid, -rank FROM {table} WHERE {table} MATCH ? ORDER BY rank LIMIT ?", (expression, fetch)
        ).fetchall()
        rows = self._chunks(db, ranked)
        hits = [row for row in rows if wanted(row[0])][:limit]
        if len(hits) < limit and len(ranked) == fetch:
            hits = self._search_joined(db, table, expression, limit, file_ids, hidden)
        return [Hit(f, o, t, min(1.0, max(0.0, s / best))) for f, o, t, s in hits]

    @staticmethod
    def _chunks(db: sqlite3.Connection, ranked: list[tuple[int, float]]) -> list[tuple[str, int, str, float]]:
        if not ranked:
            return []
        found = {
            r[0]: r[1:]
            for r in db.execute(
                f"SELECT id, file, ord, text FROM search_chunks WHERE id IN ({','.join('?' * len(ranked))})",
                [r[0] for r in ranked],
            )
        }
        return [(*found[i], score) for i, score in ranked if i in found]

    @staticmethod
    def _search_joined(
        db: sqlite3.Connection, table: str, expression: str, limit: int,
        file_ids: Collection[str] | None, hidden: set[str],
    ) -> list[tuple[str, int, str, float]]:
        where, args = "", []
        if file_ids is not None:
            where += f" AND c.file IN ({','.join('?' * len(file_ids))})"
            args += list(file_ids)
        if hidden:
            where += f" AND c.file NOT IN ({','.join('?' * len(hidden))})"
            args += list(hidden)
        return db.execute(
            f"SELECT c.file, c.ord, c.text, -bm25({table}) FROM {table} JOIN search_chunks c "
            f"ON c.id = {table}.rowid WHERE {table} MATCH ?{where} ORDER BY bm25({table}) LIMIT ?",
            [expression, *args, limit],
        ).fetchall()

    def _unfinished(self, db: sqlite3.Connection, store_id: str) -> set[str]:
        """Files still being added: their first chunks are in the index but must not be found yet."""
        return {r[0] for r in db.execute("SELECT file FROM search_files WHERE store = ? AND ready = 0", (store_id,))}

    def _weigh(
        self, db: sqlite3.Connection, table: str, store_id: str, terms: list[str]
    ) -> tuple[list[str], float]:
        """The terms worth matching, and the most a chunk could score with them.

        A term in half the chunks or more has an idf of zero in BM25 (FTS5 makes it 1e-6): it
        changes no ranking, yet FTS5 would score every chunk holding it, so it is left out unless
        the query has nothing else. The best possible score floors each idf at ln 2, so a query of
        nothing but such words scores near 0, as it should.
        """
        n, frequencies = self._frequencies(db, table, store_id, terms)
        present = [t for t in terms if frequencies[t]]
        useful = [t for t in present if frequencies[t] < n / 2] or present
        best = 0.0
        for term in useful:
            idf = math.log((n - frequencies[term] + 0.5) / (frequencies[term] + 0.5))
            best += max(idf, math.log(2)) * (K1 + 1)
        return useful, best or 1.0

    def _frequencies(
        self, db: sqlite3.Connection, table: str, store_id: str, terms: list[str]
    ) -> tuple[int, dict[str, int]]:
        """How many chunks the store has, and how many hold each term; kept until the store changes."""
        with self._cache_lock:
            generation = self._generation.get(store_id, 0)
            known = dict(self._df.get(store_id, {}))
        found: dict[str | None, int] = {}
        if None not in known:
            found[None] = db.execute("SELECT COUNT(*) FROM search_chunks WHERE store = ?", (store_id,)).fetchone()[0]
        for term in terms:
            if term not in known:
                found[term] = db.execute(f"SELECT COUNT(*) FROM {table} WHERE {table} MATCH ?", (term,)).fetchone()[0]
        with self._cache_lock:
            if self._generation.get(store_id, 0) == generation:  # nothing was written meanwhile
                self._df.setdefault(store_id, {}).update(found)
        known.update(found)
        return known[None], {t: known[t] for t in terms}

    def _changed(self, store_id: str) -> None:
        with self._cache_lock:
            self._generation[store_id] = self._generation.get(store_id, 0) + 1
            self._df.pop(store_id, None)


class _Tx:
    """BEGIN IMMEDIATE ... COMMIT, rolled back on any error."""

    def __init__(self, db: sqlite3.Connection) -> None:
        self.db = db

    def __enter__(self) -> None:
        self.db.execute("BEGIN IMMEDIATE")

    def __exit__(self, kind: object, *_: object) -> None:
        self.db.execute("ROLLBACK" if kind else "COMMIT")
