"""Durable state of the runtime: every API object, in one SQLite file.

Objects are stored as the JSON of the ``openai`` SDK's own pydantic types, so what is read
back is exactly what clients parse. One table holds every kind; a row's ``seq`` (SQLite's
rowid) gives creation order, which is what list endpoints page through. WAL with
``synchronous=NORMAL`` survives a killed process (only power loss may drop the last commit).
File bytes live next to the database, written to a temporary name and renamed into place.
"""

from __future__ import annotations

import json
import os
import sqlite3
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, TypeVar

from openai.types import ContainerRetrieveResponse, FileObject, VectorStore
from openai.types.beta import Assistant, Thread
from openai.types.beta.threads import Message, Run
from openai.types.beta.threads.runs import RunStep
from openai.types.containers import FileRetrieveResponse
from openai.types.conversations import Conversation
from openai.types.responses import Response
from openai.types.vector_stores import VectorStoreFileBatch
from pydantic import BaseModel

from .learners import current_owner

M = TypeVar("M", bound=BaseModel)


class ItemEntry(BaseModel):
    """A Responses item in the list of its owner (a response's input, a conversation's items), as its own JSON.

    The row id is ``<owner id>/<item id>``: one item may be in several lists (a client resending its history)."""

    id: str
    item: dict[str, Any]


#: the kind column for each stored type; also the noun used in error messages
KINDS: dict[type[BaseModel], str] = {
    Assistant: "assistant",
    Thread: "thread",
    Message: "message",
    Run: "run",
    RunStep: "run step",
    FileObject: "file",
    VectorStore: "vector store",
    VectorStoreFileBatch: "vector store file batch",
    Response: "response",
    Conversation: "conversation",
    ItemEntry: "item",
    ContainerRetrieveResponse: "container",
    FileRetrieveResponse: "container file",
}

_SCHEMA = """
CREATE TABLE IF NOT EXISTS objects (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    id TEXT NOT NULL UNIQUE,
    kind TEXT NOT NULL,
    parent TEXT,
    body TEXT NOT NULL,
    owner TEXT
);
CREATE INDEX IF NOT EXISTS objects_by_parent ON objects (kind, parent, seq);
"""


def _private(*paths: Path) -> None:
    """Folders and files of the data folder: their owner's only (no other user, no kernel user, reads them)."""
    for path in paths:
        try:
            path.chmod(0o700 if path.is_dir() else 0o600)
        except FileNotFoundError:
            pass


@dataclass
class Page:
    """One page of a list endpoint, in OpenAI's cursor shape."""

    data: list[BaseModel]
    has_more: bool

    def to_wire(self) -> dict:
        data = [item.model_dump(mode="json", by_alias=True) for item in self.data]
        return {
            "object": "list",
            "data": data,
            "first_id": data[0]["id"] if data else None,
            "last_id": data[-1]["id"] if data else None,
            "has_more": self.has_more,
        }


