"""Fuzz the Responses API face with schemathesis against OpenAI's own description (responses.openapi.yaml).

Every operation of the vendored description that the runtime serves (``/responses``, ``/conversations``,
``/containers`` and what lies under them) is fuzzed: requests valid and invalid are sent over HTTP to a
real runtime on replay, and two things are checked: no answer is a server error, and every answer
matches the response schema OpenAI documented. Which operations are served is read from the app's own
routes, so an endpoint is fuzzed from the moment it exists. Path ids are drawn mostly from objects made
beforehand through the ``openai`` SDK, so requests reach the handlers instead of stopping at 404.

Left out, where the description is not an API the SDK calls:

* the ``...?beta=true`` paths: the same operations again, spelled with a query string inside the path.

Corrected, where the description disagrees with what OpenAI's API and SDK did (the SDK wins), or is not
a valid schema:

* ``first_id`` / ``last_id`` of an empty list: null, as OpenAI sent them and the SDK's pages type them.
* The 404 of ``DELETE /responses/{id}`` and ``POST .../cancel`` is described as a bare ``Error``; OpenAI
  sent (and the SDK reads) the ``{"error": ...}`` envelope, ``ErrorResponse``.
* ``type`` discriminators without a mapping name no schema (``message`` is not a schema's name, and input
  and output messages share it), so they are dropped and their ``oneOf`` read as ``anyOf``.
* ``required`` lists that name a property twice (``ContainerResource``) are not valid JSON Schema: each
  name is kept once.
"""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any, Iterator

import httpx
import openai
import pytest

from conftest import data_path
from reliability import read_store
from test_schemathesis import fuzz

SPEC = Path(__file__).resolve().parent / "spec" / "responses.openapi.yaml"  # vendored, with its MIT licence
EXAMPLES = 15  # per operation and phase
METHODS = ("get", "post", "delete", "put", "patch")
CODE_TOOL = {"type": "code_interpreter", "container": {"type": "auto"}}

def as_openai_sent(spec: dict[str, Any]) -> dict[str, Any]:
    """The documented corrections (see the module's docstring), made in place; the spec is returned."""
    def walk(node: Any) -> None:
        if isinstance(node, dict):
            if isinstance(node.get("required"), list):
                node["required"] = list(dict.fromkeys(node["required"]))
            if "mapping" not in node.get("discriminator", {"mapping": None}):
                del node["discriminator"]
                if "oneOf" in node:
                    node["anyOf"] = node.pop("oneOf")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    walk(spec)
    for operations in spec["paths"].values():
        for operation in operations.values():
            for answer in (operation.get("responses") or {}).values() if isinstance(operation, dict) else ():
                schema = answer.get("content", {}).get("application/json", {}).get("schema", {})
                if schema.get("$ref") == "#/components/schemas/Error":
                    schema["$ref"] = "#/components/schemas/ErrorResponse"
    for schema in spec["components"]["schemas"].values():
        properties = schema.get("properties", {}) if isinstance(schema, dict) else {}
        if "data" in properties and "has_more" in properties:
            for field in ("first_id", "last_id"):
                if field in properties:
                    properties[field] = {"anyOf": [properties[field], {"type": "null"}]}
    return spec


def _shape(path: str) -> str:
    """A route's path with its parameters unnamed: ``/v1/responses/{id}`` -> ``/responses/{}``."""
    return re.sub(r"\{[^}]*\}", "{}", path.removeprefix("/v1"))


def _operations(routes: list[Any]) -> Iterator[tuple[str, str]]:
    """(path shape, method) of every route, looking into included routers."""
    for route in routes:
        included = getattr(route, "original_router", None)  # FastAPI's include_router, newer releases
        if included is not None:
            yield from _operations(included.routes)
        for method in getattr(route, "methods", None) or ():
            yield _shape(route.path), method.lower()


def served(spec: dict[str, Any], app: Any) -> dict[str, Any]:
    """The description cut down to the operations the app serves (method and path both)."""
    routes = set(_operations(app.routes))
    paths = {}
    for path, operations in spec["paths"].items():
        if "?" in path:
            continue
        kept = {m: op for m, op in operations.items() if m not in METHODS or (_shape(path), m) in routes}
        if any(m in METHODS for m in kept):
            paths[path] = kept
    return {**spec, "paths": paths}


def seed(client: Any, paths: dict[str, Any]) -> dict[str, list[str]]:
    """Objects for the fuzzer to aim at, for each family served: a few of each kind."""
    ids: dict[str, list[str]] = {}
    if "/responses/{response_id}" in paths:
        ids["response_id"] = []
        for _ in range(2):
            first = client.responses.create(model="gpt-4o", input="Set x to 21 and show it", tools=[CODE_TOOL])
            second = client.responses.create(model="gpt-4o", input="Double x", tools=[CODE_TOOL],
                                             previous_response_id=first.id)
            assert first.status == second.status == "completed", (first.error, second.error)
            ids["response_id"] += [first.id, second.id]
    if "/conversations/{conversation_id}" in paths:
        ids["conversation_id"], ids["item_id"] = [], []
        for n in range(3):
            conversation = client.conversations.create(
                metadata={"n": str(n)}, items=[{"type": "message", "role": "user", "content": "Say hello"}])
            ids["conversation_id"].append(conversation.id)
            ids["item_id"] += [item.id for item in client.conversations.items.list(conversation.id)]
    if "/containers/{container_id}" in paths:
        ids["container_id"], ids["file_id"] = [], []
        for n in range(3):
            container = client.containers.create(name=f"fuzz {n}")
            ids["container_id"].append(container.id)
            if "/containers/{container_id}/files" in paths:
                made = client.containers.files.create(container.id, file=(f"data{n}.csv", b"a,b\n1,2\n"))
                ids["file_id"].append(made.id)
    return {kind: values for kind, values in ids.items() if values}


