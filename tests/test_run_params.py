"""Run parameters reach the model as OpenAI applied them: read from what a stand-in model server received.

Each test starts a run through the official SDK and then reads the Chat Completions bodies the runtime
sent to :class:`tests.fakemodel.FakeModel`. The stand-in obeys ``tool_choice`` as a real model does, so a
forced tool that is not sent shows up as a run that never calls it, and a forced tool sent on every call
shows up as a run that loops.
"""

from __future__ import annotations

import json

import openai
import pytest

from tests.fakemodel import FakeModel, code_for, math_tutor_script

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "Today's weather in a city.",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ANSWER_SCHEMA = {"type": "object", "properties": {"answer": {"type": "integer"}, "explanation": {"type": "string"}},
                 "required": ["answer", "explanation"], "additionalProperties": False}


def obedient(request: dict) -> dict:
    """A model that does what the request forces: the named tool, any tool, or JSON; else the math tutor."""
    choice = request.get("tool_choice")
    names = [t["function"]["name"] for t in request.get("tools") or []]
    question = next((m["content"] for m in reversed(request["messages"]) if m["role"] == "user"), "")
    forced = choice["function"]["name"] if isinstance(choice, dict) else names[0] if choice == "required" else None
    if forced == "code_interpreter":
        return {"content": None, "tool_calls": [{"name": forced, "arguments": json.dumps({"code": code_for(question)})}]}
    if forced is not None:
        return {"content": None, "tool_calls": [{"name": forced, "arguments": '{"city": "Seoul"}'}]}
    if request["messages"][-1]["role"] == "tool" and (request.get("response_format") or {}).get("type") == "json_schema":
        output = request["messages"][-1]["content"].strip()
        return {"content": json.dumps({"answer": int(output), "explanation": "from the code"}), "tool_calls": []}
    if request["messages"][-1]["role"] == "tool" and names and "code_interpreter" not in names:
        return {"content": f"It is {request['messages'][-1]['content']}.", "tool_calls": []}
    return math_tutor_script(request)


@pytest.fixture(scope="module")
def model():
    with FakeModel(obedient) as fake:
        yield fake


@pytest.fixture(scope="module")
def client(model, tmp_path_factory):
    from tutor_nb.runtime import start

    with start(backend="chat", model_base_url=model.base_url, data_dir=tmp_path_factory.mktemp("params")) as rt:
        yield rt.client(max_retries=0)


@pytest.fixture(scope="module")
def coder(client):
    return client.beta.assistants.create(model="tutor-model", instructions="Use code for math.",
                                         tools=[{"type": "code_interpreter"}, WEATHER])


def run_and_read(client, model, assistant, question: str, *, thread_id: str | None = None, **params):
    """Run ``question`` to a stop; returns the run and the request bodies the model received for it."""
    if thread_id is None:
        thread_id = client.beta.threads.create().id
    client.beta.threads.messages.create(thread_id=thread_id, role="user", content=question)
    before = len(model.requests)
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=assistant.id,
                                                   poll_interval_ms=20, **params)
    return run, model.requests[before:]


def submit(client, run, output: str = "sunny"):
    calls = run.required_action.submit_tool_outputs.tool_calls
    return client.beta.threads.runs.submit_tool_outputs_and_poll(
        thread_id=run.thread_id, run_id=run.id, poll_interval_ms=20,
        tool_outputs=[{"tool_call_id": c.id, "output": output} for c in calls])


def test_a_forced_function_is_sent_on_the_first_call_only_and_pauses_the_run(client, model, coder):
    forced = {"type": "function", "function": {"name": "get_weather"}}
    run, sent = run_and_read(client, model, coder, "What is 2 + 2?", tool_choice=forced)
    assert [r.get("tool_choice") for r in sent] == [forced]
    assert run.status == "requires_action", run.last_error
    assert run.required_action.submit_tool_outputs.tool_calls[0].function.name == "get_weather"
    before = len(model.requests)
    run = submit(client, run)
    assert run.status == "completed", run.last_error
    assert [r.get("tool_choice", "auto") for r in model.requests[before:]] == ["auto"]  # then the model decides


def test_required_forces_some_tool_once(client, model):
    weatherman = client.beta.assistants.create(model="tutor-model", tools=[WEATHER])
    run, sent = run_and_read(client, model, weatherman, "Hello there", tool_choice="required")
    assert sent[0]["tool_choice"] == "required"
    assert run.status == "requires_action", run.last_error
    before = len(model.requests)
    run = submit(client, run)
    assert run.status == "completed", run.last_error
    assert [r.get("tool_choice", "auto") for r in model.requests[before:]] == ["auto"]