class Store:
    """SQLite-backed objects plus a folder of file blobs. Safe to share between threads."""

    def __init__(self, data_dir: Path) -> None:
        self.data_dir = Path(data_dir)
        self.files_dir = self.data_dir / "files"
        self.data_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
        self.files_dir.mkdir(mode=0o700, exist_ok=True)
        self.path = self.data_dir / "tutor_nb.sqlite3"
        _private(self.data_dir, self.files_dir, self.path, *(self.path.with_name(self.path.name + s) for s in ("-wal", "-shm")))
        os.close(os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW, 0o600))  # -wal/-shm copy its mode
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, isolation_level=None)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA busy_timeout=5000")
        self._db.executescript(_SCHEMA)
        if "owner" not in {row[1] for row in self._db.execute("PRAGMA table_info(objects)")}:
            self._db.execute("ALTER TABLE objects ADD COLUMN owner TEXT")  # a data folder from before learners
        self._deletions: dict[str, int] = {}  # parent id -> objects deleted under it by this process

    def close(self) -> None:
        with self._lock:
            self._db.close()

    # -- objects -----------------------------------------------------------------------------

    def add(self, obj: BaseModel, parent: str | None = None) -> None:
        """Store a new object, owned by the learner asking (``current_owner``), or else by its parent's owner
        (what a run makes in the background belongs to whoever owns the thread)."""
        with self._lock:
            self._db.execute(
                "INSERT INTO objects (id, kind, parent, body, owner) "
                "VALUES (?, ?, ?, ?, COALESCE(?, (SELECT owner FROM objects WHERE id = ?)))",
                (obj.id, KINDS[type(obj)], parent, obj.model_dump_json(by_alias=True),  # type: ignore[attr-defined]
                 current_owner.get(), parent),
            )

    def save(self, obj: BaseModel) -> None:
        """Write back an object that already exists."""
        with self._lock:
            self._db.execute(
                "UPDATE objects SET body = ? WHERE id = ? AND kind = ?",
                (obj.model_dump_json(by_alias=True), obj.id, KINDS[type(obj)]),  # type: ignore[attr-defined]
            )

    def get(self, cls: type[M], id: str) -> M | None:
        """The object, or None if there is none, or it belongs to another learner than the one asking."""
        mine, args = _mine()
        with self._lock:
            row = self._db.execute(
                f"SELECT body FROM objects WHERE id = ? AND kind = ?{mine}", (id, KINDS[cls], *args)
            ).fetchone()
        return cls.model_validate_json(row[0]) if row else None

    def owners(self, kind: type[BaseModel]) -> dict[str, int]:
        """How many objects of a kind each learner owns (the teacher's view of who is active)."""
        with self._lock:
            rows = self._db.execute("SELECT owner, COUNT(*) FROM objects WHERE kind = ? AND owner IS NOT NULL "
                                    "GROUP BY owner", (KINDS[kind],)).fetchall()
        return dict(rows)

    def owned_ids(self, kind: type[BaseModel], owner: str) -> list[str]:
        with self._lock:
            rows = self._db.execute("SELECT id FROM objects WHERE kind = ? AND owner = ?", (KINDS[kind], owner))
            return [r[0] for r in rows.fetchall()]

    def delete(self, id: str) -> None:
        """Delete an object and everything stored under it (messages, runs and steps of a thread)."""
        with self._lock:
            parent = self._db.execute("SELECT parent FROM objects WHERE id = ?", (id,)).fetchone()
            if parent is not None and parent[0] is not None:
                self._deletions[parent[0]] = self._deletions.get(parent[0], 0) + 1
            self._db.execute("BEGIN")
            try:
                ids = [id]
                while ids:
                    placeholders = ",".join("?" * len(ids))
                    children = [
                        r[0]
                        for r in self._db.execute(
                            f"SELECT id FROM objects WHERE parent IN ({placeholders})", ids
                        )
                    ]
                    self._db.execute(f"DELETE FROM objects WHERE id IN ({placeholders})", ids)
                    ids = children
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise

    def children(self, cls: type[M], parent: str | None) -> list[M]:
        """All objects of a kind under a parent, oldest first."""
        return [obj for _, obj in self._iter(cls, parent)]

    def attached_files(self, thread_id: str, *, after: int = 0) -> tuple[int, list[str]]:
        """(newest message seq, file ids attached to the thread's messages after ``after``), read by SQLite
        itself: staging a long thread's files must not parse every message before every run."""
        with self._lock:
            newest = self._db.execute(
                "SELECT MAX(seq) FROM objects WHERE kind = 'message' AND parent = ?", (thread_id,)).fetchone()[0]
            rows = self._db.execute(
                "SELECT json_extract(a.value, '$.file_id') FROM objects AS o, json_each(o.body, '$.attachments') AS a "
                "WHERE o.kind = 'message' AND o.parent = ? AND o.seq > ? ORDER BY o.seq", (thread_id, after)).fetchall()
        return newest or 0, [file_id for (file_id,) in rows if file_id]

    # a thread's messages, and the steps of its runs that can hold rows after a point: runs are one at a time
    # in a thread, so those are the runs started after it and the one that was going at it (found by index)
    _HISTORY = (
        "SELECT seq, kind, body FROM objects WHERE kind = 'message' AND parent = :thread AND seq > :after "
        "UNION ALL SELECT s.seq, s.kind, s.body FROM objects AS r JOIN objects AS s "
        "ON s.kind = 'run step' AND s.parent = r.id AND s.seq > :after "
        "WHERE r.kind = 'run' AND r.parent = :thread AND r.seq >= COALESCE("
        "(SELECT MAX(seq) FROM objects WHERE kind = 'run' AND parent = :thread AND seq <= :after), 0) "
        "ORDER BY 1"
    )

    def thread_history(self, thread_id: str, *, after: int = 0) -> list[tuple[int, str, dict[str, Any]]]:
        """(seq, kind, wire dict) of a thread's messages and its runs' steps after ``after``, in creation order.

        Plain dicts, not models: the engine reads the history before every model call, and parsing
        JSON costs a fraction of validating models. Only rows after ``after`` are visited, however long
        the thread.
        """
        with self._lock:
            rows = self._db.execute(self._HISTORY, {"thread": thread_id, "after": after}).fetchall()
        return [(seq, kind, json.loads(body)) for seq, kind, body in rows]

    def deletions(self, parent: str) -> int:
        """How many objects this store has deleted directly under ``parent`` (a thread's messages): what a
        thread's converted history compares to know it is stale, without counting the thread's rows."""
        with self._lock:
            return self._deletions.get(parent, 0)

    def seq(self, id: str) -> int | None:
        """An object's place in creation order."""
        with self._lock:
            row = self._db.execute("SELECT seq FROM objects WHERE id = ?", (id,)).fetchone()
        return row[0] if row else None

    def _iter(self, cls: type[M], parent: str | None) -> Iterator[tuple[int, M]]:
        mine, args = _mine()
        sql = f"SELECT seq, body FROM objects WHERE kind = ? AND parent IS ?{mine} ORDER BY seq"
        with self._lock:
            rows = self._db.execute(sql, (KINDS[cls], parent, *args)).fetchall()
        for seq, body in rows:
            yield seq, cls.model_validate_json(body)

    def page(
        self,
        cls: type[M],
        parent: str | None,
        *,
        limit: int = 20,
        order: str = "desc",
        after: str | None = None,
        before: str | None = None,
        where: dict[str, str] | None = None,
    ) -> Page:
        """A page in OpenAI's cursor pagination: ``after``/``before`` are ids from earlier pages."""
        clauses = ["kind = ?", "parent IS ?"]
        args: list[object] = [KINDS[cls], parent]
        if (owner := current_owner.get()) is not None:
            clauses.append("owner = ?")
            args.append(owner)
        for field, value in (where or {}).items():
            clauses.append(f"json_extract(body, '$.{field}') = ?")
            args.append(value)
        descending = order == "desc"
        for cursor, later in ((after, True), (before, False)):
            if cursor is None:
                continue
            # "after" means further along in the chosen order
            op = "<" if later == descending else ">"
            clauses.append(f"seq {op} COALESCE((SELECT seq FROM objects WHERE id = ?), ?)")
            args += [cursor, -1 if op == ">" else 2**62]
        direction = "DESC" if descending else "ASC"
        if before is not None and after is None:
            # walk backwards from the cursor, then restore the requested order
            direction = "ASC" if descending else "DESC"
        sql = (
            f"SELECT body FROM objects WHERE {' AND '.join(clauses)} "
            f"ORDER BY seq {direction} LIMIT ?"
        )
        with self._lock:
            rows = self._db.execute(sql, [*args, limit + 1]).fetchall()
        has_more = len(rows) > limit
        items = [cls.model_validate_json(r[0]) for r in rows[:limit]]
        if before is not None and after is None:
            items.reverse()
        return Page(items, has_more)

    def with_status(self, cls: type[M], statuses: tuple[str, ...]) -> list[M]:
        """Every object of a kind whose ``status`` is one of these (what was going when the server stopped)."""
        marks = ",".join("?" * len(statuses))
        with self._lock:
            rows = self._db.execute(
                f"SELECT body FROM objects WHERE kind = ? AND json_extract(body, '$.status') IN ({marks}) ORDER BY seq",
                (KINDS[cls], *statuses)).fetchall()
        return [cls.model_validate_json(r[0]) for r in rows]

    def unfinished_runs(self) -> list[Run]:
        """Runs that were still going when the server stopped."""
        return self.with_status(Run, ("queued", "in_progress", "cancelling", "requires_action"))

    def integrity_check(self) -> str:
        with self._lock:
            return self._db.execute("PRAGMA integrity_check").fetchone()[0]

    # -- file bytes --------------------------------------------------------------------------

    def blob_path(self, file_id: str) -> Path:
        # ids are generated by us; refuse anything that could name another path
        if not file_id.replace("-", "").replace("_", "").isalnum():
            raise ValueError(f"not a file id: {file_id!r}")
        return self.files_dir / file_id

    def write_blob(self, file_id: str, data: bytes) -> None:
        path = self.blob_path(file_id)
        tmp = path.with_suffix(".part")
        with os.fdopen(os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o600), "wb") as f:
            f.write(data)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)

    def read_blob(self, file_id: str) -> bytes:
        return self.blob_path(file_id).read_bytes()

    def delete_blob(self, file_id: str) -> None:
        self.blob_path(file_id).unlink(missing_ok=True)


def _mine() -> tuple[str, tuple[str, ...]]:
    """The SQL that keeps a learner to their own objects; nothing for the teacher and the runtime itself."""
    owner = current_owner.get()
    return ("", ()) if owner is None else (" AND owner = ?", (owner,))
