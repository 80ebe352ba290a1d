"""Several rankings made one by reciprocal-rank fusion (Cormack, Clarke and Buettcher, 2009).

Each index ranks on its own; a chunk's fused score is the sum over rankings of ``1 / (k + rank)``.
RRF needs no calibration between BM25's and cosine's scales, which is why hybrid search engines
use it. Scores are divided by the most a chunk could get (first in every ranking), so a chunk
that every index puts first scores 1, and one that only one of two indexes finds scores at most 0.5.
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Sequence

from .embeddings import EmbeddingsError
from .index import Hit, SearchIndex

log = logging.getLogger("tutor_nb.runtime.search")

K = 60  # the constant of the RRF paper, which hybrid search engines keep
DEPTH = 50  # how far down each ranking is read


class FusedIndex:
    """A :class:`~.index.SearchIndex` over several, the first being the one that cannot fail (BM25)."""

    def __init__(self, *indexes: SearchIndex, k: int = K) -> None:
        if not indexes:
            raise ValueError("FusedIndex needs at least one index")
        self.indexes, self.k = indexes, k

    def add(self, store_id: str, file_id: str, chunks: Sequence[str]) -> None:
        try:
            for index in self.indexes:
                index.add(store_id, file_id, chunks)
        except BaseException:
            self.remove(store_id, file_id)  # no file half-indexed
            raise

    def remove(self, store_id: str, file_id: str) -> None:
        for index in self.indexes:
            index.remove(store_id, file_id)

    def drop(self, store_id: str) -> None:
        for index in self.indexes:
            index.drop(store_id)

    def close(self) -> None:
        for index in self.indexes:
            close = getattr(index, "close", None)
            if close is not None:
                close()

    def search(
        self, store_id: str, query: str, *, limit: int, file_ids: Collection[str] | None = None
    ) -> list[Hit]:
        rankings: list[list[Hit]] = []
        for index in self.indexes:
            try:
                rankings.append(index.search(store_id, query, limit=max(limit, DEPTH), file_ids=file_ids))
            except EmbeddingsError as exc:
                # BM25 still ranks; say so in the log rather than failing the learner's search
                log.warning("file search without embeddings for this query: %s", exc)
        return fuse(rankings, limit=limit, k=self.k, count=len(self.indexes))


def fuse(rankings: list[list[Hit]], *, limit: int, k: int = K, count: int | None = None) -> list[Hit]:
    """The top ``limit`` chunks of several rankings by reciprocal-rank fusion, scores in [0, 1]."""
    scale = (count or len(rankings) or 1) / (k + 1)
    scores: dict[tuple[str, int], float] = {}
    first: dict[tuple[str, int], Hit] = {}
    for ranking in rankings:
        for rank, hit in enumerate(ranking, 1):
            key = (hit.file_id, hit.chunk)
            scores[key] = scores.get(key, 0.0) + 1 / (k + rank)
            first.setdefault(key, hit)
    best = sorted(scores, key=lambda key: -scores[key])[:limit]
    return [Hit(key[0], key[1], first[key].text, min(1.0, scores[key] / scale)) for key in best]