def test_a_forced_code_interpreter_is_a_forced_function_named_code_interpreter(client, model, coder):
    run, sent = run_and_read(client, model, coder, "What is 6 * 7?", tool_choice={"type": "code_interpreter"})
    assert run.status == "completed", run.last_error
    assert sent[0]["tool_choice"] == {"type": "function", "function": {"name": "code_interpreter"}}
    assert [r.get("tool_choice", "auto") for r in sent[1:]] == ["auto"]  # a run that cannot loop
    assert run.tool_choice.type == "code_interpreter"  # and the run still says what was asked


def test_none_sends_no_tools(client, model, coder):
    run, sent = run_and_read(client, model, coder, "What is 8 + 8?", tool_choice="none")
    assert run.status == "completed", run.last_error
    assert "tools" not in sent[0] and "tool_choice" not in sent[0]


def test_parallel_tool_calls_false_is_sent(client, model, coder):
    run, sent = run_and_read(client, model, coder, "What is 5 * 5?", parallel_tool_calls=False)
    assert run.status == "completed" and run.parallel_tool_calls is False
    assert all(r["parallel_tool_calls"] is False for r in sent)
    run, sent = run_and_read(client, model, coder, "What is 5 * 6?")
    assert all("parallel_tool_calls" not in r for r in sent)  # the default is the server's default


def test_sampling_and_completion_budget_are_sent(client, model, coder):
    run, sent = run_and_read(client, model, coder, "What is 9 * 9?", temperature=0.2, top_p=0.5,
                             max_completion_tokens=1000)
    assert run.status == "completed", run.last_error
    assert (sent[0]["temperature"], sent[0]["top_p"], sent[0]["max_completion_tokens"]) == (0.2, 0.5, 1000)
    # the budget is the run's: the second call may only use what the first one left
    steps = client.beta.threads.runs.steps.list(thread_id=run.thread_id, run_id=run.id, order="asc").data
    assert sent[1]["max_completion_tokens"] == 1000 - steps[0].usage.completion_tokens


def test_completion_budget_spent_ends_the_run_incomplete(tmp_path):
    from tutor_nb.runtime import start

    def wordy(request):
        reply = math_tutor_script(request)
        reply["usage"] = {"prompt_tokens": 50, "completion_tokens": 300}
        return reply

    with FakeModel(wordy) as fake, start(backend="chat", model_base_url=fake.base_url, data_dir=tmp_path) as rt:
        client = rt.client(max_retries=0)
        assistant = client.beta.assistants.create(model="m", tools=[{"type": "code_interpreter"}])
        run = client.beta.threads.create_and_run_poll(
            assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "What is 1 + 1?"}]},
            max_completion_tokens=256, poll_interval_ms=20)
    assert run.status == "incomplete"
    assert run.incomplete_details.reason == "max_completion_tokens"
    assert len(fake.requests) == 1  # nothing left for a second call


@pytest.mark.parametrize("kind", ["json_object", "json_schema"])
def test_response_format_reaches_the_model_and_the_run_echoes_it_as_sent(client, model, kind):
    fmt = ({"type": "json_object"} if kind == "json_object" else
           {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA, "strict": True}})
    assistant = client.beta.assistants.create(model="tutor-model", tools=[{"type": "code_interpreter"}],
                                              instructions="Answer in JSON.", response_format=fmt)
    run, sent = run_and_read(client, model, assistant, "What is 12 * 12?")
    assert run.status == "completed", run.last_error
    assert all(r["response_format"] == fmt for r in sent)
    raw = client.beta.threads.runs.with_raw_response.retrieve(thread_id=run.thread_id, run_id=run.id).http_response
    assert raw.json()["response_format"] == fmt  # "schema", not "schema_"
    if kind == "json_schema":
        assert run.response_format.json_schema.schema_ == ANSWER_SCHEMA
        answer = client.beta.threads.messages.list(thread_id=run.thread_id).data[0].content[0].text.value
        assert json.loads(answer) == {"answer": 144, "explanation": "from the code"}
    stored = client.beta.assistants.with_raw_response.retrieve(assistant.id).http_response.json()
    assert stored["response_format"] == fmt


