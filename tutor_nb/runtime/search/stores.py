"""Vector stores: what ``/v1/vector_stores`` serves and the ``file_search`` tools search.

Stores and file batches are kept in the object table as the SDK's own types; the files of a
store are rows of their own (:mod:`.files`). Adding a file only records it as ``in_progress`` and
queues it: a small pool of worker threads reads, chunks and indexes files in the background, so no
request waits for indexing, and files still queued when the server stopped are taken up again
when it starts. A store's ``file_counts``, ``usage_bytes`` and ``status`` are worked out from its
files whenever it is read, so they are never stale.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, Mapping

from openai.types import FileObject, VectorStore
from openai.types.vector_stores import VectorStoreFile, VectorStoreFileBatch

from ..store import Page, Store
from ..wire import new_id, now
from .analysis import keywords
from .chunking import ChunkingError, ChunkingStrategy
from .embeddings import EmbeddingsError
from .files import StoreFiles
from .filters import FilterError, compile_filter
from .index import SearchIndex
from .pipeline import index_file
from .readers import UnreadableFile, read_text

log = logging.getLogger("tutor_nb.runtime.search")

DAY = 86_400
MAX_ATTRIBUTES = 16


class VectorStoreError(Exception):
    """A request about vector stores that cannot be done; ``status`` is the HTTP status to answer."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code = status, message, param, code


@dataclass(frozen=True)
class Found:
    """One search result: a chunk of a file, with the file's name and attributes."""

    vector_store_id: str
    file_id: str
    filename: str
    score: float
    attributes: dict[str, Any]
    text: str

    def to_wire(self) -> dict[str, Any]:
        """As ``vector_stores.search`` returns it."""
        return {"file_id": self.file_id, "filename": self.filename, "score": round(self.score, 6),
                "attributes": self.attributes, "content": [{"type": "text", "text": self.text}]}


def check_attributes(attributes: Any, param: str = "attributes") -> dict[str, Any]:
    """OpenAI's bounds on file attributes: 16 keys of 64 characters, strings of 512, numbers, booleans."""
    if attributes is None:
        return {}
    if not isinstance(attributes, Mapping):
        raise VectorStoreError(400, f"Invalid value for '{param}': expected an object.", param=param, code="invalid_value")
    if len(attributes) > MAX_ATTRIBUTES:
        raise VectorStoreError(400, f"Invalid value for '{param}': at most {MAX_ATTRIBUTES} keys.", param=param,
                               code="invalid_value")
    for key, value in attributes.items():
        if len(key) > 64:
            raise VectorStoreError(400, f"Invalid key in '{param}': {key[:70]!r} is longer than 64 characters.",
                                   param=param, code="invalid_value")
        if not isinstance(value, (str, int, float, bool)) or (isinstance(value, str) and len(value) > 512):
            raise VectorStoreError(400, f"Invalid value for '{param}.{key}': a string of at most 512 characters, "
                                   "a number or a boolean.", param=f"{param}.{key}", code="invalid_value")
    return dict(attributes)


def _check_expiry(p: Mapping[str, Any]) -> None:
    after = p.get("expires_after")
    days = after.get("days") if isinstance(after, Mapping) else None
    if isinstance(days, int) and not 1 <= days <= 365:
        raise VectorStoreError(400, f"Invalid value for 'expires_after.days': it must be between 1 and 365 (got "
                               f"{days}).", param="expires_after.days", code="invalid_value")


def _check_count(items: Any, most: int, param: str) -> None:
    if items is not None and len(items) > most:
        raise VectorStoreError(400, f"Invalid value for '{param}': at most {most} items (got {len(items)}).",
                               param=param, code="invalid_value")


def _strategy(param: Any, name: str = "chunking_strategy") -> ChunkingStrategy:
    try:
        return ChunkingStrategy.from_param(param)
    except ChunkingError as exc:
        raise VectorStoreError(400, f"Invalid value for '{name}': {exc}", param=name, code="invalid_value") from None


