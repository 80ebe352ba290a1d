"""One run's (or one response's) file searches: which stores, which options, and the sources shown.

Both APIs' recorders hold one :class:`FileSearchSession`. It runs the model's ``file_search`` calls
off the event loop, numbers every passage it hands the model (the numbers the citation markers
use), and turns the markers of the final answer into ``file_citation`` annotations.
"""

from __future__ import annotations

import asyncio
from typing import Any, Sequence

from .stores import VectorStoreError, VectorStores
from .tool import DEFAULT_MAX_RESULTS, Source, citations, queries_of, without_markers


class FileSearchFailed(Exception):
    """A search the run cannot go on without (a store that expired or was deleted); says which."""


class FileSearchSession:
    def __init__(
        self, stores: VectorStores, vector_store_ids: Sequence[str], *, max_num_results: int | None = None,
        score_threshold: float | None = None, ranker: str | None = None, filters: Any = None,
        shown: Sequence[Source] = (),
    ) -> None:
        self.stores = stores
        self.vector_store_ids = list(dict.fromkeys(vector_store_ids))
        self.max_num_results = max_num_results or DEFAULT_MAX_RESULTS
        self.score_threshold = score_threshold or 0.0
        self.ranker = ranker or "auto"
        self.filters = filters
        self.sources: dict[int, Source] = {s.number: s for s in shown}  # passages the model saw before

    @property
    def ranking_options(self) -> dict[str, Any]:
        return {"ranker": self.ranker, "score_threshold": self.score_threshold}

    async def search(self, arguments: str, fallback: str = "") -> tuple[list[str], list[Source]]:
        """The queries of a model's call and the passages found for them, numbered from where the last call ended."""
        queries = queries_of(arguments, fallback)
        try:
            found = await asyncio.to_thread(
                self.stores.search, self.vector_store_ids, queries, max_num_results=self.max_num_results,
                filters=self.filters, score_threshold=self.score_threshold,
            )
        except VectorStoreError as exc:
            raise FileSearchFailed(f"file_search could not search its vector stores: {exc.message}") from None
        start = len(self.sources)
        sources = [Source(start + i, f.file_id, f.filename, f.score, f.text, f.attributes) for i, f in enumerate(found)]
        self.sources.update((s.number, s) for s in sources)
        return queries, sources

    def citations(self, text: str) -> list[dict[str, Any]]:
        """Assistants' form: markers kept, a ``file_citation`` annotation over each."""
        return citations(text, self.sources)

    def without_markers(self, text: str) -> tuple[str, list[dict[str, Any]]]:
        """Responses' form: markers taken out, a ``file_citation`` at the index of each."""
        return without_markers(text, self.sources)
