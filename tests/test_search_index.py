"""Chunking, BM25 in a real SQLite file, attribute filters, embeddings and their fusion."""

from __future__ import annotations

import logging
import sqlite3
import threading
from pathlib import Path

import pytest

from tutor_nb.runtime.search import Bm25Index, ChunkingError, ChunkingStrategy, chunk_text, compile_filter
from tutor_nb.runtime.search import count_tokens, open_index
from tutor_nb.runtime.search.analysis import query_terms
from tutor_nb.runtime.search.embeddings import EmbeddingsClient, EmbeddingsError
from tutor_nb.runtime.search.filters import FilterError
from tutor_nb.runtime.search.fusion import FusedIndex
from tutor_nb.runtime.search.vectors import EmbeddingIndex
from tests.fakeembeddings import FakeEmbeddings

# -- chunking -------------------------------------------------------------------------------

LONG = " ".join(f"Sentence {i} says 피보나치수열의 {i}번째 항을 계산한다." for i in range(900))


def test_auto_chunks_are_800_tokens_overlapping_by_400_and_exact_text() -> None:
    chunks = chunk_text(LONG)
    assert len(chunks) > 3
    position = 0
    for chunk in chunks:
        assert abs(count_tokens(chunk) - 800) <= 3 or chunk is chunks[-1]
        found = LONG.find(chunk, position)  # each chunk is a piece of the text, in order
        assert found >= 0
        position = found + 1
    # consecutive chunks share about half their text
    assert chunks[1][:200] in chunks[0]
    assert LONG.endswith(chunks[-1])


