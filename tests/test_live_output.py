"""Live output: a running execution's logs stream as run-step deltas, beyond what OpenAI sent.

Through the official SDK over HTTP against the real runtime (chat backend, a stand-in model
that writes slow printing code, real kernels): the logs arrive while the code runs; the SDK's
own stream helper, which accumulates every delta, ends with exactly the step that
``steps.list`` returns (logs not doubled, images in place); a stopped step keeps what it
printed; and the panel's transcript holds the logs while the step still runs.
"""

from __future__ import annotations

import json
import threading
import time

import pytest
from openai import AssistantEventHandler

from tests.fakemodel import FakeModel, math_tutor_script

pytestmark = pytest.mark.slow  # real kernels behind the runtime, a few seconds each

SLOW_PRINTS = "import time\nfor i in range(4):\n    print('line', i, flush=True)\n    time.sleep(0.4)\n'done'"
PLOT = ("import matplotlib.pyplot as plt\nprint('before', flush=True)\nplt.plot([1, 2, 3])\nplt.show()\n"
        "import time\ntime.sleep(0.3)\nprint('after')")
COUNT = "import time\nfor i in range(1, 61):\n    print(i, flush=True)\n    time.sleep(0.25)"
CODES = {"slow prints": SLOW_PRINTS, "a plot": PLOT, "count": COUNT}


def script(request):
    reply = math_tutor_script(request)
    if reply.get("tool_calls"):
        question = next(m["content"] for m in reversed(request["messages"]) if m["role"] == "user")
        code = next((c for key, c in CODES.items() if key in question), SLOW_PRINTS)
        reply["tool_calls"] = [{"name": "code_interpreter", "arguments": json.dumps({"code": code})}]
    return reply


@pytest.fixture(scope="module")
def live_runtime(tmp_path_factory):
    from tutor_nb.runtime import start

    with FakeModel(script) as fake:
        rt = start(backend="chat", model_base_url=fake.base_url, model="stand-in", model_api_key="x",
                   data_dir=tmp_path_factory.mktemp("live"))
        try:
            yield rt
        finally:
            rt.stop()


@pytest.fixture(scope="module")
def client(live_runtime):
    return live_runtime.client(max_retries=0)


@pytest.fixture(scope="module")
def assistant(client):
    return client.beta.assistants.create(model="stand-in", tools=[{"type": "code_interpreter"}])


class Watcher(AssistantEventHandler):
    """Notes when each piece of logs arrived, relative to the step's completion."""

    def __init__(self) -> None:
        super().__init__()
        self.log_times: list[tuple[float, str]] = []
        self.completed_at: float | None = None
        self.events: list[str] = []

    def on_event(self, event) -> None:
        self.events.append(event.event)
        if event.event == "thread.run.step.delta":
            for call in event.data.delta.step_details.tool_calls or []:
                for out in (call.code_interpreter.outputs or []) if call.code_interpreter else []:
                    if out.type == "logs":
                        self.log_times.append((time.monotonic(), out.logs))
        if event.event == "thread.run.step.completed" and event.data.type == "tool_calls":
            self.completed_at = time.monotonic()


def _run(client, assistant, question: str) -> tuple[Watcher, object]:
    thread = client.beta.threads.create()
    client.beta.threads.messages.create(thread.id, role="user", content=question)
    watcher = Watcher()
    with client.beta.threads.runs.stream(thread_id=thread.id, assistant_id=assistant.id, event_handler=watcher) as stream:
        stream.until_done()
    steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=watcher.current_run.id, order="asc")
    return watcher, steps


def _code_outputs(step) -> list[dict]:
    """A code call's outputs, without the ``index`` an accumulated delta keeps (as with OpenAI)."""
    outputs = step.step_details.tool_calls[0].code_interpreter.outputs
    return [{k: v for k, v in out.model_dump(exclude_none=True).items() if k != "index"} for out in outputs]


def test_logs_stream_while_the_code_runs_and_the_sdk_ends_with_the_stored_step(client, assistant):
    watcher, steps = _run(client, assistant, "slow prints")
    tool_step = next(s for s in steps.data if s.type == "tool_calls")
    stored = _code_outputs(tool_step)
    assert stored == [{"type": "logs", "logs": "line 0\nline 1\nline 2\nline 3\n'done'\n"}]
    early = [text for at, text in watcher.log_times if at < watcher.completed_at - 0.3]
    assert len(early) >= 2 and "".join(early).startswith("line 0\n"), watcher.log_times
    assert "".join(text for _, text in watcher.log_times) == stored[0]["logs"]  # each piece is new text
    (accumulated,) = [s for s in watcher.get_final_run_steps() if s.type == "tool_calls"]
    assert _code_outputs(accumulated) == stored  # what the SDK built from the deltas
    assert accumulated.step_details.tool_calls[0].code_interpreter.input == SLOW_PRINTS
    # the step is announced again, with its code, when the code starts running
    assert watcher.events.count("thread.run.step.in_progress") >= 3


