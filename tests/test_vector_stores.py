"""Every /v1/vector_stores endpoint through the official SDK over real HTTP, on a real runtime."""

from __future__ import annotations

import io
import sqlite3
import time
from pathlib import Path

import openai
import pytest

from tests.documents import make_docx, make_pdf
from tests.fakeembeddings import FakeEmbeddings

NOTES_MD = """# Week 1: recursion

A recursive function calls itself on a smaller input until it reaches a base case.
Without a base case the recursion never ends and Python raises RecursionError.
"""
KOREAN = "피보나치수열의 각 항은 앞의 두 항의 합이다. 첫 두 항은 0과 1이다. 황금비에 수렴한다."
PDF_PAGES = ["Week 2: the Euclidean algorithm.", "It finds the greatest common divisor by repeated remainders."]
DOCX_PARAGRAPHS = ["Week 3: binary search.", "Halve the sorted range at every step: logarithmic time."]


@pytest.fixture(scope="module")
def runtime(tmp_path_factory: pytest.TempPathFactory):
    from tutor_nb.runtime import start

    rt = start(backend="replay", data_dir=tmp_path_factory.mktemp("vs"), pool_size=0)
    yield rt
    rt.stop()


@pytest.fixture(scope="module")
def client(runtime) -> openai.OpenAI:
    return runtime.client(max_retries=0)


