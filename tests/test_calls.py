"""code_calls / last_code / CodeCall on run steps, Responses, and the same saved as JSON."""

from __future__ import annotations

import json

import openai
import pytest

import fixtures_steps as fx
from fixtures_steps import fake_api, ipython_shell  # noqa: F401 (fixtures)
from tutor_nb import CodeCall, NoCodeCallsError, code_calls, last_code


def check_fib_call(call: CodeCall, status: str | None = "completed") -> None:
    assert call.code == fx.FIB_CODE
    assert call.logs == fx.FIB_LOGS
    assert call.outputs == [{"type": "logs", "logs": fx.FIB_LOGS}]
    assert call.status == status


def test_page_of_run_steps_gives_the_fibonacci_call():
    calls = code_calls(fx.steps_page())
    assert len(calls) == 1
    call = calls[0]
    check_fib_call(call)
    assert call.source == "assistants"
    assert call.ids == {"id": fx.IDS["call"], "step_id": fx.IDS["code_step"],
                        "run_id": fx.IDS["run"], "thread_id": fx.IDS["thread"]}


def test_page_from_a_real_client_over_http(fake_api):
    client = openai.OpenAI(base_url=fake_api.base_url, api_key="test-key-not-secret")
    page = client.beta.threads.runs.steps.list(
        thread_id=fx.IDS["thread"], run_id=fx.IDS["run"], order="asc")
    (call,) = code_calls(page)
    check_fib_call(call)
    assert last_code(page) == fx.FIB_CODE


@pytest.mark.parametrize(("make", "status"), [
    (lambda: fx.code_step(), "completed"),
    (lambda: [fx.code_step()], "completed"),
    (lambda: fx.steps_page().data, "completed"),
    (lambda: json.dumps(fx.STEPS_PAGE_JSON), "completed"),
    (lambda: json.loads(json.dumps(fx.STEPS_PAGE_JSON)), "completed"),
    (lambda: [fx.CODE_STEP_JSON, fx.MESSAGE_STEP_JSON], "completed"),
    (lambda: fx.code_step().step_details, None),  # without its step: no status, no step ids
    (lambda: fx.code_step().step_details.tool_calls[0], None),
], ids=["step", "list", "page-data", "json-text", "loaded-json", "dict-list", "step-details", "tool-call"])
def test_every_assistants_shape(make, status):
    (call,) = code_calls(make())
    check_fib_call(call, status)
    assert call.id == fx.IDS["call"]


def test_steps_without_code_give_an_empty_list():
    message_only = fx.steps_page()
    message_only.data = message_only.data[1:]
    assert code_calls(message_only) == []
    assert code_calls([]) == []
    with pytest.raises(NoCodeCallsError, match="answered without running code"):
        last_code(message_only)


def test_response_gives_its_code_interpreter_calls():
    response = fx.response()
    first, second = code_calls(response)
    check_fib_call(first)
    assert (first.source, first.id, first.response_id, first.container_id) == (
        "responses", "ci_tutor0001", "resp_tutor0001", "cntr_tutor0001")
    assert second.outputs == [{"type": "image", "url": fx.PNG_DATA_URL}]
    assert second.images == second.outputs
    assert second.logs == ""
    assert second.image_bytes() == [fx.PNG_BYTES]
    assert last_code(response) == second.code
    assert [c.id for c in code_calls(response.output)] == ["ci_tutor0001", "ci_tutor0002"]
    (item,) = code_calls(response.output[0])
    check_fib_call(item)
    assert code_calls(fx.RESPONSE_JSON) == [first, second]


@pytest.mark.parametrize(("thing", "message"), [
    (fx.RUN_JSON, "a Run holds no code; pass its steps"),
    ({"object": "list", "data": [{"object": "thread.message", "id": "msg_1"}]}, "messages hold the answer"),
    ({"whatever": 1}, r"dict with keys \['whatever'\]"),
    (42, "in a int"),
    ("print('not json')", "use tutor_nb.rerun"),
])
def test_unknown_shapes_raise_with_a_hint(thing, message):
    with pytest.raises(NoCodeCallsError, match=message):
        code_calls(thing)


def test_image_by_file_id_is_fetched_through_the_client(fake_api):
    step = json.loads(json.dumps(fx.CODE_STEP_JSON))
    outputs = step["step_details"]["tool_calls"][0]["code_interpreter"]["outputs"]
    outputs.append({"type": "image", "image": {"file_id": "file-plot0001"}})
    client = openai.OpenAI(base_url=fake_api.base_url, api_key="test-key-not-secret")

    (plain,) = code_calls(step)
    assert plain.images == [{"type": "image", "file_id": "file-plot0001"}]
    assert plain.image_bytes() == []
    assert "[image file-plot0001]" in plain._repr_html_()

    (linked,) = code_calls(step, client=client)
    assert linked.image_bytes() == [fx.PNG_BYTES]
    assert '<img src="data:image/png;base64,' in linked._repr_html_()
    assert fake_api.requests[-1][0] == "/v1/files/file-plot0001/content"


def test_code_call_shows_itself(ipython_shell):
    (call,) = code_calls(fx.steps_page())
    bundle = call._repr_mimebundle_()
    text, page = bundle["text/plain"], bundle["text/html"]
    assert text.startswith(f"code_interpreter call {fx.IDS['call']} (assistants {fx.IDS['code_step']}, completed)")
    assert fx.FIB_CODE in text and fx.FIB_LOGS in text
    assert "<span" in page and "style=" in page  # highlighted, with inline colours
    assert "fibonacci" in page and "4181]" in page
    assert page.index("numbers") < page.index("4181]")  # logs under the code
    assert repr(call).startswith(f"CodeCall('{fx.IDS['call']}', status='completed', 8 lines")

    ipython_shell.display_pub.outputs.clear()
    from IPython.display import display
    display(call)
    (shown,) = ipython_shell.display_pub.outputs
    assert shown["data"]["text/plain"] == text
    assert shown["data"]["text/html"] == page