def test_static_chunking_honours_its_numbers() -> None:
    strategy = ChunkingStrategy.from_param({"type": "static",
                                            "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 0}})
    chunks = chunk_text(LONG, strategy)
    assert "".join(chunks) == LONG  # no overlap: the chunks tile the text
    assert all(count_tokens(c) <= 101 for c in chunks)


@pytest.mark.parametrize("size, overlap, word", [(99, 0, "max_chunk_size_tokens"), (4097, 0, "max_chunk_size_tokens"),
                                                 (800, 401, "chunk_overlap_tokens"), (800, -1, "chunk_overlap_tokens")])
def test_static_chunking_outside_openais_bounds_is_refused(size: int, overlap: int, word: str) -> None:
    with pytest.raises(ChunkingError, match=word):
        ChunkingStrategy(size, overlap, "static")


def test_no_text_no_chunks() -> None:
    assert chunk_text("") == []


# -- BM25 ------------------------------------------------------------------------------------

NOTES = {
    "file-ko": "피보나치수열의 각 항은 앞의 두 항의 합이다. 황금비와 관계가 있다.",
    "file-gcd": "The Euclidean algorithm computes the greatest common divisor by repeated division.",
    "file-sort": "Merge sort splits the list, sorts each half and merges the sorted halves.",
    "file-ja": "フィボナッチ数列は前の二つの項の和です。",
    "file-zh": "斐波那契数列的每一项都是前两项之和。",
}


@pytest.fixture
def index(tmp_path: Path) -> Bm25Index:
    idx = Bm25Index(tmp_path / "runtime.sqlite3")
    for file_id, text in NOTES.items():
        idx.add("vs_a", file_id, [text])
    yield idx
    idx.close()


def top(index: Bm25Index, query: str, **kw: object) -> list[str]:
    return [hit.file_id for hit in index.search("vs_a", query, limit=10, **kw)]


@pytest.mark.parametrize("query, expected", [
    ("피보나치 수열", "file-ko"),   # inside the word 피보나치수열의
    ("수열", "file-ko"),            # a two-syllable word
    ("황금비", "file-ko"),
    ("합", "file-ko"),              # one syllable
    ("フィボナッチ", "file-ja"),
    ("数列", "file-zh"),
    ("greatest common divisor", "file-gcd"),
    ("merging sorted lists", "file-sort"),  # stems: merging/merges, sorted/sorts, lists/list
])
def test_queries_find_their_document(index: Bm25Index, query: str, expected: str) -> None:
    assert top(index, query)[0] == expected


def test_scores_are_between_0_and_1_best_first(index: Bm25Index) -> None:
    hits = index.search("vs_a", "sorted halves divisor", limit=10)
    scores = [h.score for h in hits]
    assert len(hits) == 2 and scores == sorted(scores, reverse=True)
    assert all(0 < s <= 1 for s in scores)


def test_a_store_of_two_small_files_still_scores_its_match_well(tmp_path: Path) -> None:
    # FTS5's own idf is 0 for a word in half the chunks: every word, in a store this small
    idx = Bm25Index(tmp_path / "db.sqlite3")
    idx.add("vs_t", "fib", ["피보나치수열의 각 항은 앞의 두 항의 합이다."])
    idx.add("vs_t", "gcd", ["The Euclidean algorithm finds the greatest common divisor."])
    (hit,) = idx.search("vs_t", "피보나치 수열", limit=5)
    assert hit.file_id == "fib" and hit.score > 0.2
    (hit,) = idx.search("vs_t", "Euclidean algorithm", limit=5)
    assert hit.file_id == "gcd" and hit.score > 0.2


def test_a_denser_match_scores_higher(tmp_path: Path) -> None:
    idx = Bm25Index(tmp_path / "db.sqlite3")
    idx.add("vs_b", "dense", ["recursion recursion recursion base case"])
    idx.add("vs_b", "passing", ["we mention recursion once in a long sentence about many other topics here"])
    for i in range(8):
        idx.add("vs_b", f"other{i}", [f"unrelated text number {i}"])
    dense, passing = idx.search("vs_b", "recursion", limit=5)
    assert (dense.file_id, passing.file_id) == ("dense", "passing") and dense.score > passing.score


def test_query_syntax_is_never_fts5_syntax(index: Bm25Index) -> None:
    for query in ['"unbalanced', "NEAR(a b)", "AND OR NOT", "col:value", "x* ^y", "'; DROP TABLE x; --", "()"]:
        index.search("vs_a", query, limit=5)  # no sqlite3.OperationalError
    assert top(index, "Euclidean AND") == ["file-gcd"]


def test_stopwords_alone_still_search(index: Bm25Index) -> None:
    assert query_terms("the") == ['"the"'] and top(index, "what is the") != []


def test_file_ids_restrict_the_search(index: Bm25Index) -> None:
    assert top(index, "피보나치 sort", file_ids={"file-sort"}) == ["file-sort"]
    assert top(index, "sort", file_ids=set()) == []


def test_a_removed_file_is_no_longer_found(index: Bm25Index) -> None:
    index.remove("vs_a", "file-gcd")
    assert top(index, "Euclidean divisor") == []
    index.add("vs_a", "file-gcd", ["Now about the Euclidean algorithm again."])
    assert top(index, "Euclidean") == ["file-gcd"]


def test_stores_are_separate_and_dropping_one_keeps_the_other(index: Bm25Index) -> None:
    index.add("vs_other", "file-x", ["Euclidean geometry"])
    assert [h.file_id for h in index.search("vs_other", "Euclidean", limit=5)] == ["file-x"]
    index.drop("vs_other")
    assert index.search("vs_other", "Euclidean", limit=5) == []
    assert top(index, "Euclidean") == ["file-gcd"]


def test_the_index_is_kept_in_the_sqlite_file(tmp_path: Path, index: Bm25Index) -> None:
    index.close()
    again = Bm25Index(tmp_path / "runtime.sqlite3")
    assert [h.file_id for h in again.search("vs_a", "merge sort", limit=3)] == ["file-sort"]
    tables = {r[0] for r in sqlite3.connect(tmp_path / "runtime.sqlite3").execute("SELECT name FROM sqlite_master")}
    assert "search_fts_vs_a" in tables


def test_store_ids_that_could_name_other_tables_are_refused(index: Bm25Index) -> None:
    with pytest.raises(ValueError):
        index.search("vs_a; DROP TABLE objects", "x", limit=1)


def test_searches_run_while_a_large_file_is_being_indexed(tmp_path: Path) -> None:
    idx = Bm25Index(tmp_path / "db.sqlite3")
    idx.add("vs_c", "small", ["the quick brown fox"])
    big = [f"chunk {i} about lorem ipsum dolor" for i in range(5000)]
    writer = threading.Thread(target=idx.add, args=("vs_c", "big", big))
    writer.start()
    seen = 0
    while writer.is_alive():
        assert idx.search("vs_c", "fox", limit=1)[0].file_id == "small"
        seen += 1
    writer.join()
    assert seen > 0 and len(idx.search("vs_c", "lorem", limit=50)) == 50


class _Paused(list):
    """Chunks whose second batch is handed over only when the test says so."""

    def __init__(self, items: list[str]) -> None:
        super().__init__(items)
        self.reached, self.go = threading.Event(), threading.Event()

    def __getitem__(self, key):  # type: ignore[no-untyped-def]
        if isinstance(key, slice) and key.start:
            self.reached.set()
            assert self.go.wait(10)
        return super().__getitem__(key)


def test_a_file_half_indexed_is_not_found_until_it_is_all_there(tmp_path: Path) -> None:
    idx = Bm25Index(tmp_path / "db.sqlite3")
    idx.add("vs_c", "small", ["lorem once"])
    chunks = _Paused([f"lorem ipsum {i}" for i in range(600)])
    writer = threading.Thread(target=idx.add, args=("vs_c", "big", chunks))
    writer.start()
    assert chunks.reached.wait(10)  # the first 256 chunks are committed
    assert {h.file_id for h in idx.search("vs_c", "lorem ipsum", limit=50)} == {"small"}
    chunks.go.set()
    writer.join()
    assert idx.search("vs_c", "ipsum", limit=1)[0].file_id == "big"


# -- filters ---------------------------------------------------------------------------------

ATTRS = {"year": 2024, "course": "algorithms", "draft": False, "week": 3}


@pytest.mark.parametrize("spec, matches", [
    ({"type": "eq", "key": "course", "value": "algorithms"}, True),
    ({"type": "eq", "key": "year", "value": 2024.0}, True),
    ({"type": "eq", "key": "draft", "value": 0}, False),  # a boolean is not a number
    ({"type": "ne", "key": "course", "value": "math"}, True),
    ({"type": "ne", "key": "missing", "value": "x"}, True),
    ({"type": "eq", "key": "missing", "value": "x"}, False),
    ({"type": "gt", "key": "year", "value": 2023}, True),
    ({"type": "gte", "key": "week", "value": 3}, True),
    ({"type": "lt", "key": "week", "value": 3}, False),
    ({"type": "lte", "key": "course", "value": "b"}, True),  # strings order by code point
    ({"type": "gt", "key": "course", "value": 1}, False),    # kinds do not mix
    ({"type": "in", "key": "week", "value": [1, 2, 3]}, True),
    ({"type": "nin", "key": "course", "value": ["math", "physics"]}, True),
    ({"type": "and", "filters": [{"type": "eq", "key": "year", "value": 2024},
                                 {"type": "eq", "key": "draft", "value": True}]}, False),
    ({"type": "or", "filters": [{"type": "eq", "key": "year", "value": 1999},
                                {"type": "and", "filters": [{"type": "eq", "key": "draft", "value": False},
                                                            {"type": "lt", "key": "week", "value": 4}]}]}, True),
])
def test_filters(spec: dict, matches: bool) -> None:
    assert compile_filter(spec)(ATTRS) is matches


@pytest.mark.parametrize("spec, param", [
    ({"type": "like", "key": "a", "value": "b"}, "filters.type"),
    ({"type": "eq", "value": "b"}, "filters.key"),
    ({"type": "in", "key": "a", "value": "b"}, "filters.value"),
    ({"type": "gt", "key": "a", "value": True}, "filters.value"),
    ({"type": "eq", "key": "a", "value": {"x": 1}}, "filters.value"),
    ({"type": "and", "filters": []}, "filters.filters"),
    ({"type": "or", "filters": [{"type": "eq", "key": "a"}]}, "filters.filters[0].value"),
    ({"type": "eq", "key": "a", "value": 1, "extra": 2}, "filters.extra"),
])
def test_malformed_filters_name_the_part(spec: dict, param: str) -> None:
    with pytest.raises(FilterError) as info:
        compile_filter(spec)
    assert info.value.param == param


# -- embeddings and fusion -------------------------------------------------------------------

CARS = {
    "file-auto": "Automobile maintenance: change the oil every year.",
    "file-bike": "Bicycle maintenance: oil the chain every month.",
    "file-refund": "Refund policy: money back within 30 days.",
}


@pytest.fixture
def fake() -> FakeEmbeddings:
    with FakeEmbeddings() as server:
        yield server


def test_embeddings_find_what_words_miss(tmp_path: Path, fake: FakeEmbeddings) -> None:
    fused = open_index(tmp_path / "db.sqlite3", embeddings_base_url=fake.base_url, embeddings_model="fake-embed")
    bm25 = Bm25Index(tmp_path / "db.sqlite3")
    for file_id, text in CARS.items():
        fused.add("vs_e", file_id, [text])
    assert bm25.search("vs_e", "car", limit=3) == []  # no file says "car"
    hits = fused.search("vs_e", "car", limit=3)
    assert hits[0].file_id == "file-auto" and 0 < hits[0].score <= 1
    assert fake.requests[0]["model"] == "fake-embed" and fake.requests[0]["encoding_format"] == "float"


def test_fusion_ranks_a_chunk_both_indexes_like_first(tmp_path: Path, fake: FakeEmbeddings) -> None:
    fused = open_index(tmp_path / "db.sqlite3", embeddings_base_url=fake.base_url, embeddings_model="fake-embed")
    for file_id, text in CARS.items():
        fused.add("vs_e", file_id, [text])
    hits = fused.search("vs_e", "automobile oil", limit=3)
    assert hits[0].file_id == "file-auto" and hits[0].score == pytest.approx(1.0)
    assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)


def test_embeddings_down_at_search_time_falls_back_to_bm25_and_says_so(
        tmp_path: Path, fake: FakeEmbeddings, caplog: pytest.LogCaptureFixture) -> None:
    fused = open_index(tmp_path / "db.sqlite3", embeddings_base_url=fake.base_url, embeddings_model="fake-embed")
    fused.add("vs_e", "file-refund", [CARS["file-refund"]])
    fake.status = 500
    with caplog.at_level(logging.WARNING, logger="tutor_nb.runtime.search"):
        hits = fused.search("vs_e", "refund", limit=3)
    assert [h.file_id for h in hits] == ["file-refund"]
    assert "without embeddings" in caplog.text and "500" in caplog.text


def test_embeddings_refused_at_indexing_fails_the_file_with_the_reason(tmp_path: Path, fake: FakeEmbeddings) -> None:
    fake.status = 401
    fused = FusedIndex(Bm25Index(tmp_path / "db.sqlite3"),
                       EmbeddingIndex(tmp_path / "db.sqlite3", EmbeddingsClient(fake.base_url, "m")))
    with pytest.raises(EmbeddingsError, match="answered 401.*TUTOR_NB_EMBEDDINGS_API_KEY"):
        fused.add("vs_e", "file-auto", [CARS["file-auto"]])
    assert Bm25Index(tmp_path / "db.sqlite3").search("vs_e", "automobile", limit=3) == []  # nothing half-added


def test_embeddings_endpoint_unreachable_says_where(tmp_path: Path) -> None:
    client = EmbeddingsClient("http://127.0.0.1:9/v1", "m", timeout=2)
    with pytest.raises(EmbeddingsError, match="127.0.0.1:9.*--embeddings-base-url"):
        client.embed(["x"])