@pytest.mark.slow
@pytest.mark.timeout(1500)
def test_fuzzed_responses_requests_get_no_server_error_and_match_openais_schemas(tmp_path, fault_report):
    pytest.importorskip("schemathesis")
    yaml = pytest.importorskip("yaml")
    from tutor_nb.runtime import start

    rt = start(backend="replay", data_dir=tmp_path / "data", cassettes=[data_path("cassettes")], exec_timeout=10)
    try:
        spec = served(as_openai_sent(yaml.safe_load(SPEC.read_text(encoding="utf-8"))), rt._server.app)
        operations = sum(m in METHODS for ops in spec["paths"].values() for m in ops)
        if not operations:
            pytest.skip("the runtime serves none of responses.openapi.yaml's operations yet")
        (tmp_path / "responses.openapi.json").write_text(json.dumps(spec), encoding="utf-8")
        ids = seed(rt.client(max_retries=0), spec["paths"])
        # one worker: hypothesis parses lambdas' source with ast.parse, which races between threads on
        # CPython 3.11 ("AST constructor recursion depth mismatch")
        done = fuzz(rt, tmp_path / "responses.openapi.json", ids, seed=12, examples=EXAMPLES, workers=1,
                    timeout=1200)
    finally:
        rt.stop()
    integrity, stored = read_store(tmp_path / "data")
    out = done.stdout + done.stderr
    (tmp_path / "schemathesis.out").write_text(out, encoding="utf-8")  # the whole report, for a failure
    assert done.returncode == 0, out[-12000:]
    generated = re.search(r"(\d+) generated", out)
    tested = re.search(r"Tested: (\d+)", out)
    assert generated is not None and tested is not None, out[-3000:]
    assert int(tested.group(1)) == operations, out[-3000:]
    assert integrity == "ok"
    fault_report("schemathesis fuzzing of the Responses API against OpenAI's API description",
                 trials=int(generated.group(1)),
                 outcome=f"{generated.group(1)} generated requests on {operations} operations (every one served "
                         "under /responses, /conversations and /containers): 0 server errors, 0 response-schema "
                         "violations",
                 nothing_lost=f"integrity_check ok; all {len(stored)} stored rows parse as the SDK's types")


# -- what the fuzzing found, pinned as quick tests through the SDK ------------------------------------


def auth(runtime: Any) -> dict[str, str]:
    return {"Authorization": f"Bearer {runtime.settings.token}"}


def test_a_function_call_output_without_its_call_id_is_a_400_not_a_crash(client):
    with pytest.raises(openai.BadRequestError, match="call_id") as refused:
        client.post("/conversations", body={"items": [{"type": "function_call_output", "output": ""}]}, cast_to=object)
    assert refused.value.body["param"] == "call_id"


def test_a_null_parallel_tool_calls_means_the_default(client):
    made = client.post("/responses", body={"model": "gpt-4o", "input": "Say hello", "parallel_tool_calls": None},
                       cast_to=openai.types.responses.Response)
    assert made.status == "completed" and made.parallel_tool_calls is True


def test_a_stream_resumed_before_its_start_replays_every_event(client, runtime):
    made = client.responses.create(model="gpt-4o", input="Say hello", background=True)
    while client.responses.retrieve(made.id).status in ("queued", "in_progress"):
        time.sleep(0.05)
    sequences = {}
    for after in (-1, -6299):
        url = f"{runtime.base_url}/responses/{made.id}?stream=true&starting_after={after}"
        with httpx.stream("GET", url, headers=auth(runtime), timeout=30) as answer:
            events = [json.loads(line[6:]) for line in answer.iter_lines() if line.startswith("data: ")]
        sequences[after] = [event["sequence_number"] for event in events]
        assert events[-1]["type"] == "response.completed"
    assert sequences[-6299] == sequences[-1] == list(range(len(sequences[-1])))


def test_null_fields_are_sent_as_openais_schema_has_them(client, runtime):
    made = client.responses.create(model="gpt-4o", input="Set x to 21 and show it", tools=[CODE_TOOL])
    wire = httpx.get(f"{runtime.base_url}/responses/{made.id}", headers=auth(runtime)).json()
    call = next(item for item in wire["output"] if item["type"] == "code_interpreter_call")
    assert "user" not in wire and "prompt_cache_options" not in wire, "left out, not null (typed non-nullable)"
    container = httpx.get(f"{runtime.base_url}/containers/{call['container_id']}",
                          headers=auth(runtime)).json()
    assert container["status"] == "running" and "network_policy" not in container
