"""The runtime on the ``chat`` backend, against a stand-in Chat Completions server."""

from __future__ import annotations

import ast
import json

import pytest

from conftest import FIB_NUMBERS, FIB_PROMPT, TUTOR_INSTRUCTIONS
from tests.fakemodel import FakeModel


@pytest.fixture(scope="module")
def model():
    with FakeModel() as fake:
        yield fake


@pytest.fixture(scope="module")
def chat_client(model, tmp_path_factory):
    from tutor_nb.runtime import start

    with start(backend="chat", model_base_url=model.base_url, data_dir=tmp_path_factory.mktemp("chat")) as rt:
        yield rt.client(max_retries=0)


@pytest.fixture(scope="module")
def chat_tutor(chat_client):
    return chat_client.beta.assistants.create(
        instructions=TUTOR_INSTRUCTIONS, model="tutor-model", tools=[{"type": "code_interpreter"}]
    )


def test_walkthrough_on_chat_backend(chat_client, chat_tutor, model):
    thread = chat_client.beta.threads.create()
    chat_client.beta.threads.messages.create(thread_id=thread.id, role="user", content=FIB_PROMPT)
    run = chat_client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=chat_tutor.id)
    assert run.status == "completed", run.last_error
    steps = chat_client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id, order="asc").data
    assert [s.type for s in steps] == ["tool_calls", "message_creation"]
    logs = steps[0].step_details.tool_calls[0].code_interpreter.outputs[0].logs
    assert ast.literal_eval(logs) == FIB_NUMBERS
    answer = chat_client.beta.threads.messages.list(thread_id=thread.id).data[0].content[0].text.value
    assert "4181" in answer

    first, second = model.requests[-2:]
    assert first["model"] == "tutor-model" and first["stream"] is True
    assert first["messages"][0] == {"role": "system", "content": TUTOR_INSTRUCTIONS}
    assert first["messages"][-1]["content"] == FIB_PROMPT
    assert [t["function"]["name"] for t in first["tools"]] == ["code_interpreter"]
    # the second call carries the tool call and its result, paired by id
    call, result = second["messages"][-2:]
    assert call["tool_calls"][0]["id"] == result["tool_call_id"]
    assert "4181" in result["content"]
    assert json.loads(call["tool_calls"][0]["function"]["arguments"])["code"] == steps[0].step_details.tool_calls[0].code_interpreter.input
    assert run.usage.prompt_tokens > 0 and run.usage.completion_tokens > 0


def test_streaming_on_chat_backend(chat_client, chat_tutor):
    thread = chat_client.beta.threads.create()
    chat_client.beta.threads.messages.create(thread_id=thread.id, role="user", content="Use code to find 12 * 12")
    code, text = [], []
    with chat_client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=chat_tutor.id) as stream:
        for event in stream:
            if event.event == "thread.run.step.delta":
                for call in event.data.delta.step_details.tool_calls or []:
                    if call.code_interpreter and call.code_interpreter.input:
                        code.append(call.code_interpreter.input)
            elif event.event == "thread.message.delta":
                text += [c.text.value for c in event.data.delta.content if c.type == "text" and c.text.value]
        final = stream.get_final_run()
    assert final.status == "completed"
    assert "".join(code) == "12 * 12"
    assert "144" in "".join(text)


def test_history_reaches_the_model_on_a_second_run(chat_client, chat_tutor, model):
    thread = chat_client.beta.threads.create()
    for question in ("Use code to find 2 + 3", "Use code to find 10 * 10"):
        chat_client.beta.threads.messages.create(thread_id=thread.id, role="user", content=question)
        run = chat_client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=chat_tutor.id)
        assert run.status == "completed"
    roles = [m["role"] for m in model.requests[-1]["messages"]]
    assert roles == ["system", "user", "assistant", "tool", "assistant", "user", "assistant", "tool"]


def test_upstream_error_fails_the_run_with_a_clear_reason(tmp_path):
    from tutor_nb.runtime import start

    def broken(request):
        return {"status": 500, "message": "the model server is on fire"}

    with FakeModel(broken) as fake, start(backend="chat", model_base_url=fake.base_url, data_dir=tmp_path) as rt:
        client = rt.client(max_retries=0)
        assistant = client.beta.assistants.create(model="m", tools=[{"type": "code_interpreter"}])
        run = client.beta.threads.create_and_run_poll(
            assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "hi"}]}
        )
    assert run.status == "failed" and run.failed_at
    assert run.last_error.code == "server_error"
    assert "500" in run.last_error.message or "server" in run.last_error.message.lower()


