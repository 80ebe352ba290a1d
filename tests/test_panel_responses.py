"""ChatPanel(api="responses"): the same panel on the Responses API, against the real runtime
(replay backend, real kernels), through the official SDK's streamed responses."""

from __future__ import annotations

import json
import time

import ipywidgets as W
import pytest

import panel_events as ev
from tutor_nb.panel import ChatPanel

pytestmark = pytest.mark.slow

KOREAN_FIB = "코드를 사용해서 최초 20개의 피보나치 수열을 만들어줘"
FIB_20 = [0, 1, 1, 2, 3, 5, 8, 13, 21, 34, 55, 89, 144, 233, 377, 610, 987, 1597, 2584, 4181]


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    from tutor_nb.runtime import start

    tmp = tmp_path_factory.mktemp("panel-responses")
    files = []
    for name, cassette in (("plot.json", ev.PLOT_CASSETTE), ("slow.json", ev.SLOW_CASSETTE)):
        (tmp / name).write_text(json.dumps(cassette, ensure_ascii=False), encoding="utf-8")
        files.append(tmp / name)
    rt = start(backend="replay", data_dir=tmp / "data", cassettes=files)
    yield rt
    rt.stop()


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


def test_the_responses_panel_answers_with_a_code_step_and_chains_the_next_message(runtime, monkeypatch):
    from tutor_nb.panel.responses import ResponseTurnBuilder

    seen = ev.record_phases(monkeypatch, ResponseTurnBuilder)
    client = runtime.client()
    panel = ChatPanel(client=client, api="responses")
    panel.send(KOREAN_FIB)
    entry = panel.wait(timeout=120)
    assert entry["status"] == "completed", entry.get("error")
    (step,) = entry["steps"]
    assert "fibonacci_numbers" in step["code"] and json.loads(step["logs"].replace("\n", "")) == FIB_20
    assert step["status"] == "completed" and "4181" in entry["text"]
    assert entry["usage"]["total_tokens"] > 0 and panel.status.startswith("done in")
    assert seen == ["queued…", "thinking…", "writing code…", "running code (N s)", "reading output…", "writing the answer…",
                    "done in N s, N tokens"]
    first = panel.thread_id
    assert first.startswith("resp") and client.responses.retrieve(first).status == "completed"
    (answer,) = [w.value for w in _walk(panel.widget) if isinstance(w, W.HTMLMath)]
    assert "$$ 0, 1, 1, 2" in answer

    panel.send(ev.PLOT_CASSETTE["turns"][0]["user"])  # the next message continues the chain
    entry = panel.wait(timeout=120)
    assert entry["status"] == "completed", entry.get("error")
    second = client.responses.retrieve(panel.thread_id)
    assert second.previous_response_id == first
    (step,) = entry["steps"]
    assert len(step["image_file_ids"]) == 1 and "그래프 완성" in step["logs"]
    images = [w for w in _walk(panel.widget) if isinstance(w, W.Image)]
    assert len(images) == 1 and bytes(images[0].value).startswith(b"\x89PNG")
    assert "image" in panel.export() and "data:image/png;base64," in panel.export()


def test_stop_cancels_the_background_response_and_keeps_the_panel_usable(runtime):
    client = runtime.client()
    panel = ChatPanel(client=client, api="responses")
    panel.send(ev.SLOW_CASSETTE["turns"][0]["user"])
    deadline = time.monotonic() + 60
    while "running code" not in panel.status and time.monotonic() < deadline:
        time.sleep(0.05)
    assert "running code" in panel.status
    time.sleep(1.0)
    panel.stop()
    entry = panel.wait(timeout=60)
    assert entry["status"] == "cancelled"
    assert client.responses.retrieve(entry["run_id"]).status == "cancelled"
    panel.send(KOREAN_FIB)
    assert panel.wait(timeout=120)["status"] == "completed"


def test_logs_stream_while_the_code_runs_and_a_stopped_call_keeps_them(runtime):
    """tutor_nb's own logs.delta events: the panel shows them mid-run; the SDK's stream helper
    skips them and still ends with the stored response."""
    client = runtime.client()
    panel = ChatPanel(client=client, api="responses")
    panel.send(ev.SLOW_CASSETTE["turns"][0]["user"])
    deadline = time.monotonic() + 60
    logs = ""
    while time.monotonic() < deadline:
        steps = panel.transcript[-1]["steps"] if len(panel.transcript) == 2 else []
        if steps and steps[0]["status"] == "in_progress" and steps[0]["logs"].startswith("1\n2\n3\n"):
            logs = steps[0]["logs"]
            break
        time.sleep(0.05)
    assert logs, "no logs while the code ran"
    assert panel.status.startswith("running code (")
    panel.stop()
    entry = panel.wait(timeout=60)
    assert entry["status"] == "cancelled" and entry["steps"][0]["logs"].startswith(logs)
    stored = client.responses.retrieve(entry["run_id"], include=["code_interpreter_call.outputs"])
    (call,) = [item for item in stored.output if item.type == "code_interpreter_call"]
    assert call.status == "incomplete" and call.outputs[0].logs.startswith(logs)


def test_the_sdk_stream_helper_ends_with_the_stored_response(runtime):
    client = runtime.client()
    kinds: list[str] = []
    with client.responses.stream(model="gpt-4o", input=ev.PLOT_CASSETTE["turns"][0]["user"],
                                 tools=[{"type": "code_interpreter", "container": {"type": "auto"}}],
                                 include=["code_interpreter_call.outputs"]) as stream:
        for event in stream:
            kinds.append(event.type)
        final = stream.get_final_response()
    stored = client.responses.retrieve(final.id, include=["code_interpreter_call.outputs"])
    assert final.status == "completed" and [o.type for o in final.output] == [o.type for o in stored.output]
    assert final.output[0].model_dump() == stored.output[0].model_dump()  # the code call, logs not doubled
    assert final.output[-1].content[0].text == stored.output[-1].content[0].text
    assert kinds.index("response.code_interpreter_call.interpreting") < kinds.index("response.code_interpreter_call.completed")


def test_a_conversation_as_the_thread(runtime):
    client = runtime.client()
    conversation = client.conversations.create()
    panel = ChatPanel(client=client, api="responses", thread=conversation.id)
    panel.send(KOREAN_FIB)
    entry = panel.wait(timeout=120)
    assert entry["status"] == "completed", entry.get("error")
    assert panel.thread_id == conversation.id  # the thread stays the conversation
    items = client.conversations.items.list(conversation.id).data
    kinds = [item.type for item in items]
    assert "code_interpreter_call" in kinds and kinds.count("message") >= 2