def test_run_response_format_overrides_the_assistants(client, model, coder):
    run, sent = run_and_read(client, model, coder, "What is 7 + 7?", response_format={"type": "json_object"})
    assert run.status == "completed", run.last_error
    assert sent[0]["response_format"] == {"type": "json_object"}
    run, sent = run_and_read(client, model, coder, "What is 7 + 8?")
    assert "response_format" not in sent[0]  # "auto" is the server's default


def spoken(body: dict) -> list[tuple[str, str]]:
    return [(m["role"], m["content"]) for m in body["messages"] if m["role"] in ("user", "assistant") and m.get("content")]


def history(client, model, coder, questions: list[str]) -> str:
    thread = client.beta.threads.create()
    for question in questions:
        run, _ = run_and_read(client, model, coder, question, thread_id=thread.id)
        assert run.status == "completed", run.last_error
    return thread.id


def test_truncation_to_the_last_message_sends_only_it(client, model, coder):
    thread_id = history(client, model, coder, ["What is 1 + 2?", "What is 2 + 3?"])
    run, sent = run_and_read(client, model, coder, "What is 3 + 4?", thread_id=thread_id,
                             truncation_strategy={"type": "last_messages", "last_messages": 1})
    assert run.status == "completed", run.last_error
    assert run.truncation_strategy.type == "last_messages" and run.truncation_strategy.last_messages == 1
    first = sent[0]["messages"]
    assert [m["role"] for m in first] == ["system", "user"] and first[-1]["content"] == "What is 3 + 4?"
    # the run's own tool call and its result are never cut away
    assert [m["role"] for m in sent[1]["messages"]] == ["system", "user", "assistant", "tool"]


def test_last_messages_counts_thread_messages_and_keeps_their_tool_calls(client, model, coder):
    thread_id = history(client, model, coder, ["What is 10 + 1?", "What is 10 + 2?"])
    run, sent = run_and_read(client, model, coder, "What is 10 + 3?", thread_id=thread_id,
                             truncation_strategy={"type": "last_messages", "last_messages": 2})
    assert run.status == "completed", run.last_error
    first = sent[0]["messages"]
    # the last two messages are the previous answer and the new question: what came before them is left out
    assert spoken(sent[0]) == [("assistant", "Running the code gives:\n\n12\n"), ("user", "What is 10 + 3?")]
    assert_pairs_whole(first)


def assert_pairs_whole(messages: list[dict]) -> None:
    """Every tool result follows the assistant message that called it, and every call has its result."""
    open_calls: set[str] = set()
    for message in messages:
        if message["role"] == "assistant":
            assert not open_calls, f"tool calls without results: {open_calls}"
            open_calls = {c["id"] for c in message.get("tool_calls") or []}
        elif message["role"] == "tool":
            assert message["tool_call_id"] in open_calls, f"a tool result without its call: {message}"
            open_calls.discard(message["tool_call_id"])
        else:
            assert not open_calls, f"tool calls without results: {open_calls}"
    assert not open_calls


def test_max_prompt_tokens_trims_oldest_first_and_never_splits_a_tool_call(client, model, coder):
    padding = " and".join(f" item {n}" for n in range(120))  # ~250 tokens a question
    questions = [f"What is {n} + {n}? Ignore this list:{padding}" for n in range(1, 7)]
    thread_id = history(client, model, coder, questions)
    run, full = run_and_read(client, model, coder, "What is 100 + 1?", thread_id=thread_id)
    assert len(spoken(full[0])) == 13  # nothing trimmed without a limit
    run, sent = run_and_read(client, model, coder, "What is 100 + 2?", thread_id=thread_id, max_prompt_tokens=800)
    assert run.status == "completed", run.last_error
    for body in sent:
        kept = body["messages"]
        assert kept[0]["role"] == "system" and kept[-1]["role"] in ("user", "tool")
        assert len(json.dumps(kept)) // 4 <= 800 * 1.25  # near the budget by any fair count
        assert_pairs_whole(kept)
    said = spoken(sent[0])
    assert said[-1] == ("user", "What is 100 + 2?")
    assert 1 < len(said) < 15
    every = spoken(full[0]) + [("assistant", "Running the code gives:\n\n101\n"), ("user", "What is 100 + 2?")]
    assert said == every[-len(said):]  # the newest messages, in order: the oldest went first


