"""BM25 ranking with SQLite's FTS5, in the runtime's own database file.

Each vector store gets its own contentless FTS5 table, so BM25's document frequencies are those
of the store being searched and dropping a store is one ``DROP TABLE``. Chunk texts live in one
ordinary table beside them. The index opens its own connections to the file (WAL lets readers
run while a writer indexes) and writes in short transactions, so indexing a large file never
holds up the rest of the runtime.

Scores are BM25 divided by the most the query could score (every query word at saturation,
``idf * (k1 + 1)`` summed), which puts them in [0, 1] with a meaning that does not depend on the
other hits: near 1 is every query word, densely; 0.2 is a passing mention, or one word of several
(a query word the store has nowhere counts as its rarest). FTS5's idf is zero for a word in half
the chunks or more, which in a store of three small files is every word; so small stores (up to
``RESCORE_UP_TO`` chunks) have FTS5's candidates rescored with Lucene's idf, which stays
positive. Large stores keep FTS5's scores, where such words weigh nothing and are left out of the
query (FTS5 would otherwise score every chunk holding them).
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
#: stores of up to this many chunks (about 3 MB of text) are scored with Lucene's idf, exactly (FTS5's
#: bm25() costs a pass over each term's whole posting list, which only a small store can afford per term)
RESCORE_UP_TO = 2000

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
        n, frequencies = self._frequencies(db, table, store_id, query_terms(query))
        present = [t for t in frequencies if frequencies[t]]
        if not present:
            return []
        if n <= RESCORE_UP_TO:
            candidates = self._candidates(db, table, store_id, " OR ".join(present), max(limit * 3, 50), file_ids)
            scores = self._rescore(db, table, n, frequencies, present, [c[0] for c in candidates])
            best = sum(self._idf(n, hits) for hits in frequencies.values()) * (K1 + 1)
        else:
            # FTS5's own scores; a word in half the chunks or more has no weight there (idf 0), and
            # leaving it out spares FTS5 scoring every chunk that holds it
            selective = [t for t in frequencies if frequencies[t] < n / 2] or present
            matched = [t for t in selective if frequencies[t]] or present
            candidates = self._candidates(db, table, store_id, " OR ".join(matched), limit, file_ids)
            scores = {c[0]: c[4] for c in candidates}
            best = sum(max(self._fts5_idf(n, frequencies[t]), 1e-6) for t in selective) * (K1 + 1)
        ranked = sorted(candidates, key=lambda c: -scores.get(c[0], 0.0))[:limit]
        return [Hit(c[1], c[2], c[3], min(1.0, scores.get(c[0], 0.0) / best)) for c in ranked]

    @staticmethod
    def _fts5_idf(n: int, hits: int) -> float:
        """FTS5's idf (before it turns values of 0 or less into 1e-6)."""
        return math.log((n - hits + 0.5) / (hits + 0.5))

    @staticmethod
    def _idf(n: int, hits: int) -> float:
        """Lucene's BM25 idf, which stays positive however common a term is (FTS5's drops to 0)."""
        return math.log(1 + (n - hits + 0.5) / (hits + 0.5))

    def _rescore(
        self, db: sqlite3.Connection, table: str, n: int, frequencies: dict[str, int], terms: list[str],
        rowids: list[int],
    ) -> dict[int, float]:
        """BM25 with Lucene's idf for each candidate chunk.

        FTS5 scores one term as ``idf_fts5 * tf_part``; dividing by FTS5's own idf (which is known:
        same N, same hit count) leaves the term-frequency part, which is then weighted anew.
        """
        scores: dict[int, float] = {}
        if not rowids:
            return scores
        marks = ",".join("?" * len(rowids))
        for term in terms:
            fts5_idf = self._fts5_idf(n, frequencies[term])
            weight = self._idf(n, frequencies[term]) / (fts5_idf if fts5_idf > 0 else 1e-6)
            for rowid, score in db.execute(
                f"SELECT rowid, -bm25({table}) FROM {table} WHERE {table} MATCH ? AND rowid IN ({marks})",
                [term, *rowids],
            ):
                scores[rowid] = scores.get(rowid, 0.0) + score * weight
        return scores

    def _candidates(
        self, db: sqlite3.Connection, table: str, store_id: str, expression: str, pool: int,
        file_ids: Collection[str] | None,
    ) -> list[tuple[int, str, int, str, float]]:
        """(rowid, file, chunk, text, FTS5 score) of the best chunks of wanted, finished files.

        FTS5 ranks fastest on its own (ORDER BY rank LIMIT); left-out files are dropped afterwards,
        and only a filter that leaves out most of the best chunks needs the slower joined query.
        """
        hidden = self._unfinished(db, store_id)
        fetch = pool if file_ids is None and not hidden else pool * 4
        ranked = db.execute(
            f"SELECT rowid, -rank FROM {table} WHERE {table} MATCH ? ORDER BY rank LIMIT ?", (expression, fetch)
        ).fetchall()
        rows = self._chunks(db, ranked)
        wanted = [r for r in rows if r[1] not in hidden and (file_ids is None or r[1] in file_ids)][:pool]
        if len(wanted) < pool and len(ranked) == fetch:
            wanted = self._search_joined(db, table, expression, pool, file_ids, hidden)
        return wanted

    @staticmethod
    def _chunks(db: sqlite3.Connection, ranked: list[tuple[int, float]]) -> list[tuple[int, str, int, str, float]]:
        if not ranked:
            return []
        found = {
            r[0]: r
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
    ) -> list[tuple[int, str, int, str, float]]:
        where, args = "", []
        if file_ids is not None:
            where += f" AND c.file IN ({','.join('?' * len(file_ids))})"
            args += list(file_ids)
        if hidden:
            where += f" AND c.file NOT IN ({','.join('?' * len(hidden))})"
            args += list(hidden)
        return db.execute(
            f"SELECT c.id, c.file, c.ord, c.text, -bm25({table}) FROM {table} JOIN search_chunks c "
            f"ON c.id = {table}.rowid WHERE {table} MATCH ?{where} ORDER BY bm25({table}) LIMIT ?",
            [expression, *args, limit],
        ).fetchall()

    def _unfinished(self, db: sqlite3.Connection, store_id: str) -> set[str]:
        """Files still being added: their first chunks are in the index but must not be found yet."""
        return {r[0] for r in db.execute("SELECT file FROM search_files WHERE store = ? AND ready = 0", (store_id,))}

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
