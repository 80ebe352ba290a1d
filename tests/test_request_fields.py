"""Fields OpenAI did not know get a 400 naming them, on every endpoint, as OpenAI answered; v1 names say
what replaced them. Through the official SDK (``extra_body`` is how a client sends what the SDK lacks)."""

from __future__ import annotations

import openai
import pytest

WEATHER = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}


@pytest.fixture(scope="module")
def made(client):
    """One of everything, for the endpoints that modify or use them."""
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}, WEATHER])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "What is the weather in Seoul?"}])
    message = client.beta.threads.messages.list(thread_id=thread.id).data[0]
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=20)
    assert run.status == "requires_action", run.last_error
    return {"assistant": assistant, "thread": thread, "message": message, "run": run}


def refused(call) -> openai.BadRequestError:
    with pytest.raises(openai.BadRequestError) as caught:
        call()
    return caught.value


ENDPOINTS = {
    "assistants.create": lambda c, m, x: c.beta.assistants.create(model="gpt-4o", extra_body=x),
    "assistants.update": lambda c, m, x: c.beta.assistants.update(m["assistant"].id, extra_body=x),
    "threads.create": lambda c, m, x: c.beta.threads.create(extra_body=x),
    "threads.update": lambda c, m, x: c.beta.threads.update(m["thread"].id, extra_body=x),
    "messages.create": lambda c, m, x: c.beta.threads.messages.create(thread_id=m["thread"].id, role="user",
                                                                      content="hi", extra_body=x),
    "messages.update": lambda c, m, x: c.beta.threads.messages.update(m["message"].id, thread_id=m["thread"].id,
                                                                      extra_body=x),
    "runs.create": lambda c, m, x: c.beta.threads.runs.create(thread_id=m["thread"].id,
                                                              assistant_id=m["assistant"].id, extra_body=x),
    "runs.update": lambda c, m, x: c.beta.threads.runs.update(m["run"].id, thread_id=m["thread"].id, extra_body=x),
    "threads.create_and_run": lambda c, m, x: c.beta.threads.create_and_run(assistant_id=m["assistant"].id,
                                                                            extra_body=x),
    "runs.submit_tool_outputs": lambda c, m, x: c.beta.threads.runs.submit_tool_outputs(
        m["run"].id, thread_id=m["thread"].id, tool_outputs=[], extra_body=x),
}


@pytest.mark.parametrize("endpoint", ENDPOINTS)
def test_an_unknown_field_is_refused_by_name_on_every_endpoint(client, made, endpoint):
    error = refused(lambda: ENDPOINTS[endpoint](client, made, {"temprature": 0.5}))
    assert error.status_code == 400
    assert error.body["message"] == "Unrecognized request argument supplied: temprature."
    assert error.body["param"] == "temprature" and error.body["code"] == "unknown_parameter"


def test_the_run_that_was_refused_a_field_is_still_waiting(client, made):
    run = client.beta.threads.runs.retrieve(made["run"].id, thread_id=made["thread"].id)
    assert run.status == "requires_action"  # nothing of a refused request was applied


def test_v1_file_ids_on_an_assistant_says_tool_resources_replaced_it(client):
    error = refused(lambda: client.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}],
                                                          extra_body={"file_ids": ["file-abc"]}))
    assert error.body["message"].startswith("Unrecognized request argument supplied: file_ids.")
    assert "v1 Assistants API" in error.body["message"] and "tool_resources" in error.body["message"]


@pytest.mark.parametrize("where", ["message", "thread.messages", "additional_messages"])
def test_v1_file_ids_on_a_message_says_attachments_replaced_it(client, made, where):
    old = {"role": "user", "content": "Sum the column", "file_ids": ["file-abc"]}
    calls = {
        "message": lambda: client.beta.threads.messages.create(thread_id=made["thread"].id, role="user",
                                                               content="Sum the column", extra_body={"file_ids": ["f"]}),
        "thread.messages": lambda: client.beta.threads.create(messages=[old]),  # type: ignore[list-item]
        "additional_messages": lambda: client.beta.threads.create_and_run(
            assistant_id=made["assistant"].id, thread={"messages": [old]}),  # type: ignore[list-item]
    }
    error = refused(calls[where])
    assert "file_ids" in error.body["param"] and "attachments" in error.body["message"] and "v1" in error.body["message"]


def test_the_v1_retrieval_tool_says_file_search_replaced_it(client):
    error = refused(lambda: client.beta.assistants.create(model="gpt-4o", tools=[{"type": "retrieval"}]))  # type: ignore[list-item]
    assert error.body["param"] == "tools.0.type"
    assert "'retrieval'" in error.body["message"] and "file_search" in error.body["message"]


@pytest.mark.parametrize(("body", "param"), [
    ({"tools": [{"type": "code_interpreter", "files": []}]}, "tools.0.files"),
    ({"tools": [{"type": "function", "function": {"name": "f", "paramters": {}}}]}, "tools.0.function.paramters"),
    ({"tool_resources": {"code_interpreter": {"file_id": "f"}}}, "tool_resources.code_interpreter.file_id"),
    ({"response_format": {"type": "json_schema", "json_schema": {"name": "n", "schemas": {}}}},
     "response_format.json_schema.schemas"),
])
def test_a_misspelled_nested_field_is_named_with_its_path(client, body, param):
    error = refused(lambda: client.beta.assistants.create(model="gpt-4o", extra_body=body))
    assert error.body["param"] == param and error.body["message"] == f"Unknown parameter: '{param}'."


def test_free_form_values_are_not_checked_for_fields(client):
    schema = {"type": "object", "properties": {"x": {"type": "number", "minimum": 0}}, "x-anything": True}
    assistant = client.beta.assistants.create(
        model="gpt-4o", metadata={"any key": "any value"},
        tools=[{"type": "function", "function": {"name": "f", "parameters": schema, "strict": False}}],
        response_format={"type": "json_schema", "json_schema": {"name": "n", "schema": schema}},
    )
    assert assistant.tools[0].function.parameters == schema


def test_responses_refuse_unknown_fields_at_every_depth(client):
    error = refused(lambda: client.responses.create(model="gpt-4o", input="hi", extra_body={"temprature": 1}))
    assert error.body["message"] == "Unrecognized request argument supplied: temprature."
    error = refused(lambda: client.responses.create(
        model="gpt-4o", input=[{"role": "user", "content": "hi", "attachments": []}]))  # type: ignore[typeddict-unknown-key]
    assert error.body["param"] == "input.0.attachments"
    error = refused(lambda: client.responses.create(
        model="gpt-4o", input="hi", text={"format": {"type": "json_schema", "name": "n", "schema": {}, "strictly": True}}))  # type: ignore[typeddict-unknown-key]
    assert error.body["param"] == "text.format.strictly"