def test_a_run_on_a_600_message_thread(client, model, coder):
    messages = [{"role": "user" if n % 2 == 0 else "assistant", "content": f"Message {n}: the number {n * 7}."}
                for n in range(600)]
    thread = client.beta.threads.create(messages=messages[:300])
    for message in messages[300:]:
        client.beta.threads.messages.create(thread_id=thread.id, **message)
    run, sent = run_and_read(client, model, coder, "What is 600 + 1?", thread_id=thread.id)
    assert run.status == "completed", run.last_error
    assert len(spoken(sent[0])) == 601
    run, sent = run_and_read(client, model, coder, "What is 600 + 2?", thread_id=thread.id,
                             truncation_strategy={"type": "last_messages", "last_messages": 3})
    assert run.status == "completed", run.last_error
    assert [text for _, text in spoken(sent[0])] == ["What is 600 + 1?", "Running the code gives:\n\n601\n",
                                                    "What is 600 + 2?"]


def test_tool_choice_naming_a_function_the_run_lacks_is_refused(client, coder):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError) as caught:
        client.beta.threads.runs.create(thread_id=thread.id, assistant_id=coder.id,
                                        tool_choice={"type": "function", "function": {"name": "no_such_tool"}})
    assert "no_such_tool" in caught.value.message and caught.value.body["param"] == "tool_choice"


# -- the same options on the Responses API ------------------------------------------------------------

WEATHER_FN = {"type": "function", "name": "get_weather", "description": "Today's weather in a city.",
              "parameters": WEATHER["function"]["parameters"], "strict": False}
CODE = {"type": "code_interpreter", "container": {"type": "auto"}}


def respond(client, model, **params):
    before = len(model.requests)
    response = client.responses.create(model="tutor-model", **params)
    return response, model.requests[before:]


def test_responses_forced_function_on_the_first_call_only(client, model):
    forced = {"type": "function", "name": "get_weather"}
    response, sent = respond(client, model, input="What is 2 + 2?", tools=[CODE, WEATHER_FN], tool_choice=forced)
    assert sent[0]["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}
    assert [item.type for item in response.output] == ["function_call"]
    call = response.output[0]
    response, sent = respond(client, model, previous_response_id=response.id, tools=[CODE, WEATHER_FN],
                             tool_choice=forced, input=[{"type": "function_call_output", "call_id": call.call_id,
                                                         "output": "sunny"}])
    assert response.status == "completed", response.error
    assert sent[0]["tool_choice"] == {"type": "function", "function": {"name": "get_weather"}}  # a new response: forced again
    assert [r.get("tool_choice", "auto") for r in sent[1:]] == ["auto"] * (len(sent) - 1)


def test_responses_forced_code_interpreter_and_parallel_tool_calls(client, model):
    response, sent = respond(client, model, input="What is 6 * 7?", tools=[CODE], tool_choice={"type": "code_interpreter"},
                             parallel_tool_calls=False)
    assert response.status == "completed", response.error
    assert sent[0]["tool_choice"] == {"type": "function", "function": {"name": "code_interpreter"}}
    assert all(r["parallel_tool_calls"] is False for r in sent)
    assert [r.get("tool_choice", "auto") for r in sent[1:]] == ["auto"]


def test_responses_text_format_json_schema_reaches_the_model_and_is_echoed(client, model):
    fmt = {"type": "json_schema", "name": "answer", "schema": ANSWER_SCHEMA, "strict": True}
    response, sent = respond(client, model, input="What is 12 * 12?", tools=[CODE], text={"format": fmt})
    assert response.status == "completed", response.error
    assert all(r["response_format"] == {"type": "json_schema", "json_schema": {"name": "answer", "schema": ANSWER_SCHEMA,
                                                                                 "strict": True}} for r in sent)
    assert json.loads(response.output_text) == {"answer": 144, "explanation": "from the code"}
    raw = client.responses.with_raw_response.retrieve(response.id).http_response.json()
    assert raw["text"]["format"] == fmt


def test_responses_json_object_and_sampling(client, model):
    response, sent = respond(client, model, input="What is 3 * 3?", tools=[CODE], text={"format": {"type": "json_object"}},
                             temperature=0.3, top_p=0.9, max_output_tokens=2000)
    assert response.status == "completed", response.error
    assert sent[0]["response_format"] == {"type": "json_object"}
    assert (sent[0]["temperature"], sent[0]["top_p"], sent[0]["max_completion_tokens"]) == (0.3, 0.9, 2000)
    assert sent[1]["max_completion_tokens"] < 2000