def upload(client: openai.OpenAI, name: str, data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return client.files.create(file=(name, io.BytesIO(raw)), purpose="assistants").id


def settled(client: openai.OpenAI, vs_id: str, timeout: float = 60):
    deadline = time.monotonic() + timeout
    while True:
        vs = client.vector_stores.retrieve(vs_id)
        if vs.status != "in_progress" or time.monotonic() > deadline:
            return vs
        time.sleep(0.05)


@pytest.fixture(scope="module")
def course(client: openai.OpenAI) -> dict[str, str]:
    """A store of course notes: Markdown, PDF, DOCX, a Korean text, and an image that cannot be read."""
    ids = {
        "md": upload(client, "week1.md", NOTES_MD),
        "pdf": upload(client, "week2.pdf", make_pdf(PDF_PAGES)),
        "docx": upload(client, "week3.docx", make_docx(DOCX_PARAGRAPHS)),
        "ko": upload(client, "피보나치.txt", KOREAN),
        "png": upload(client, "chart.png", b"\x89PNG\r\n\x1a\n" + bytes(64)),
    }
    vs = client.vector_stores.create(name="course notes", file_ids=list(ids.values()), metadata={"course": "cs101"})
    assert vs.status == "in_progress" and vs.file_counts.total == 5  # answered before indexing ended
    ids["vs"] = vs.id
    return ids


def search(client: openai.OpenAI, vs_id: str, query: str | list[str], **kw) -> list:
    return list(client.vector_stores.search(vs_id, query=query, **kw))


def test_a_store_settles_with_counts_usage_and_the_failed_file_says_why(client, course) -> None:
    vs = settled(client, course["vs"])
    assert vs.status == "completed" and vs.name == "course notes" and vs.metadata == {"course": "cs101"}
    counts = vs.file_counts
    assert (counts.completed, counts.failed, counts.in_progress, counts.total) == (4, 1, 0, 5)
    assert vs.usage_bytes > len(NOTES_MD)
    failed = client.vector_stores.files.retrieve(course["png"], vector_store_id=course["vs"])
    assert failed.status == "failed" and failed.last_error.code == "unsupported_file"
    assert "PNG image" in failed.last_error.message
    done = client.vector_stores.files.retrieve(course["md"], vector_store_id=course["vs"])
    assert done.status == "completed" and done.last_error is None and done.usage_bytes > 0
    assert done.chunking_strategy.static.max_chunk_size_tokens == 800
    assert done.chunking_strategy.static.chunk_overlap_tokens == 400


@pytest.mark.parametrize("query, kind", [
    ("what happens without a base case?", "md"),
    ("greatest common divisor", "pdf"),
    ("halving a sorted range", "docx"),
    ("피보나치 수열", "ko"),
    ("황금비", "ko"),
])
def test_queries_that_name_no_file_find_it(client, course, query: str, kind: str) -> None:
    settled(client, course["vs"])
    results = search(client, course["vs"], query)
    assert results and results[0].file_id == course[kind]
    assert results[0].filename.split(".")[-1] in ("md", "pdf", "docx", "txt")
    assert results[0].content[0].type == "text" and results[0].content[0].text
    scores = [r.score for r in results]
    assert scores == sorted(scores, reverse=True) and all(0 <= s <= 1 for s in scores)


def test_search_honours_max_results_threshold_and_reports_its_query(client, course) -> None:
    settled(client, course["vs"])
    page = client.vector_stores.search(course["vs"], query=["recursion", "divisor", "binary"], max_num_results=2)
    assert len(page.data) == 2
    assert page.search_query == ["recursion", "divisor", "binary"]
    assert search(client, course["vs"], "recursion", ranking_options={"score_threshold": 1.0}) == []
    rewritten = client.vector_stores.search(course["vs"], query="What is the Euclidean algorithm?", rewrite_query=True)
    assert rewritten.search_query == ["Euclidean algorithm"]
    assert rewritten.data[0].file_id == course["pdf"]


def test_search_refuses_bad_requests_with_the_field_named(client, course) -> None:
    for kwargs, param in [({"max_num_results": 51}, "max_num_results"),
                          ({"ranking_options": {"score_threshold": 2}}, "ranking_options.score_threshold"),
                          ({"filters": {"type": "like", "key": "a", "value": 1}}, "filters")]:
        with pytest.raises(openai.BadRequestError) as info:
            client.vector_stores.search(course["vs"], query="x", **kwargs)
        assert info.value.body["param"].startswith(param)


def test_filters_on_attributes(client) -> None:
    vs = client.vector_stores.create(name="filtered")
    notes = {}
    for week, topic in ((1, "sorting"), (2, "sorting"), (3, "graphs")):
        file_id = upload(client, f"w{week}.md", f"Week {week} notes on {topic}: sorting appears here too.")
        client.vector_stores.files.create_and_poll(file_id=file_id, vector_store_id=vs.id,
                                                   attributes={"week": week, "topic": topic, "draft": week == 3})
        notes[week] = file_id
    found = lambda f: {r.file_id for r in search(client, vs.id, "sorting", filters=f)}  # noqa: E731
    assert found({"type": "eq", "key": "topic", "value": "graphs"}) == {notes[3]}
    assert found({"type": "gte", "key": "week", "value": 2}) == {notes[2], notes[3]}
    assert found({"type": "and", "filters": [{"type": "eq", "key": "topic", "value": "sorting"},
                                             {"type": "ne", "key": "week", "value": 1}]}) == {notes[2]}
    assert found({"type": "in", "key": "week", "value": [1, 3]}) == {notes[1], notes[3]}
    assert found({"type": "eq", "key": "draft", "value": True}) == {notes[3]}
    (hit,) = search(client, vs.id, "graphs")
    assert hit.attributes == {"week": 3, "topic": "graphs", "draft": True}
    # attributes can change after indexing
    client.vector_stores.files.update(notes[1], vector_store_id=vs.id, attributes={"week": 1, "topic": "graphs"})
    assert found({"type": "eq", "key": "topic", "value": "graphs"}) == {notes[1], notes[3]}


def test_a_removed_file_is_no_longer_found(client) -> None:
    vs = client.vector_stores.create(name="removal")
    keep = client.vector_stores.files.upload_and_poll(vector_store_id=vs.id, file=("keep.md", b"Dijkstra shortest paths"))
    gone = client.vector_stores.files.upload_and_poll(vector_store_id=vs.id, file=("gone.md", b"Dijkstra priority queue"))
    assert {r.file_id for r in search(client, vs.id, "Dijkstra")} == {keep.id, gone.id}
    deleted = client.vector_stores.files.delete(gone.id, vector_store_id=vs.id)
    assert deleted.deleted and deleted.id == gone.id
    assert {r.file_id for r in search(client, vs.id, "Dijkstra priority queue")} == {keep.id}
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.files.retrieve(gone.id, vector_store_id=vs.id)
    assert client.files.retrieve(gone.id).id == gone.id  # the file itself stays


def test_files_list_filter_pages_and_content(client, course) -> None:
    settled(client, course["vs"])
    files = client.vector_stores.files
    failed = files.list(vector_store_id=course["vs"], filter="failed")
    assert [f.id for f in failed] == [course["png"]]
    first = files.list(vector_store_id=course["vs"], limit=2, order="asc")
    assert [f.id for f in first.data] == [course["md"], course["pdf"]] and first.has_more
    rest = files.list(vector_store_id=course["vs"], limit=10, order="asc", after=first.data[-1].id)
    assert [f.id for f in rest.data] == [course["docx"], course["ko"], course["png"]] and not rest.has_more
    every = [f.id for f in files.list(vector_store_id=course["vs"], limit=2)]  # the SDK follows the pages
    assert len(every) == 5
    text = "".join(part.text for part in files.content(course["pdf"], vector_store_id=course["vs"]))
    assert "Euclidean algorithm" in text and "repeated remainders" in text
    with pytest.raises(openai.BadRequestError):
        files.list(vector_store_id=course["vs"], filter="done")


def test_static_chunking_is_honoured_and_bounds_are_checked(client) -> None:
    vs = client.vector_stores.create(name="static")
    long_text = " ".join(f"Lecture line {i} about dynamic programming." for i in range(400))
    file_id = upload(client, "long.md", long_text)
    vsf = client.vector_stores.files.create_and_poll(
        file_id=file_id, vector_store_id=vs.id,
        chunking_strategy={"type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 20}})
    assert vsf.status == "completed" and vsf.chunking_strategy.static.max_chunk_size_tokens == 100
    hits = search(client, vs.id, "dynamic programming", max_num_results=50)
    assert len(hits) > 20  # many small chunks
    with pytest.raises(openai.BadRequestError) as info:
        client.vector_stores.files.create(file_id=file_id, vector_store_id=vs.id, chunking_strategy={
            "type": "static", "static": {"max_chunk_size_tokens": 100, "chunk_overlap_tokens": 60}})
    assert "chunk_overlap_tokens" in info.value.message


def test_store_list_modify_delete(client) -> None:
    a = client.vector_stores.create(name="a")
    b = client.vector_stores.create(name="b", expires_after={"anchor": "last_active_at", "days": 7})
    assert b.expires_at == b.last_active_at + 7 * 86400
    listed = client.vector_stores.list(limit=2)
    assert [vs.id for vs in listed.data] == [b.id, a.id]
    changed = client.vector_stores.update(a.id, name="renamed", metadata={"k": "v"},
                                          expires_after={"anchor": "last_active_at", "days": 1})
    assert changed.name == "renamed" and changed.metadata == {"k": "v"} and changed.expires_at is not None
    assert client.vector_stores.retrieve(a.id).name == "renamed"
    deleted = client.vector_stores.delete(a.id)
    assert deleted.deleted and deleted.object == "vector_store.deleted"
    with pytest.raises(openai.NotFoundError) as info:
        client.vector_stores.retrieve(a.id)
    assert "No vector store found" in info.value.message


def test_unknown_files_are_refused_before_anything_is_made(client) -> None:
    before = [vs.id for vs in client.vector_stores.list(limit=100)]
    with pytest.raises(openai.NotFoundError) as info:
        client.vector_stores.create(name="x", file_ids=["file-doesnotexist"])
    assert "file-doesnotexist" in info.value.message
    assert [vs.id for vs in client.vector_stores.list(limit=100)] == before


def test_file_batches(client) -> None:
    vs = client.vector_stores.create(name="batches")
    files = [("b1.md", io.BytesIO(b"Heaps keep the minimum on top.")),
             ("b2.md", io.BytesIO(b"Tries store strings by prefix."))]
    batch = client.vector_stores.file_batches.upload_and_poll(vector_store_id=vs.id, files=files)
    assert batch.status == "completed" and batch.file_counts.completed == 2 and batch.object == "vector_store.files_batch"
    again = client.vector_stores.file_batches.retrieve(batch.id, vector_store_id=vs.id)
    assert again.id == batch.id and again.file_counts.total == 2
    listed = client.vector_stores.file_batches.list_files(batch.id, vector_store_id=vs.id)
    assert len(listed.data) == 2
    assert search(client, vs.id, "prefix strings")[0].filename == "b2.md"
    with pytest.raises(openai.BadRequestError):  # only a batch in progress can be cancelled
        client.vector_stores.file_batches.cancel(batch.id, vector_store_id=vs.id)
    with pytest.raises(openai.NotFoundError):
        client.vector_stores.file_batches.retrieve("vsfb_nope", vector_store_id=vs.id)


@pytest.mark.slow
def test_cancelling_a_batch_stops_the_files_not_indexed_yet(client) -> None:
    vs = client.vector_stores.create(name="cancel")
    big = " ".join(f"word{i % 5000} appears in chunk {i}" for i in range(150_000))  # a few MB: seconds each
    ids = [upload(client, f"big{i}.md", big) for i in range(6)]
    batch = client.vector_stores.file_batches.create(vector_store_id=vs.id, file_ids=ids,
                                                     attributes={"part": "big"})
    cancelled = client.vector_stores.file_batches.cancel(batch.id, vector_store_id=vs.id)
    assert cancelled.status == "cancelled" and cancelled.file_counts.cancelled >= 1
    vs_now = settled(client, vs.id, timeout=120)
    assert vs_now.file_counts.in_progress == 0 and vs_now.file_counts.cancelled >= 1
    stopped = {f.id for f in client.vector_stores.files.list(vector_store_id=vs.id, filter="cancelled", limit=100)}
    found = {r.file_id for r in search(client, vs.id, "word42 appears", max_num_results=50)}
    assert stopped and not stopped & found


def test_an_expired_store_says_so_and_cannot_be_searched(client, monkeypatch: pytest.MonkeyPatch) -> None:
    from tutor_nb.runtime.search import stores

    vs = client.vector_stores.create(name="short-lived", expires_after={"anchor": "last_active_at", "days": 1})
    later = vs.created_at + 2 * 86400
    monkeypatch.setattr(stores, "now", lambda: later)
    assert client.vector_stores.retrieve(vs.id).status == "expired"
    with pytest.raises(openai.BadRequestError) as info:
        client.vector_stores.search(vs.id, query="anything")
    assert "expired" in info.value.message


@pytest.mark.slow
def test_files_still_in_progress_at_shutdown_are_indexed_after_a_restart(tmp_path: Path) -> None:
    from tutor_nb.runtime import start

    rt = start(backend="replay", data_dir=tmp_path, pool_size=0)
    client = rt.client(max_retries=0)
    big = " ".join(f"token{i % 9000} in sentence {i}" for i in range(200_000))
    ids = [upload(client, f"f{i}.md", big) for i in range(4)] + [upload(client, "small.md", "Kruskal spanning tree")]
    vs = client.vector_stores.create(name="restart", file_ids=ids)
    rt.stop()  # while the workers are still on the big files
    left = sqlite3.connect(tmp_path / "tutor_nb.sqlite3").execute(
        "SELECT COUNT(*) FROM vector_store_files WHERE status = 'in_progress'").fetchone()[0]
    assert left >= 1  # the restart has work to take up
    rt = start(backend="replay", data_dir=tmp_path, pool_size=0)
    try:
        client = rt.client(max_retries=0)
        done = settled(client, vs.id, timeout=120)
        assert done.file_counts.completed == 5 and done.status == "completed"
        assert search(client, vs.id, "Kruskal")[0].filename == "small.md"
    finally:
        rt.stop()


def test_embeddings_rank_with_bm25_against_a_stand_in_embeddings_server(tmp_path: Path) -> None:
    from tutor_nb.runtime import start

    with FakeEmbeddings() as fake:
        rt = start(backend="replay", data_dir=tmp_path, pool_size=0, embeddings_base_url=fake.base_url,
                   embeddings_model="fake-embed")
        try:
            client = rt.client(max_retries=0)
            vs = client.vector_stores.create(name="hybrid")
            auto = client.vector_stores.files.upload_and_poll(vector_store_id=vs.id,
                                                              file=("auto.md", b"Automobile maintenance: oil"))
            client.vector_stores.files.upload_and_poll(vector_store_id=vs.id, file=("bike.md", b"Bicycle chains"))
            (hit, *_) = search(client, vs.id, "car")  # no file says "car": only the embeddings know
            assert hit.file_id == auto.id and 0 < hit.score <= 1
            assert any(r.get("model") == "fake-embed" for r in fake.requests)
        finally:
            rt.stop()


def test_an_embeddings_endpoint_without_its_model_is_refused_at_start(tmp_path: Path) -> None:
    from tutor_nb.__main__ import main
    from tutor_nb.errors import RuntimeStartError
    from tutor_nb.runtime import start

    with pytest.raises(RuntimeStartError, match="--embeddings-model"):
        start(data_dir=tmp_path, embeddings_base_url="http://127.0.0.1:9/v1")
    assert main(["serve", "--data-dir", str(tmp_path), "--embeddings-base-url", "http://127.0.0.1:9/v1"]) == 2
