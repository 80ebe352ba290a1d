"""Every object the runtime returns, field by field, against OpenAI's API description and the SDK's types.

Answers are read raw (``with_raw_response``), as the wire has them: each is validated with the JSON Schema
of its component in the vendored description, must carry every property OpenAI sent, and must parse as
the SDK's type with nothing left over (a field the type does not know lands in ``model_extra``).
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from typing import Any

import pytest
from openai import BaseModel
from openai.types import FileObject
from openai.types.beta import Assistant, Thread
from openai.types.beta.threads import Message, Run
from openai.types.beta.threads.runs import RunStep

SPEC = Path(__file__).resolve().parent / "spec" / "assistants.openapi.yaml"
WEATHER = {"type": "function", "function": {"name": "get_weather", "description": "Weather in a city.",
                                            "parameters": {"type": "object", "properties": {"city": {"type": "string"}}}}}
#: component name and SDK type of each object kind
KINDS = {"assistant": ("AssistantObject", Assistant), "thread": ("ThreadObject", Thread),
         "thread.message": ("MessageObject", Message), "thread.run": ("RunObject", Run),
         "thread.run.step": ("RunStepObject", RunStep), "file": ("OpenAIFile", FileObject)}
#: properties OpenAI left out when null (the SDK reads a missing field as None)
UNSENT_WHEN_NULL = {"file": {"expires_at", "status_details"}}
#: fields OpenAI sent beyond its description's schemas, as the description's own streaming examples show: runs
#: carried ``tool_resources: {}`` (the SDK's Run keeps it as an extra), steps ``expires_at`` (the SDK declares it)
SENT_BEYOND = {"thread.run": {"tool_resources"}, "thread.run.step": {"expires_at"}}


@lru_cache(maxsize=1)
def registry() -> Any:
    import yaml
    from referencing import Registry, Resource
    from referencing.jsonschema import DRAFT202012

    spec = nullable_as_null(yaml.safe_load(SPEC.read_text(encoding="utf-8")))
    return spec, Registry().with_resource("urn:spec", Resource(spec, specification=DRAFT202012))


def nullable_as_null(schema: Any) -> Any:
    """OpenAPI 3.0's ``nullable: true`` (which the description still uses) as JSON Schema's ``null`` type."""
    if isinstance(schema, list):
        return [nullable_as_null(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    schema = {key: nullable_as_null(value) for key, value in schema.items()}
    if schema.pop("nullable", False) is True:
        return {"anyOf": [schema, {"type": "null"}]}
    return schema


def leftovers(model: BaseModel, path: str = "") -> list[str]:
    """Fields of ``model`` (and the models inside it) that its SDK type does not declare."""
    found = [f"{path}{key}" for key in (model.model_extra or {})]
    for name in type(model).model_fields:
        value = getattr(model, name)
        for item in value if isinstance(value, list) else [value]:
            if isinstance(item, BaseModel):
                found += leftovers(item, f"{path}{name}.")
    return found


def check(raw: dict[str, Any]) -> None:
    """One answer object: schema-valid, every property present, nothing the SDK type does not know."""
    from jsonschema import Draft202012Validator

    spec, reg = registry()
    component, sdk_type = KINDS[raw["object"]]
    schema = spec["components"]["schemas"][component]
    validator = Draft202012Validator({"$ref": f"urn:spec#/components/schemas/{component}"}, registry=reg)
    errors = sorted(validator.iter_errors(raw), key=lambda e: list(e.path))
    assert not errors, f"{raw['object']} {raw.get('id')}: " + "; ".join(
        f"{'.'.join(map(str, e.path))}: {e.message[:200]}" for e in errors[:5])
    beyond = SENT_BEYOND.get(raw["object"], set())
    expected = set(schema["properties"]) - UNSENT_WHEN_NULL.get(raw["object"], set())
    assert expected <= set(raw) - beyond <= set(schema["properties"]), (raw["object"], set(raw) ^ set(schema["properties"]))
    assert set(leftovers(sdk_type.model_validate(raw))) <= beyond, raw


def raw(call) -> Any:
    return call().http_response.json()


@pytest.fixture(scope="module")
def answers(client) -> list[dict[str, Any]]:
    """The raw answer of every kind of call the Assistants API has, through a whole function-calling run."""
    beta = client.beta.with_raw_response
    seen: list[dict[str, Any]] = []

    def keep(data: dict[str, Any]) -> dict[str, Any]:
        seen.extend(data["data"] if data.get("object") == "list" else [data])
        return data

    upload = keep(raw(lambda: client.files.with_raw_response.create(file=("numbers.csv", b"n\n1\n2\n"),
                                                                    purpose="assistants")))
    assistant = keep(raw(lambda: beta.assistants.create(
        model="gpt-4o", name="Shapes", tools=[{"type": "code_interpreter"}, WEATHER],
        tool_resources={"code_interpreter": {"file_ids": [upload["id"]]}}, metadata={"k": "v"},
        response_format={"type": "json_schema", "json_schema": {"name": "answer", "schema": {"type": "object"}}})))
    keep(raw(lambda: beta.assistants.update(assistant["id"], name="Shapes 2")))
    keep(raw(lambda: beta.assistants.retrieve(assistant["id"])))
    keep(raw(lambda: beta.assistants.list(limit=3)))
    thread = keep(raw(lambda: beta.threads.create(messages=[{"role": "user", "content": "What is the weather in Seoul?",
        "attachments": [{"file_id": upload["id"], "tools": [{"type": "code_interpreter"}]}]}])))
    keep(raw(lambda: beta.threads.update(thread["id"], metadata={"a": "b"})))
    run = keep(raw(lambda: beta.threads.runs.create(thread_id=thread["id"], assistant_id=assistant["id"],
                                                    tool_choice={"type": "function", "function": {"name": "get_weather"}},
                                                    truncation_strategy={"type": "last_messages", "last_messages": 5})))
    waiting = client.beta.threads.runs.poll(run["id"], thread_id=thread["id"], poll_interval_ms=20)
    assert waiting.status == "requires_action", waiting.last_error
    keep(raw(lambda: beta.threads.runs.retrieve(run["id"], thread_id=thread["id"])))
    call = waiting.required_action.submit_tool_outputs.tool_calls[0]
    keep(raw(lambda: beta.threads.runs.submit_tool_outputs(run["id"], thread_id=thread["id"],
                                                           tool_outputs=[{"tool_call_id": call.id, "output": "sunny"}])))
    client.beta.threads.runs.poll(run["id"], thread_id=thread["id"], poll_interval_ms=20)
    keep(raw(lambda: beta.threads.runs.list(thread_id=thread["id"])))
    keep(raw(lambda: beta.threads.runs.steps.list(run["id"], thread_id=thread["id"])))
    keep(raw(lambda: beta.threads.messages.list(thread_id=thread["id"])))
    second = keep(raw(lambda: beta.threads.create_and_run(assistant_id=assistant["id"],
                                                          thread={"messages": [{"role": "user", "content": "Say hello"}]})))
    client.beta.threads.runs.poll(second["id"], thread_id=second["thread_id"], poll_interval_ms=20)
    keep(raw(lambda: beta.threads.runs.steps.list(second["id"], thread_id=second["thread_id"])))
    keep(raw(lambda: beta.threads.runs.retrieve(second["id"], thread_id=second["thread_id"])))
    keep(raw(lambda: client.files.with_raw_response.retrieve(upload["id"])))
    return seen


def test_every_answer_matches_the_description_and_the_sdk_field_by_field(answers):
    kinds = {a["object"] for a in answers}
    assert kinds == set(KINDS), kinds
    assert {a["status"] for a in answers if a["object"] == "thread.run"} >= {"queued", "requires_action", "completed"}
    for answer in answers:
        check(answer)


def test_submit_tool_outputs_answers_queued_without_the_required_action(client):
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[WEATHER])
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "What is the weather in Seoul?"}]},
        poll_interval_ms=20)
    assert run.status == "requires_action"
    call = run.required_action.submit_tool_outputs.tool_calls[0]
    answer = raw(lambda: client.beta.threads.runs.with_raw_response.submit_tool_outputs(
        run.id, thread_id=run.thread_id, tool_outputs=[{"tool_call_id": call.id, "output": "sunny"}]))
    assert answer["status"] == "queued" and answer["required_action"] is None


def test_update_shows_the_code_interpreter_file_list_as_create_does(client):
    created = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    bare = client.beta.assistants.create(model="gpt-4o")
    assert raw(lambda: client.beta.assistants.with_raw_response.retrieve(bare.id))["tool_resources"] == {}
    updated = raw(lambda: client.beta.assistants.with_raw_response.update(bare.id, tools=[{"type": "code_interpreter"}]))
    assert updated["tool_resources"] == {"code_interpreter": {"file_ids": []}}
    assert created.tool_resources.model_dump(exclude_none=True) == {"code_interpreter": {"file_ids": []}}


def test_a_functions_strict_comes_back_false_when_not_given(client):
    assistant = raw(lambda: client.beta.assistants.with_raw_response.create(model="gpt-4o", tools=[WEATHER]))
    assert assistant["tools"][0]["function"]["strict"] is False
    strict = dict(WEATHER, function={**WEATHER["function"], "strict": True})
    again = raw(lambda: client.beta.assistants.with_raw_response.update(assistant["id"], tools=[strict]))
    assert again["tools"][0]["function"]["strict"] is True
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "Say hello"}])
    run = raw(lambda: client.beta.threads.runs.with_raw_response.create(thread_id=thread.id, assistant_id=assistant["id"],
                                                                        tools=[WEATHER]))
    assert run["tools"][0]["function"]["strict"] is False
    assert json.dumps(run["tools"][0]["function"]["parameters"]) == json.dumps(WEATHER["function"]["parameters"])