def test_function_tools_pause_for_outputs(tmp_path):
    from tutor_nb.runtime import start

    def weather(request):
        if request["messages"][-1]["role"] == "tool":
            return {"content": f"It is {request['messages'][-1]['content']} in Seoul.", "tool_calls": []}
        return {"content": None, "tool_calls": [{"name": "get_weather", "arguments": '{"city": "Seoul"}'}]}

    tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
    with FakeModel(weather) as fake, start(backend="chat", model_base_url=fake.base_url, data_dir=tmp_path) as rt:
        client = rt.client(max_retries=0)
        assistant = client.beta.assistants.create(model="m", tools=[tool])
        run = client.beta.threads.create_and_run_poll(
            assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "Weather?"}]}
        )
        assert run.status == "requires_action"
        call = run.required_action.submit_tool_outputs.tool_calls[0]
        assert call.function.name == "get_weather" and json.loads(call.function.arguments) == {"city": "Seoul"}
        run = client.beta.threads.runs.submit_tool_outputs_and_poll(
            thread_id=run.thread_id, run_id=run.id, tool_outputs=[{"tool_call_id": call.id, "output": "sunny"}]
        )
        assert run.status == "completed", run.last_error
        answer = client.beta.threads.messages.list(thread_id=run.thread_id).data[0].content[0].text.value
        assert answer == "It is sunny in Seoul."
        steps = client.beta.threads.runs.steps.list(thread_id=run.thread_id, run_id=run.id, order="asc").data
        assert steps[0].step_details.tool_calls[0].function.output == "sunny"
    assert len(fake.requests) == 2  # one call before the tool output, one after


def test_recorded_chat_turns_replay_offline(tmp_path):
    from tutor_nb.runtime import start

    cassette = tmp_path / "recorded.json"
    question = "Use code to find 7 * 6"

    def run_once(**settings):
        with start(data_dir=tmp_path / settings["backend"], **settings) as rt:
            client = rt.client(max_retries=0)
            assistant = client.beta.assistants.create(model="tutor-model", tools=[{"type": "code_interpreter"}])
            run = client.beta.threads.create_and_run_poll(
                assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": question}]}
            )
            assert run.status == "completed", run.last_error
            steps = client.beta.threads.runs.steps.list(thread_id=run.thread_id, run_id=run.id, order="asc").data
            answer = client.beta.threads.messages.list(thread_id=run.thread_id).data[0].content[0].text.value
            return steps[0].step_details.tool_calls[0].code_interpreter, answer

    with FakeModel() as fake:
        live_call, live_answer = run_once(backend="chat", model_base_url=fake.base_url, record=cassette)
    recorded = json.loads(cassette.read_text())
    assert recorded["source"].startswith("recorded from tutor-model on ")
    assert [t["turn"] for t in recorded["turns"]] == [0, 1]
    replay_call, replay_answer = run_once(backend="replay", cassettes=[cassette])
    assert replay_call.input == live_call.input == "7 * 6"
    assert replay_call.outputs[0].logs == live_call.outputs[0].logs
    assert replay_answer == live_answer and "42" in replay_answer


def test_each_run_sends_the_threads_history_without_deleted_messages(chat_client, chat_tutor, model):
    thread = chat_client.beta.threads.create()

    def ask(question: str) -> list[dict]:
        chat_client.beta.threads.messages.create(thread_id=thread.id, role="user", content=question)
        run = chat_client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=chat_tutor.id)
        assert run.status == "completed", run.last_error
        return model.requests[-1]["messages"]  # the call after the tool ran: the whole conversation

    ask("What is 6 * 7?")
    second = ask("What is 11 * 11?")
    spoken = [(m["role"], m.get("content")) for m in second if m["role"] in ("user", "assistant") and m.get("content")]
    assert spoken == [("user", "What is 6 * 7?"), ("assistant", "Running the code gives:\n\n42\n"),
                      ("user", "What is 11 * 11?")]
    assert [m["content"] for m in second if m["role"] == "tool"] == ["42\n", "121\n"]

    first_question = chat_client.beta.threads.messages.list(thread_id=thread.id, order="asc").data[0]
    chat_client.beta.threads.messages.delete(message_id=first_question.id, thread_id=thread.id)
    third = ask("What is 2 * 5?")
    users = [m["content"] for m in third if m["role"] == "user"]
    assert users == ["What is 11 * 11?", "What is 2 * 5?"]
    assert [m["content"] for m in third if m["role"] == "tool"] == ["42\n", "121\n", "10\n"]
