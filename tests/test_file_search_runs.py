"""The Assistants file_search tool: runs that search vector stores, their steps, results and citations.

The model is a stand-in Chat Completions server (``librarian_script``: search with the question,
then cite the first passage); everything else is the real runtime through the official SDK.
"""

from __future__ import annotations

import io
import json
import time

import openai
import pytest

from tests.documents import make_pdf
from tests.fakemodel import FakeModel, librarian_script

SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"
GCD = ["Week 2: the Euclidean algorithm.", "It finds the greatest common divisor by repeated remainders."]
KOREAN = "피보나치수열의 각 항은 앞의 두 항의 합이다."


@pytest.fixture(scope="module")
def fake():
    with FakeModel(librarian_script) as server:
        yield server


@pytest.fixture(scope="module")
def client(fake, tmp_path_factory: pytest.TempPathFactory):
    from tutor_nb.runtime import start

    with start(backend="chat", model_base_url=fake.base_url, data_dir=tmp_path_factory.mktemp("fs"),
               pool_size=0) as rt:
        yield rt.client(max_retries=0)


def upload(client: openai.OpenAI, name: str, data: bytes | str) -> str:
    raw = data.encode() if isinstance(data, str) else data
    return client.files.create(file=(name, io.BytesIO(raw)), purpose="assistants").id


def ready(client: openai.OpenAI, vs_id: str) -> None:
    deadline = time.monotonic() + 60
    while client.vector_stores.retrieve(vs_id).status == "in_progress" and time.monotonic() < deadline:
        time.sleep(0.05)


@pytest.fixture(scope="module")
def notes(client) -> dict[str, str]:
    ids = {"pdf": upload(client, "week2.pdf", make_pdf(GCD)), "ko": upload(client, "피보나치.txt", KOREAN),
           "md": upload(client, "week1.md", "Recursion needs a base case, or it never ends.")}
    vs = client.vector_stores.create(name="notes", file_ids=list(ids.values()))
    ready(client, vs.id)
    ids["vs"] = vs.id
    return ids


def ask(client: openai.OpenAI, assistant_id: str, question: str, **thread: object):
    thread_obj = client.beta.threads.create(messages=[{"role": "user", "content": question}], **thread)
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_obj.id, assistant_id=assistant_id)
    assert run.status == "completed", run.last_error
    return thread_obj, run


def search_step(client: openai.OpenAI, thread_id: str, run_id: str, **kw):
    steps = client.beta.threads.runs.steps.list(thread_id=thread_id, run_id=run_id, order="asc", **kw)
    calls = [c for s in steps for c in getattr(s.step_details, "tool_calls", []) if c.type == "file_search"]
    assert len(calls) == 1
    return calls[0]


def test_a_run_searches_shows_its_step_and_cites_its_source(client, fake, notes) -> None:
    assistant = client.beta.assistants.create(
        model="gpt-4o", instructions="Answer from the course notes.", tools=[{"type": "file_search"}],
        tool_resources={"file_search": {"vector_store_ids": [notes["vs"]]}})
    assert assistant.tool_resources.file_search.vector_store_ids == [notes["vs"]]
    thread, run = ask(client, assistant.id, "greatest common divisor")

    plain = search_step(client, thread.id, run.id)
    assert plain.file_search.ranking_options.ranker in ("auto", "default_2024_08_21")
    assert plain.file_search.ranking_options.score_threshold == 0.0
    assert plain.file_search.results[0].file_id == notes["pdf"] and plain.file_search.results[0].file_name == "week2.pdf"
    assert all(r.content is None for r in plain.file_search.results)  # content only when include[] asks
    full = search_step(client, thread.id, run.id, include=[SEARCH_CONTENT])
    assert "greatest common divisor" in full.file_search.results[0].content[0].text
    assert 0 < full.file_search.results[0].score <= 1

    (message,) = client.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data
    text = message.content[0].text
    (citation,) = text.annotations
    assert citation.type == "file_citation" and citation.file_citation.file_id == notes["pdf"]
    assert text.value[citation.start_index:citation.end_index] == citation.text == "【0†week2.pdf】"

    offered = fake.requests[-2]  # the model was offered the search and told how to cite
    assert "file_search" in {t["function"]["name"] for t in offered["tools"]}
    assert "【0†notes.md】" in offered["messages"][0]["content"]
    answered = fake.requests[-1]
    assert any(m["role"] == "tool" and "【0†week2.pdf】" in m["content"] for m in answered["messages"])


def test_korean_question_finds_the_korean_file(client, notes) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}],
                                              tool_resources={"file_search": {"vector_store_ids": [notes["vs"]]}})
    thread, run = ask(client, assistant.id, "피보나치 수열")
    step = search_step(client, thread.id, run.id)
    assert step.file_search.results[0].file_id == notes["ko"]


