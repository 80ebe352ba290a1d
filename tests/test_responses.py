"""The Responses API through the official SDK over real HTTP, with real kernels.

On the chat backend against the stand-in model (whose script runs the code a message asks for and
answers with its output), and on replay with the walkthrough's recorded turns.
"""

from __future__ import annotations

import ast
import json
import time

import openai
import pytest

from conftest import FIB_NUMBERS, FIB_PROMPT, TUTOR_INSTRUCTIONS, data_path
from fixtures_steps import no_ipython  # noqa: F401 (fixture)
from tests.fakemodel import FakeModel, _text

CODE = [{"type": "code_interpreter", "container": {"type": "auto"}}]
OUTPUTS = ["code_interpreter_call.outputs"]
WEATHER = {"type": "function", "name": "get_weather", "description": "Today's weather in a city.",
           "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}


def script(request: dict) -> dict:
    """``run: <code>`` runs the code, then answers with its output; a weather question calls get_weather."""
    messages = request["messages"]
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    question = _text(messages[last_user])
    results = [_text(m) for m in messages[last_user + 1:] if m["role"] == "tool"]
    usage = {"prompt_tokens": 10, "completion_tokens": 40 if "long" in question else 5}
    offered = {t["function"]["name"] for t in request.get("tools") or []}
    if question.startswith("run twice:") and len(results) < 2 and "code_interpreter" in offered:
        code = json.dumps({"code": question[len("run twice:"):].strip()})
        return {"content": None, "tool_calls": [{"name": "code_interpreter", "arguments": code}], "usage": usage}
    if results:
        return {"content": f"Output: {results[-1].strip()}", "tool_calls": [], "usage": usage}
    if question.startswith("run") and "code_interpreter" not in offered:
        return {"content": f"No tools for: {question}", "tool_calls": [], "usage": usage}
    if "weather" in question:
        return {"content": None, "tool_calls": [{"name": "get_weather", "arguments": json.dumps({"city": "Seoul"})}],
                "usage": usage}
    if question.startswith("run:"):
        code = json.dumps({"code": question[4:].strip()})
        return {"content": None, "tool_calls": [{"name": "code_interpreter", "arguments": code}], "usage": usage}
    return {"content": f"You said: {question}", "tool_calls": [], "usage": usage}


@pytest.fixture(scope="module")
def model():
    with FakeModel(script) as fake:
        yield fake


@pytest.fixture(scope="module")
def served(model, tmp_path_factory):
    from tutor_nb.runtime import start

    with start(backend="chat", model_base_url=model.base_url, data_dir=tmp_path_factory.mktemp("responses"),
               exec_timeout=30) as rt:
        yield rt


@pytest.fixture(scope="module")
def client(served):
    return served.client(max_retries=0)


def code_call(response):
    return next(item for item in response.output if item.type == "code_interpreter_call")


def test_code_interpreter_response_has_code_logs_and_answer(client):
    response = client.responses.create(model="tutor-model", input="run: 12345 * 6789", tools=CODE, include=OUTPUTS)
    assert response.status == "completed", response.error
    assert [item.type for item in response.output] == ["code_interpreter_call", "message"]
    call = code_call(response)
    assert call.code == "12345 * 6789" and call.status == "completed"
    assert call.container_id.startswith("cntr_")
    assert [o.type for o in call.outputs] == ["logs"] and call.outputs[0].logs.strip() == "83810205"
    assert response.output_text == "Output: 83810205"
    assert response.usage.input_tokens == 20 and response.usage.output_tokens == 10
    # without include, the outputs are left out, as OpenAI did
    assert code_call(client.responses.retrieve(response.id)).outputs is None
    assert code_call(client.responses.retrieve(response.id, include=OUTPUTS)).outputs[0].logs.strip() == "83810205"
    items = client.responses.input_items.list(response.id).data
    assert [(i.type, i.role, i.content[0].text) for i in items] == [("message", "user", "run: 12345 * 6789")]


def test_previous_response_id_keeps_the_container_and_its_variables(client, model):
    first = client.responses.create(model="tutor-model", input="run: x = 6 * 7", tools=CODE)
    second = client.responses.create(model="tutor-model", input="run: print(x)", tools=CODE, include=OUTPUTS,
                                     previous_response_id=first.id)
    assert second.status == "completed", second.error
    assert code_call(second).container_id == code_call(first).container_id
    assert code_call(second).outputs[0].logs.strip() == "42"
    sent = model.requests[-2]["messages"]  # the second response's first model call carries the first one
    assert [m["role"] for m in sent] == ["user", "assistant", "tool", "assistant", "user"]
    assert json.loads(sent[1]["tool_calls"][0]["function"]["arguments"]) == {"code": "x = 6 * 7"}


def test_stream_shows_code_deltas_text_deltas_and_the_final_response(client):
    with client.responses.stream(model="tutor-model", input="run: sum(range(101))", tools=CODE,
                                 include=OUTPUTS) as stream:
        events = list(stream)
        final = stream.get_final_response()
    kinds = [e.type for e in events]
    assert kinds[:4] == ["response.created", "response.in_progress", "response.output_item.added",
                         "response.code_interpreter_call.in_progress"]
    assert kinds[-1] == "response.completed"
    assert [e.sequence_number for e in events] == list(range(len(events)))
    code = "".join(e.delta for e in events if e.type == "response.code_interpreter_call_code.delta")
    assert code == "sum(range(101))"
    order = [k for k in kinds if k in ("response.code_interpreter_call_code.done", "response.code_interpreter_call.interpreting",
                                       "response.code_interpreter_call.completed", "response.content_part.added",
                                       "response.output_text.done")]
    assert order == ["response.code_interpreter_call_code.done", "response.code_interpreter_call.interpreting",
                     "response.code_interpreter_call.completed", "response.content_part.added", "response.output_text.done"]
    text = "".join(e.delta for e in events if e.type == "response.output_text.delta")
    assert text == final.output_text == "Output: 5050"
    assert code_call(final).outputs[0].logs.strip() == "5050"
    assert client.responses.retrieve(final.id).output_text == "Output: 5050"


def test_a_file_the_code_wrote_is_recorded_in_the_container_and_cited(client, served):
    code = "open('/mnt/data/squares.csv', 'w').write('n,sq\\n3,9\\n'); print('saved /mnt/data/squares.csv')"
    response = client.responses.create(model="tutor-model", input=f"run: {code}", tools=CODE)
    assert response.status == "completed", response.error
    container_id = code_call(response).container_id
    message = response.output[-1]
    [citation] = message.content[0].annotations
    assert citation.type == "container_file_citation" and citation.filename == "squares.csv"
    assert citation.container_id == container_id
    assert message.content[0].text[citation.start_index:citation.end_index] == "/mnt/data/squares.csv"
    containers = served._server.app.state.runtime.containers
    [entry] = [f for f in containers.files(container_id) if f.id == citation.file_id]
    assert entry.path == "/mnt/data/squares.csv" and entry.source == "assistant"
    assert containers.file_path(entry).read_text() == "n,sq\n3,9\n"


def test_function_tool_round_trip(client, model):
    first = client.responses.create(model="tutor-model", input="What is the weather in Seoul?", tools=[WEATHER])
    assert first.status == "completed", first.error
    [call] = first.output
    assert call.type == "function_call" and call.name == "get_weather" and json.loads(call.arguments) == {"city": "Seoul"}
    assert model.requests[-1]["tools"][0]["function"]["name"] == "get_weather"
    second = client.responses.create(model="tutor-model", previous_response_id=first.id, tools=[WEATHER],
                                     input=[{"type": "function_call_output", "call_id": call.call_id, "output": "sunny, 21 C"}])
    assert second.output_text == "Output: sunny, 21 C"
    sent = model.requests[-1]["messages"]
    assert sent[-2]["tool_calls"][0]["id"] == call.call_id and sent[-1] == {
        "role": "tool", "tool_call_id": call.call_id, "content": "sunny, 21 C"}


def test_conversation_carries_across_two_responses(client):
    conversation = client.conversations.create(metadata={"lesson": "3"})
    first = client.responses.create(model="tutor-model", input="run: y = 5", tools=CODE, conversation=conversation.id)
    second = client.responses.create(model="tutor-model", input="run: print(y * 2)", tools=CODE, include=OUTPUTS,
                                     conversation=conversation.id)
    assert first.conversation.id == second.conversation.id == conversation.id
    assert code_call(second).outputs[0].logs.strip() == "10"
    items = client.conversations.items.list(conversation.id, order="asc").data
    assert [i.type for i in items] == ["message", "code_interpreter_call", "message"] * 2
    assert client.conversations.items.retrieve(items[0].id, conversation_id=conversation.id).content[0].text == "run: y = 5"
    client.conversations.items.delete(items[0].id, conversation_id=conversation.id)
    assert len(client.conversations.items.list(conversation.id).data) == 5
    assert client.conversations.update(conversation.id, metadata={"lesson": "4"}).metadata == {"lesson": "4"}
    assert client.conversations.delete(conversation.id).deleted
    with pytest.raises(openai.NotFoundError):
        client.conversations.retrieve(conversation.id)


def test_background_response_polled_to_completion_and_its_stream_resumed(client):
    response = client.responses.create(model="tutor-model", input="run: 2 ** 10", tools=CODE, background=True)
    assert response.status in ("queued", "in_progress") and response.background
    while response.status in ("queued", "in_progress"):
        time.sleep(0.05)
        response = client.responses.retrieve(response.id)
    assert response.status == "completed" and response.output_text == "Output: 1024"
    events = list(client.responses.retrieve(response.id, stream=True, starting_after=2))
    assert events[0].sequence_number == 3 and events[-1].type == "response.completed"
    with client.responses.stream(response_id=response.id, starting_after=2) as resumed:  # the SDK's own helper
        assert [e.sequence_number for e in resumed] == [e.sequence_number for e in events]
        assert resumed.get_final_response().output_text == "Output: 1024"


@pytest.mark.slow
def test_background_response_cancelled_while_its_code_runs(client):
    response = client.responses.create(model="tutor-model", input="run: import time; time.sleep(60)", tools=CODE,
                                       background=True)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        events = client.responses.retrieve(response.id, stream=True)
        if any(e.type == "response.code_interpreter_call.interpreting" for e in _until_interpreting(events)):
            break
    started = time.monotonic()
    cancelled = client.responses.cancel(response.id)
    assert cancelled.status == "cancelled" and time.monotonic() - started < 10
    assert code_call(cancelled).status == "incomplete"
    assert client.responses.retrieve(response.id).status == "cancelled"


def _until_interpreting(events):
    for event in events:
        yield event
        if event.type == "response.code_interpreter_call.interpreting":
            events.close()
            return


def test_cancel_refuses_a_response_not_in_background(client):
    response = client.responses.create(model="tutor-model", input="hello")
    with pytest.raises(openai.BadRequestError, match="background=true"):
        client.responses.cancel(response.id)


def test_deleted_response_is_404_and_cannot_be_continued(client):
    response = client.responses.create(model="tutor-model", input="hello")
    assert response.output_text == "You said: hello"
    client.responses.delete(response.id)
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.NotFoundError, match="Previous response"):
        client.responses.create(model="tutor-model", input="again", previous_response_id=response.id)


