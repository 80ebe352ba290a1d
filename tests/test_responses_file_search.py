"""The Responses API's file_search tool: file_search_call items, their results, and file citations.

Through the official SDK over real HTTP; the model is the stand-in ``librarian_script`` (search
with the question, then cite the first passage).
"""

from __future__ import annotations

import io
import time

import openai
import pytest

import tutor_nb
from tests.documents import make_pdf
from tests.fakemodel import FakeModel, librarian_script

GCD = ["Week 2: the Euclidean algorithm.", "It finds the greatest common divisor by repeated remainders."]


@pytest.fixture(scope="module")
def fake():
    with FakeModel(librarian_script) as server:
        yield server


@pytest.fixture(scope="module")
def client(fake, tmp_path_factory: pytest.TempPathFactory):
    from tutor_nb.runtime import start

    with start(backend="chat", model_base_url=fake.base_url, data_dir=tmp_path_factory.mktemp("rfs"),
               pool_size=0) as rt:
        yield rt.client(max_retries=0)


@pytest.fixture(scope="module")
def store(client) -> dict[str, str]:
    ids = {"pdf": client.files.create(file=("week2.pdf", io.BytesIO(make_pdf(GCD))), purpose="assistants").id,
           "ko": client.files.create(file=("피보나치.txt", io.BytesIO("피보나치수열의 각 항은 앞의 두 항의 합이다.".encode())),
                                     purpose="assistants").id}
    vs = client.vector_stores.create(name="notes", file_ids=list(ids.values()))
    deadline = time.monotonic() + 60
    while client.vector_stores.retrieve(vs.id).status == "in_progress" and time.monotonic() < deadline:
        time.sleep(0.05)
    ids["vs"] = vs.id
    return ids


def search_tool(store: dict[str, str], **options) -> dict:
    return {"type": "file_search", "vector_store_ids": [store["vs"]], **options}


def test_a_response_searches_and_cites_without_markers(client, store) -> None:
    response = client.responses.create(model="gpt-4o", input="greatest common divisor", tools=[search_tool(store)])
    assert response.status == "completed"
    call, message = response.output
    assert call.type == "file_search_call" and call.status == "completed"
    assert call.queries == ["greatest common divisor"] and call.results is None  # results only through include
    text = message.content[0]
    assert "【" not in text.text and text.text.startswith("The notes say:")
    (citation,) = text.annotations
    assert citation.type == "file_citation" and citation.file_id == store["pdf"] and citation.filename == "week2.pdf"
    assert citation.index == len(text.text)  # where the marker stood, at the end of the answer
    assert response.output_text == text.text


def test_include_gives_the_results_and_search_calls_reads_them(client, store) -> None:
    response = client.responses.create(model="gpt-4o", input="피보나치 수열", tools=[search_tool(store)],
                                       include=["file_search_call.results"])
    call = response.output[0]
    (best, *_) = call.results
    assert best.file_id == store["ko"] and best.filename == "피보나치.txt" and 0 < best.score <= 1
    assert "피보나치수열의" in best.text and best.attributes == {}
    (found,) = tutor_nb.search_calls(response)
    assert found.source == "responses" and found.queries == ["피보나치 수열"] and found.hits[0].filename == "피보나치.txt"
    again = client.responses.retrieve(response.id, include=["file_search_call.results"])
    assert again.output[0].results[0].file_id == store["ko"]
    assert client.responses.retrieve(response.id).output[0].results is None


def test_max_results_threshold_and_filters_are_honoured(client, store) -> None:
    client.vector_stores.files.update(store["pdf"], vector_store_id=store["vs"], attributes={"week": 2})
    one = client.responses.create(model="gpt-4o", input="divisor 피보나치", include=["file_search_call.results"],
                                  tools=[search_tool(store, max_num_results=1)])
    assert len(one.output[0].results) == 1
    none = client.responses.create(model="gpt-4o", input="divisor", include=["file_search_call.results"],
                                   tools=[search_tool(store, ranking_options={"score_threshold": 1.0})])
    assert none.output[0].results == [] and none.output[-1].content[0].annotations == []
    week2 = client.responses.create(model="gpt-4o", input="divisor 피보나치", include=["file_search_call.results"],
                                    tools=[search_tool(store, filters={"type": "eq", "key": "week", "value": 2})])
    assert {r.file_id for r in week2.output[0].results} == {store["pdf"]}


def test_streaming_shows_the_search_and_text_without_markers(client, store) -> None:
    kinds, deltas = [], []
    with client.responses.stream(model="gpt-4o", input="greatest common divisor", tools=[search_tool(store)]) as stream:
        for event in stream:
            kinds.append(event.type)
            if event.type == "response.output_text.delta":
                deltas.append(event.delta)
        final = stream.get_final_response()
    order = [k for k in kinds if k.startswith("response.file_search_call.")]
    assert order == ["response.file_search_call.in_progress", "response.file_search_call.searching",
                     "response.file_search_call.completed"]
    assert "response.output_text.annotation.added" in kinds
    assert "".join(deltas) == final.output_text and "【" not in final.output_text


def test_a_follow_up_sends_the_earlier_search_back_to_the_model(client, fake, store) -> None:
    first = client.responses.create(model="gpt-4o", input="greatest common divisor", tools=[search_tool(store)])
    second = client.responses.create(model="gpt-4o", input="피보나치 수열", tools=[search_tool(store)],
                                     previous_response_id=first.id)
    assert second.status == "completed"
    sent = fake.requests[-1]["messages"]
    tools = [m for m in sent if m["role"] == "tool"]
    assert "【0†week2.pdf】" in tools[0]["content"] and "【1†피보나치.txt】" in tools[1]["content"]
    (citation,) = second.output[-1].content[0].annotations  # number 1 is this response's first passage
    assert citation.file_id == store["ko"]


def test_a_file_search_tool_without_a_known_store_is_refused(client) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.responses.create(model="gpt-4o", input="x", tools=[{"type": "file_search", "vector_store_ids": ["vs_no"]}])
    assert "vs_no" in info.value.message
    with pytest.raises(openai.BadRequestError):
        client.responses.create(model="gpt-4o", input="x", tools=[{"type": "file_search", "vector_store_ids": []}])


def test_out_of_bounds_options_are_refused(client, store) -> None:
    for options, param in [({"max_num_results": 51}, "tools.max_num_results"),
                           ({"ranking_options": {"score_threshold": 1.5}}, "tools.ranking_options.score_threshold")]:
        with pytest.raises(openai.BadRequestError) as info:
            client.responses.create(model="gpt-4o", input="x", tools=[search_tool(store, **options)])
        assert info.value.body["param"] == param