def test_max_num_results_and_score_threshold_are_honoured(client, notes) -> None:
    few = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search", "file_search": {
        "max_num_results": 1, "ranking_options": {"ranker": "default_2024_08_21", "score_threshold": 0.0}}}],
        tool_resources={"file_search": {"vector_store_ids": [notes["vs"]]}})
    thread, run = ask(client, few.id, "base case recursion divisor")
    step = search_step(client, thread.id, run.id)
    assert len(step.file_search.results) == 1 and step.file_search.ranking_options.ranker == "default_2024_08_21"
    strict = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search", "file_search": {
        "ranking_options": {"ranker": "auto", "score_threshold": 1.0}}}],
        tool_resources={"file_search": {"vector_store_ids": [notes["vs"]]}})
    thread, run = ask(client, strict.id, "recursion")
    assert search_step(client, thread.id, run.id).file_search.results == []
    (message,) = client.beta.threads.messages.list(thread_id=thread.id, run_id=run.id).data
    assert message.content[0].text.value == "The files do not say." and message.content[0].text.annotations == []


def test_the_vector_stores_helper_makes_a_store_from_files(client) -> None:
    file_id = upload(client, "graphs.md", "Breadth-first search uses a queue.")
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}], tool_resources={
        "file_search": {"vector_stores": [{"file_ids": [file_id], "metadata": {"made": "helper"}}]}})
    (vs_id,) = assistant.tool_resources.file_search.vector_store_ids
    vs = client.vector_stores.retrieve(vs_id)
    assert vs.metadata == {"made": "helper"} and vs.file_counts.total == 1
    ready(client, vs_id)
    thread, run = ask(client, assistant.id, "queue breadth-first")
    assert search_step(client, thread.id, run.id).file_search.results[0].file_id == file_id


def test_unknown_vector_store_is_refused(client) -> None:
    with pytest.raises(openai.NotFoundError) as info:
        client.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}],
                                      tool_resources={"file_search": {"vector_store_ids": ["vs_nope"]}})
    assert "vs_nope" in info.value.message


def test_an_attachment_makes_the_threads_store_and_is_searched(client) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}])
    file_id = upload(client, "syllabus.md", "The final exam is on the twelfth of June, in room 101.")
    thread = client.beta.threads.create(messages=[{
        "role": "user", "content": "When is the final exam?",
        "attachments": [{"file_id": file_id, "tools": [{"type": "file_search"}]}]}])
    (vs_id,) = thread.tool_resources.file_search.vector_store_ids
    assert client.vector_stores.files.retrieve(file_id, vector_store_id=vs_id).id == file_id
    ready(client, vs_id)
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"
    assert search_step(client, thread.id, run.id).file_search.results[0].file_id == file_id
    # a later message's attachment goes to the same store
    other = upload(client, "rooms.md", "Room 101 is in the east building.")
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content="Where is room 101?",
                                        attachments=[{"file_id": other, "tools": [{"type": "file_search"}]}])
    assert client.beta.threads.retrieve(thread.id).tool_resources.file_search.vector_store_ids == [vs_id]
    assert client.vector_stores.retrieve(vs_id).file_counts.total == 2


def test_a_second_run_sends_the_first_runs_search_back_to_the_model(client, fake, notes) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}],
                                              tool_resources={"file_search": {"vector_store_ids": [notes["vs"]]}})
    thread, _ = ask(client, assistant.id, "Euclidean algorithm")
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content="base case")
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"
    first_turn = fake.requests[-2]["messages"]
    calls = [m for m in first_turn if m.get("tool_calls")]
    assert json.loads(calls[0]["tool_calls"][0]["function"]["arguments"]) == {"queries": ["Euclidean algorithm"]}
    assert any(m["role"] == "tool" and "week2.pdf" in m["content"] for m in first_turn)