def test_images_keep_their_place_after_streamed_logs(client, assistant):
    watcher, steps = _run(client, assistant, "a plot")
    tool_step = next(s for s in steps.data if s.type == "tool_calls")
    stored = _code_outputs(tool_step)
    assert [o["type"] for o in stored] == ["logs", "image"] and stored[0]["logs"] == "before\nafter\n"
    (accumulated,) = [s for s in watcher.get_final_run_steps() if s.type == "tool_calls"]
    assert _code_outputs(accumulated) == stored


def test_a_stopped_step_keeps_what_it_printed(client, assistant):
    thread = client.beta.threads.create()
    client.beta.threads.messages.create(thread.id, role="user", content="count")
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id)
        outputs = [o for s in steps.data if s.type == "tool_calls" for call in s.step_details.tool_calls[:1]
                   for o in call.code_interpreter.outputs]  # a step just created has no call yet
        if outputs and outputs[0].logs.count("\n") >= 3:
            break
        time.sleep(0.1)
    client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    run = client.beta.threads.runs.poll(run.id, thread_id=thread.id)
    assert run.status == "cancelled"
    (step,) = [s for s in client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id).data if s.type == "tool_calls"]
    assert step.status == "cancelled"
    logs = step.step_details.tool_calls[0].code_interpreter.outputs[0].logs
    assert logs.startswith("1\n2\n3\n") and "60" not in logs


def test_the_panel_shows_logs_while_the_step_runs(live_runtime):
    import ipywidgets as W

    from tutor_nb import ChatPanel

    panel = ChatPanel(client=live_runtime.client(), model="stand-in")
    panel.send("count")
    seen_running: list[str] = []
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        entry = panel.transcript[-1] if len(panel.transcript) == 2 else None
        steps = entry["steps"] if entry else []
        if steps and steps[0]["status"] == "in_progress" and steps[0]["logs"].count("\n") >= 3:
            seen_running.append(steps[0]["logs"])
            break
        time.sleep(0.05)
    assert seen_running, "no logs in the transcript while the step was running"
    assert panel.status.startswith("running code (")
    time.sleep(0.2)  # one flush later, the page has them too
    logs_html = [w.value for w in _walk(panel.widget) if isinstance(w, W.HTML) and "tnb-logs" in w.value]
    assert logs_html and "\n3\n" in logs_html[0]
    panel.stop()
    entry = panel.wait(timeout=60)
    assert entry["status"] == "cancelled"
    assert entry["steps"][0]["logs"].startswith(seen_running[0])  # the stopped step keeps what it printed


def _walk(widget):
    yield widget
    for child in getattr(widget, "children", ()):
        yield from _walk(child)


def test_the_node_sdk_accumulates_the_same_step(live_runtime, assistant):
    """The Node SDK replaces its snapshot on the repeated in_progress event and merges every delta:
    it must end with exactly the stored step too."""
    import os
    import shutil
    import subprocess
    from pathlib import Path

    node_dir = Path(__file__).resolve().parent / "node"
    if shutil.which("node") is None or not (node_dir / "node_modules" / "openai").is_dir():
        message = "the openai Node SDK is not installed: run `npm ci --prefix tests/node`"
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(message)
        pytest.skip(message)
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(OPENAI_BASE_URL=live_runtime.base_url, OPENAI_API_KEY=live_runtime.settings.token or "tutor-nb-local")
    done = subprocess.run([shutil.which("node"), str(node_dir / "live.mjs"), assistant.id, "slow prints"],
                          capture_output=True, text=True, timeout=120, env=env, cwd=node_dir)
    seen = json.loads(done.stdout.strip().splitlines()[-1])
    assert done.returncode == 0 and "error" not in seen, seen
    assert seen["status"] == "completed" and seen["code"] == SLOW_PRINTS
    assert len([p for p in seen["pieces"] if p["before_ms"] > 300]) >= 2, seen["pieces"]
    assert seen["accumulated"] == seen["listed"] == [{"type": "logs", "logs": "line 0\nline 1\nline 2\nline 3\n'done'\n"}]