class VectorStores:
    """Every vector store of one runtime, their files and the workers that index them."""

    def __init__(self, store: Store, index: SearchIndex, *, workers: int = 2) -> None:
        self.store, self.index = store, index
        self.files = StoreFiles(store.path)
        self._pool = ThreadPoolExecutor(workers, thread_name_prefix="tutor_nb-index")
        self._lock = threading.Lock()

    def start(self) -> int:
        """Queue the files the last run left in progress; how many there were."""
        left = self.files.in_progress()
        for vsf in left:
            self._queue(vsf.vector_store_id, vsf.id)
        return len(left)

    def close(self) -> None:
        """Stop the workers: the file being indexed is finished, queued ones wait for the next start."""
        self._pool.shutdown(wait=True, cancel_futures=True)
        self.files.close()
        close = getattr(self.index, "close", None)
        if close is not None:
            close()

    # -- stores ----------------------------------------------------------------------------

    def create(self, p: Mapping[str, Any], *, store_id: str | None = None) -> VectorStore:
        _check_expiry(p)
        _check_count(p.get("file_ids"), 500, "file_ids")
        strategy = _strategy(p.get("chunking_strategy"))
        file_ids = list(p.get("file_ids") or [])
        for file_id in file_ids:
            self._file_object(file_id, "file_ids")
        created = now()
        vs = VectorStore.model_validate({
            "id": store_id or new_id("vector_store"), "object": "vector_store", "created_at": created,
            "name": p.get("name") or "", "metadata": p.get("metadata") or {}, "last_active_at": created,
            "usage_bytes": 0, "status": "completed", "expires_after": p.get("expires_after"),
            "file_counts": {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0, "total": 0},
        })
        vs.expires_at = _expiry(vs)
        self.store.add(vs)
        for file_id in file_ids:
            self._attach(vs.id, file_id, {}, strategy)
        return self._fresh(vs)

    def get(self, vs_id: str) -> VectorStore:
        return self._fresh(self._need(vs_id))

    def page(self, **paging: Any) -> Page:
        page = self.store.page(VectorStore, None, **paging)
        return Page([self._fresh(vs) for vs in page.data], page.has_more)  # type: ignore[arg-type]

    def update(self, vs_id: str, p: Mapping[str, Any]) -> VectorStore:
        _check_expiry(p)
        vs = self._need(vs_id)
        changes = {k: p[k] for k in ("name", "metadata", "expires_after") if k in p}
        if changes.get("name") is None:
            changes.pop("name", None)
        vs = VectorStore.model_validate({**vs.model_dump(), **changes})
        vs.expires_at = _expiry(vs)
        self.store.save(vs)
        return self._fresh(vs)

    def delete(self, vs_id: str) -> dict[str, Any]:
        self._need(vs_id)
        self.store.delete(vs_id)  # and its batches, which are stored under it
        self.files.drop(vs_id)
        self.index.drop(vs_id)
        return {"id": vs_id, "object": "vector_store.deleted", "deleted": True}

    def touch(self, vs: VectorStore) -> None:
        """A store was used: it stays alive for another ``expires_after`` from now."""
        vs.last_active_at = now()
        vs.expires_at = _expiry(vs)
        self.store.save(vs)

    def _need(self, vs_id: str) -> VectorStore:
        vs = self.store.get(VectorStore, vs_id)
        if vs is None:
            raise VectorStoreError(404, f"No vector store found with id '{vs_id}'. Check the id, or list vector "
                                   "stores to see what exists.", param="vector_store_id", code="not_found")
        return vs

    def _fresh(self, vs: VectorStore) -> VectorStore:
        counts = self.files.counts(store=vs.id)
        vs.file_counts = vs.file_counts.model_validate(counts)
        vs.usage_bytes = self.files.usage_bytes(vs.id)
        expired = vs.expires_at is not None and now() >= vs.expires_at
        vs.status = "expired" if expired else "in_progress" if counts["in_progress"] else "completed"
        return vs

    # -- files -----------------------------------------------------------------------------

    def attach(self, vs_id: str, p: Mapping[str, Any]) -> VectorStoreFile:
        """``POST /vector_stores/{id}/files``."""
        self._usable(vs_id)
        self._file_object(p.get("file_id", ""), "file_id")
        return self._attach(vs_id, p["file_id"], check_attributes(p.get("attributes")),
                            _strategy(p.get("chunking_strategy")))

    def _attach(self, vs_id: str, file_id: str, attributes: dict[str, Any], strategy: ChunkingStrategy,
                batch: str | None = None) -> VectorStoreFile:
        vsf = VectorStoreFile.model_validate({
            "id": file_id, "object": "vector_store.file", "created_at": now(), "vector_store_id": vs_id,
            "status": "in_progress", "usage_bytes": 0, "last_error": None, "attributes": attributes,
            "chunking_strategy": strategy.to_wire(),
        })
        self.files.put(vsf, batch)
        self._queue(vs_id, file_id)
        return vsf

    def file(self, vs_id: str, file_id: str) -> VectorStoreFile:
        self._need(vs_id)
        vsf = self.files.get(vs_id, file_id)
        if vsf is None:
            raise VectorStoreError(404, f"No file '{file_id}' in vector store '{vs_id}'. List the store's files "
                                   "to see what it holds.", param="file_id", code="not_found")
        return vsf

    def file_page(self, vs_id: str, *, status: str | None = None, batch: str | None = None, **paging: Any) -> Page:
        self._need(vs_id)
        if status is not None and status not in ("in_progress", "completed", "failed", "cancelled"):
            raise VectorStoreError(400, f"Invalid value for 'filter': {status!r}; use in_progress, completed, "
                                   "failed or cancelled.", param="filter", code="invalid_value")
        return self.files.page(vs_id, status=status, batch=batch, **paging)

    def set_attributes(self, vs_id: str, file_id: str, attributes: Any) -> VectorStoreFile:
        vsf = self.file(vs_id, file_id)
        vsf.attributes = check_attributes(attributes)
        self.files.save(vsf)
        return vsf

    def detach(self, vs_id: str, file_id: str) -> dict[str, Any]:
        self.file(vs_id, file_id)
        self.files.delete(vs_id, file_id)
        self.index.remove(vs_id, file_id)  # a worker still indexing it removes what it added (see _index)
        return {"id": file_id, "object": "vector_store.file.deleted", "deleted": True}

    def content(self, vs_id: str, file_id: str) -> str:
        """The text file search read from the file (``GET .../files/{id}/content``)."""
        self.file(vs_id, file_id)
        meta = self._file_object(file_id, "file_id")
        try:
            return read_text(meta.filename, self.store.read_blob(file_id))
        except UnreadableFile as exc:
            raise VectorStoreError(400, exc.message, param="file_id", code=exc.code) from None

    def _file_object(self, file_id: str, param: str) -> FileObject:
        meta = self.store.get(FileObject, file_id)
        if meta is None:
            raise VectorStoreError(404, f"No file found with id '{file_id}'. Upload it first with "
                                   "client.files.create(file=..., purpose='assistants').", param=param,
                                   code="not_found")
        return meta

    # -- batches ---------------------------------------------------------------------------

    def create_batch(self, vs_id: str, p: Mapping[str, Any]) -> VectorStoreFileBatch:
        self._usable(vs_id)
        _check_count(p.get("file_ids"), 2000, "file_ids")
        _check_count(p.get("files"), 2000, "files")
        if bool(p.get("file_ids")) == bool(p.get("files")):
            raise VectorStoreError(400, "Give either 'file_ids' or 'files' (a list of {file_id, attributes, "
                                   "chunking_strategy}), not both and not neither.", param="file_ids",
                                   code="invalid_value")
        if p.get("files"):
            jobs = [(f.get("file_id", ""), check_attributes(f.get("attributes"), f"files[{i}].attributes"),
                     _strategy(f.get("chunking_strategy"), f"files[{i}].chunking_strategy"))
                    for i, f in enumerate(p["files"])]
        else:
            shared = (check_attributes(p.get("attributes")), _strategy(p.get("chunking_strategy")))
            jobs = [(file_id, *shared) for file_id in p["file_ids"]]
        for file_id, *_ in jobs:
            self._file_object(file_id, "file_ids")
        batch = VectorStoreFileBatch.model_validate({
            "id": new_id("file_batch"), "object": "vector_store.files_batch", "created_at": now(),
            "vector_store_id": vs_id, "status": "in_progress",
            "file_counts": {"in_progress": 0, "completed": 0, "failed": 0, "cancelled": 0, "total": 0},
        })
        self.store.add(batch, parent=vs_id)
        for file_id, attributes, strategy in jobs:
            self._attach(vs_id, file_id, attributes, strategy, batch=batch.id)
        return self._fresh_batch(batch)

    def batch(self, vs_id: str, batch_id: str) -> VectorStoreFileBatch:
        self._need(vs_id)
        batch = self.store.get(VectorStoreFileBatch, batch_id)
        if batch is None or batch.vector_store_id != vs_id:
            raise VectorStoreError(404, f"No file batch '{batch_id}' in vector store '{vs_id}'.", param="batch_id",
                                   code="not_found")
        return self._fresh_batch(batch)

    def cancel_batch(self, vs_id: str, batch_id: str) -> VectorStoreFileBatch:
        batch = self.batch(vs_id, batch_id)
        if batch.status != "in_progress":
            raise VectorStoreError(400, f"File batch {batch_id} is already {batch.status}; only a batch in "
                                   "progress can be cancelled.", param="batch_id", code="invalid_value")
        for vsf in self.files.page(vs_id, batch=batch_id, status="in_progress", limit=10**6).data:
            if self.files.finish(vs_id, vsf.id, "cancelled"):
                self.index.remove(vs_id, vsf.id)
        batch.status = "cancelled"
        self.store.save(batch)
        return self._fresh_batch(batch)

    def _fresh_batch(self, batch: VectorStoreFileBatch) -> VectorStoreFileBatch:
        counts = self.files.counts(batch=batch.id)
        batch.file_counts = batch.file_counts.model_validate(counts)
        if batch.status != "cancelled":
            batch.status = ("in_progress" if counts["in_progress"] else
                            "failed" if counts["total"] and counts["failed"] == counts["total"] else "completed")
        return batch

    # -- indexing --------------------------------------------------------------------------

    def _queue(self, vs_id: str, file_id: str) -> None:
        self._pool.submit(self._index, vs_id, file_id)

    def _index(self, vs_id: str, file_id: str) -> None:
        """One worker's job: index a file, and record how it went (never raises)."""
        vsf = self.files.get(vs_id, file_id)
        if vsf is None or vsf.status != "in_progress":
            return  # removed or cancelled while it waited
        try:
            meta = self.store.get(FileObject, file_id)
            if meta is None:
                raise UnreadableFile("invalid_file", f"File {file_id} was deleted before it could be read.")
            strategy = ChunkingStrategy.from_param(vsf.chunking_strategy.model_dump() if vsf.chunking_strategy else None)
            indexed = index_file(self.index, vs_id, file_id, meta.filename, self.store.read_blob(file_id), strategy)
        except UnreadableFile as exc:
            self.files.finish(vs_id, file_id, "failed", last_error={"code": exc.code, "message": exc.message})
        except EmbeddingsError as exc:
            self.files.finish(vs_id, file_id, "failed", last_error={"code": "server_error", "message": str(exc)})
        except Exception as exc:  # a bug or a full disk: the file says so, the worker goes on
            log.exception("indexing %s for %s failed", file_id, vs_id)
            self.files.finish(vs_id, file_id, "failed", last_error={
                "code": "server_error", "message": f"Indexing failed ({type(exc).__name__}: {exc})."})
        else:
            if not self.files.finish(vs_id, file_id, "completed", usage_bytes=indexed.usage_bytes):
                self.index.remove(vs_id, file_id)  # removed or cancelled while it was indexed

    # -- searching -------------------------------------------------------------------------

    def search(
        self, vs_ids: Sequence[str], queries: Iterable[str], *, max_num_results: int = 10,
        filters: Any = None, score_threshold: float = 0.0,
    ) -> list[Found]:
        """The best chunks for any of the queries across the stores, best first."""
        predicate = None
        if filters is not None:
            try:
                predicate = compile_filter(filters)
            except FilterError as exc:
                raise VectorStoreError(400, str(exc), param=exc.param, code="invalid_value") from None
        best: dict[tuple[str, str, int], tuple[float, str]] = {}
        attributes: dict[tuple[str, str], dict[str, Any]] = {}
        queries = [q for q in queries if q.strip()]
        for vs_id in vs_ids:
            self.touch(self._usable(vs_id))
            completed = self.files.all(vs_id, "completed")
            attributes.update({(vs_id, f.id): dict(f.attributes or {}) for f in completed})
            allowed = None if predicate is None else {f.id for f in completed if predicate(f.attributes or {})}
            for query in queries:
                for hit in self.index.search(vs_id, query, limit=max_num_results, file_ids=allowed):
                    key = (vs_id, hit.file_id, hit.chunk)
                    if hit.score > best.get(key, (-1.0, ""))[0]:
                        best[key] = (hit.score, hit.text)
        ranked = sorted(best.items(), key=lambda item: -item[1][0])
        names: dict[str, str] = {}
        found = []
        for (vs_id, file_id, _), (score, text) in ranked:
            if score < score_threshold or (vs_id, file_id) not in attributes:
                continue
            if file_id not in names:
                meta = self.store.get(FileObject, file_id)
                names[file_id] = meta.filename if meta else file_id
            found.append(Found(vs_id, file_id, names[file_id], score, attributes[(vs_id, file_id)], text))
            if len(found) == max_num_results:
                break
        return found

    def search_page(self, vs_id: str, p: Mapping[str, Any]) -> dict[str, Any]:
        """``POST /vector_stores/{id}/search``: OpenAI's search results page."""
        query = p.get("query")
        queries = [query] if isinstance(query, str) else list(query or [])
        if not queries or not all(isinstance(q, str) and q.strip() for q in queries):
            raise VectorStoreError(400, "Missing 'query': give a non-empty string or list of strings.", param="query",
                                   code="missing_required_parameter")
        if p.get("rewrite_query"):
            queries = [keywords(q) for q in queries]
        limit = p.get("max_num_results", 10)
        if not isinstance(limit, int) or isinstance(limit, bool) or not 1 <= limit <= 50:
            raise VectorStoreError(400, f"Invalid value for 'max_num_results': it must be between 1 and 50 (got "
                                   f"{limit!r}).", param="max_num_results", code="invalid_value")
        ranking = p.get("ranking_options") or {}
        threshold = ranking.get("score_threshold", 0.0)
        if not isinstance(threshold, (int, float)) or isinstance(threshold, bool) or not 0 <= threshold <= 1:
            raise VectorStoreError(400, "Invalid value for 'ranking_options.score_threshold': it must be between "
                                   "0 and 1.", param="ranking_options.score_threshold", code="invalid_value")
        found = self.search([vs_id], queries, max_num_results=limit, filters=p.get("filters"),
                            score_threshold=threshold)
        return {"object": "vector_store.search_results.page", "search_query": queries,
                "data": [f.to_wire() for f in found], "has_more": False, "next_page": None}

    def _usable(self, vs_id: str) -> VectorStore:
        vs = self._fresh(self._need(vs_id))
        if vs.status == "expired":
            raise VectorStoreError(400, f"Vector store {vs_id} expired (its expires_after ran out). Create a new "
                                   "one, or set a longer expires_after before it runs out.", param="vector_store_id",
                                   code="vector_store_expired")
        return vs


def _expiry(vs: VectorStore) -> int | None:
    after = vs.expires_after
    if after is None:
        return None
    return (vs.last_active_at or vs.created_at) + after.days * DAY