def test_bad_requests_name_the_field(client):
    with pytest.raises(openai.BadRequestError, match="model"):
        client.responses.create(input="hello", model="")
    with pytest.raises(openai.BadRequestError, match="not served"):
        client.responses.create(model="m", input="hi", tools=[{"type": "web_search"}])
    with pytest.raises(openai.NotFoundError, match="container"):
        client.responses.create(model="m", input="hi", tools=[{"type": "code_interpreter", "container": "cntr_nope"}])
    with pytest.raises(openai.BadRequestError, match="not both"):
        client.responses.create(model="m", input="hi", previous_response_id="resp_x", conversation="conv_y")


def test_replay_answers_the_walkthrough_question_as_a_response(runtime):
    client = runtime.client(max_retries=0)
    response = client.responses.create(model="gpt-4o", instructions=TUTOR_INSTRUCTIONS, input=FIB_PROMPT,
                                       tools=CODE, include=OUTPUTS)
    assert response.status == "completed", response.error
    assert ast.literal_eval(code_call(response).outputs[0].logs) == FIB_NUMBERS
    assert "4181" in response.output_text


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    from tutor_nb.runtime import start

    with start(backend="replay", data_dir=tmp_path_factory.mktemp("replay"), exec_timeout=30,
               cassettes=[data_path("cassettes")]) as rt:
        yield rt