def test_the_cookbook_file_search_flow(client) -> None:
    """The steps of OpenAI's file search guide and Cookbook Assistants overview, as a learner runs them."""
    assistant = client.beta.assistants.create(
        name="Financial Analyst Assistant", model="gpt-4o", tools=[{"type": "file_search"}],
        instructions="You are an expert financial analyst. Use your knowledge base to answer questions.")
    vector_store = client.vector_stores.create(name="Financial Statements")
    file_streams = [("goog-10k.md", io.BytesIO(b"Alphabet revenue grew to 307 billion dollars in 2023.")),
                    ("brka-10k.txt", io.BytesIO(b"Berkshire Hathaway holds large insurance float."))]
    file_batch = client.vector_stores.file_batches.upload_and_poll(vector_store_id=vector_store.id, files=file_streams)
    assert file_batch.status == "completed" and file_batch.file_counts.completed == 2
    assistant = client.beta.assistants.update(
        assistant_id=assistant.id, tool_resources={"file_search": {"vector_store_ids": [vector_store.id]}})
    message_file = client.files.create(file=("aapl-10k.md", io.BytesIO(
        b"Apple had 15,550,061,000 shares outstanding on October 20, 2023.")), purpose="assistants")
    thread = client.beta.threads.create(messages=[{
        "role": "user", "content": "How many shares of AAPL were outstanding at the end of October 2023?",
        "attachments": [{"file_id": message_file.id, "tools": [{"type": "file_search"}]}]}])
    assert thread.tool_resources.file_search.vector_store_ids  # the thread has its own store now
    ready(client, thread.tool_resources.file_search.vector_store_ids[0])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id)
    assert run.status == "completed"
    messages = list(client.beta.threads.messages.list(thread_id=thread.id, run_id=run.id))
    message_content = messages[0].content[0].text
    annotations = message_content.annotations
    citations = []
    for index, annotation in enumerate(annotations):
        message_content.value = message_content.value.replace(annotation.text, f"[{index}]")
        if file_citation := getattr(annotation, "file_citation", None):
            cited_file = client.files.retrieve(file_citation.file_id)
            citations.append(f"[{index}] {cited_file.filename}")
    assert citations == ["[0] aapl-10k.md"]
    assert message_content.value.endswith("[0]") and "15,550,061,000" in message_content.value


def test_streaming_a_run_shows_the_search_step_without_content(client, notes) -> None:
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}],
                                              tool_resources={"file_search": {"vector_store_ids": [notes["vs"]]}})
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "greatest common divisor"}])
    done = []
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        for event in stream:
            if event.event == "thread.run.step.completed" and event.data.type == "tool_calls":
                done.append(event.data)
        final = stream.get_final_run()
    assert final.status == "completed"
    (step,) = done
    call = step.step_details.tool_calls[0]
    assert call.type == "file_search" and call.file_search.results[0].file_id == notes["pdf"]
    assert call.file_search.results[0].content is None
    # include[] on the run's creation puts the text in its stream too
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "greatest common divisor"}])
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id,
                                         include=[SEARCH_CONTENT]) as stream:
        steps = [e.data for e in stream if e.event == "thread.run.step.completed" and e.data.type == "tool_calls"]
    assert "divisor" in steps[0].step_details.tool_calls[0].file_search.results[0].content[0].text


def test_search_calls_and_show_json_show_the_query_and_hits(client, notes, capsys) -> None:
    import tutor_nb

    assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}],
                                              tool_resources={"file_search": {"vector_store_ids": [notes["vs"]]}})
    thread, run = ask(client, assistant.id, "greatest common divisor")
    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, include=[SEARCH_CONTENT])
    (call,) = tutor_nb.search_calls(steps)
    assert call.queries == ["greatest common divisor"] and call.status == "completed" and call.run_id == run.id
    assert call.hits[0].filename == "week2.pdf" and "divisor" in call.hits[0].text
    shown = str(call)
    assert "queries: greatest common divisor" in shown and "week2.pdf" in shown and "0." in shown
    assert "<table>" in call._repr_mimebundle_()["text/html"]
    # saved as JSON, and without content: the hits still show, with a hint on how to get their text
    bare = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id)
    (saved,) = tutor_nb.search_calls(bare.model_dump_json())
    assert saved.hits[0].text == "" and "include=" in str(saved)
    tutor_nb.show_json(steps)
    printed = capsys.readouterr().out
    assert '"type": "file_search"' in printed and "queries: greatest common divisor" in printed
    with pytest.raises(tutor_nb.searches.NoSearchCallsError, match="run steps"):
        tutor_nb.search_calls(assistant)
    assert tutor_nb.search_calls(client.beta.threads.messages.list(thread_id=thread.id)) == []


def test_the_chat_panel_shows_a_search_as_its_queries_and_hits(client, notes) -> None:
    import ipywidgets as W

    from tutor_nb.panel import ChatPanel

    assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "file_search"}],
                                              tool_resources={"file_search": {"vector_store_ids": [notes["vs"]]}})
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "greatest common divisor"}])
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id) as stream:
        events = list(stream)  # the run's real stream, played into a panel
    panel = ChatPanel(client=object())
    panel.play("greatest common divisor", events)
    entry = panel.wait(timeout=10)
    assert entry["status"] == "completed"

    def walk(widget: W.Widget):
        yield widget
        for child in getattr(widget, "children", ()):
            yield from walk(child)

    shown = [w.value for w in walk(panel.widget) if isinstance(w, W.HTML)]
    assert any("Searched “greatest common divisor”: week2.pdf (0." in value for value in shown), shown