def test_helpers_read_responses_and_their_stream_events(client, no_ipython, capsys):
    from tutor_nb import code_calls, compare, last_code, rerun, show_json, to_cell
    from tutor_nb.display import json_bundle

    code = "squares = [n * n for n in range(6)]\nsquares"
    response = client.responses.create(model="tutor-model", input=f"run: {code}", tools=CODE, include=OUTPUTS)
    [call] = code_calls(response)
    assert (call.code, call.source, call.response_id, call.container_id) == (
        code, "responses", response.id, code_call(response).container_id)
    assert last_code(response) == code and last_code(response.model_dump_json()) == code
    result = rerun(call)
    assert result.value == [0, 1, 4, 9, 16, 25]
    assert compare(call, result) and compare(response, result)
    assert not compare(call, rerun(code.replace("n * n", "n + n")))

    with client.responses.stream(model="tutor-model", input=f"run: {code}", tools=CODE, include=OUTPUTS) as stream:
        events = list(stream)
    [streamed] = code_calls(events)  # output_item.done once, response.completed not counted twice
    assert streamed.code == code and "[0, 1, 4, 9, 16, 25]" in streamed.logs
    assert [c.code for c in code_calls(events[-1])] == [code]  # the response.completed event alone
    assert last_code([e.model_dump() for e in events]) == code

    to_cell(response)
    show_json(response)
    printed = capsys.readouterr().out
    assert code in printed and f'"id": "{response.id}"' in printed
    assert json_bundle(response)[0]["application/json"]["output"][0]["code"] == code


def test_a_response_recorded_on_chat_replays_offline(model, tmp_path):
    from tutor_nb.runtime import start

    cassette = tmp_path / "responses.json"
    request = {"model": "tutor-model", "input": "run: sorted({3, 1, 2})", "tools": CODE, "include": OUTPUTS}
    with start(backend="chat", model_base_url=model.base_url, data_dir=tmp_path / "live", record=cassette) as live:
        recorded = live.client(max_retries=0).responses.create(**request)
    with start(backend="replay", data_dir=tmp_path / "offline", cassettes=[cassette]) as offline:
        replayed = offline.client(max_retries=0).responses.create(**request)
    assert recorded.output_text == replayed.output_text == "Output: [1, 2, 3]"
    assert code_call(replayed).code == code_call(recorded).code == "sorted({3, 1, 2})"
    assert code_call(replayed).outputs[0].logs == code_call(recorded).outputs[0].logs


def test_request_settings_are_honoured_and_echoed(client, model):
    response = client.responses.create(
        model="tutor-model", input="run: 1 + 1", tools=CODE, instructions="Be brief.", metadata={"lesson": "7"},
        temperature=0.2, top_p=0.9, max_output_tokens=300, parallel_tool_calls=False)
    assert (response.instructions, response.metadata, response.temperature, response.top_p) == (
        "Be brief.", {"lesson": "7"}, 0.2, 0.9)
    assert (response.max_output_tokens, response.parallel_tool_calls, response.tool_choice) == (300, False, "auto")
    sent = model.requests[-1]
    assert sent["messages"][0]["role"] == "system" and sent["messages"][0]["content"].startswith("Be brief.")
    assert (sent["temperature"], sent["top_p"]) == (0.2, 0.9)
    assert response.text.format.type == "text" and response.truncation == "disabled"


def test_tool_choice_none_offers_no_tools(client, model):
    response = client.responses.create(model="tutor-model", input="run: 1 + 1", tools=CODE, tool_choice="none")
    assert [item.type for item in response.output] == ["message"]
    assert response.output_text == "No tools for: run: 1 + 1"
    assert "tools" not in model.requests[-1] or not model.requests[-1]["tools"]


def test_max_tool_calls_stops_offering_the_code_interpreter(client, model):
    unlimited = client.responses.create(model="tutor-model", input="run twice: 3 * 3", tools=CODE)
    assert [item.type for item in unlimited.output] == ["code_interpreter_call", "code_interpreter_call", "message"]
    limited = client.responses.create(model="tutor-model", input="run twice: 3 * 3", tools=CODE, max_tool_calls=1)
    assert [item.type for item in limited.output] == ["code_interpreter_call", "message"]
    assert limited.max_tool_calls == 1 and limited.output_text == "Output: 9"
    assert not model.requests[-1].get("tools")


def test_store_false_answers_but_keeps_nothing(client):
    response = client.responses.create(model="tutor-model", input="hello", store=False)
    assert response.status == "completed" and response.output_text == "You said: hello"
    with pytest.raises(openai.NotFoundError):
        client.responses.retrieve(response.id)
    with pytest.raises(openai.BadRequestError, match="background"):
        client.responses.create(model="tutor-model", input="hello", store=False, background=True)


def test_the_readme_example_runs_offline_on_the_built_in_cassettes(tmp_path):
    from tutor_nb.runtime import start

    with start(backend="replay", data_dir=tmp_path) as rt:
        client = rt.client(max_retries=0)
        tools = [{"type": "code_interpreter", "container": {"type": "auto"}}]
        r = client.responses.create(model="gpt-4o", input="Use code to compute x = 2**100.", tools=tools,
                                    include=["code_interpreter_call.outputs"])
        r2 = client.responses.create(model="gpt-4o", input="Now double x.", tools=tools, include=OUTPUTS,
                                     previous_response_id=r.id)
    assert code_call(r).outputs[0].logs.strip() == str(2 ** 100)
    assert code_call(r2).outputs[0].logs.strip() == str(2 ** 101)  # x came from the first response
    assert str(2 ** 101) in r2.output_text


def test_max_output_tokens_spent_ends_the_response_incomplete(client):
    with client.responses.stream(model="tutor-model", input="run: long = 'a very long answer'", tools=CODE,
                                 max_output_tokens=16) as stream:
        events = list(stream)
    response = events[-1].response
    assert events[-1].type == "response.incomplete" and response.status == "incomplete"
    assert response.incomplete_details.reason == "max_output_tokens"
    assert code_call(response).status == "incomplete"  # the budget ran out before its code ran
    assert "response.code_interpreter_call.interpreting" not in [e.type for e in events]
    assert client.responses.retrieve(response.id).status == "incomplete"


def test_a_history_kept_by_the_client_can_send_items_back_again(client):
    """The manual pattern: input = everything so far, output items included, resent on every turn."""
    first = client.responses.create(model="tutor-model", input="run: z = 3", tools=CODE)
    tools = [{"type": "code_interpreter", "container": code_call(first).container_id}]
    history: list = [{"role": "user", "content": "run: z = 3"}, *first.output]  # the SDK's own objects, sent back
    for n in (1, 2):
        history.append({"role": "user", "content": f"run: print(z + {n})"})
        response = client.responses.create(model="tutor-model", input=history, tools=tools, include=OUTPUTS)
        assert response.status == "completed", response.error
        assert code_call(response).outputs[0].logs.strip() == str(3 + n)
        history += response.output
    inputs = client.responses.input_items.list(response.id, order="asc").data
    assert [i.type for i in inputs] == ["message", "code_interpreter_call", "message"] * 2 + ["message"]
    assert inputs[1].id == code_call(first).id  # the items keep their own ids


def test_item_references_resolve_within_the_history_and_ids_are_not_repeated(client):
    first = client.responses.create(model="tutor-model", input="hello")
    [asked] = client.responses.input_items.list(first.id).data
    second = client.responses.create(model="tutor-model", previous_response_id=first.id,
                                     input=[{"type": "item_reference", "id": asked.id}])
    assert second.output_text == "You said: hello"  # the referenced message is the question again
    assert client.responses.input_items.list(second.id).data[0].id == asked.id
    with pytest.raises(openai.NotFoundError, match="history"):
        client.responses.create(model="tutor-model", input=[{"type": "item_reference", "id": "msg_unknown"}])
    twice = {"type": "function_call_output", "id": "fco_twice", "call_id": "call_1", "output": "21 C"}
    with pytest.raises(openai.BadRequestError, match="fco_twice"):
        client.responses.create(model="tutor-model", input=[twice, twice])
    with pytest.raises(openai.BadRequestError, match="fco_twice"):
        client.conversations.create(items=[twice, twice])
