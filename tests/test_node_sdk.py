"""The official ``openai`` Node SDK against the runtime, over real HTTP on 127.0.0.1.

``tests/node/sdk.mjs`` makes the calls a Node user makes (``client.beta.threads.runs.createAndPoll``,
``client.responses.create``, ``client.responses.stream``...) and prints what the SDK parsed; these
tests assert on that. The SDK's version is pinned in ``tests/node/package-lock.json``; it is installed
by ``npm ci --prefix tests/node`` (``.ci/run`` does it), never at test time. Without it the tests skip,
saying so, except in CI (``CI=true``), where a missing SDK is a failure.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest

from conftest import FIB_NUMBERS

NODE_DIR = Path(__file__).resolve().parent / "node"
SCRIPT = NODE_DIR / "sdk.mjs"
INSTALL = "npm ci --prefix tests/node"

pytestmark = pytest.mark.slow


def _in_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() in ("1", "true", "yes")


def _pinned_version() -> str:
    lock = json.loads((NODE_DIR / "package-lock.json").read_text(encoding="utf-8"))
    return lock["packages"]["node_modules/openai"]["version"]


def _missing_sdk() -> str | None:
    """Why the Node SDK cannot run here (None when it can)."""
    if shutil.which("node") is None:
        return "Node.js is not installed (the Node SDK tests need `node` on PATH)"
    installed = NODE_DIR / "node_modules" / "openai" / "package.json"
    if not installed.is_file():
        return f"the openai Node SDK is not installed in tests/node/node_modules: run `{INSTALL}`"
    version = json.loads(installed.read_text(encoding="utf-8"))["version"]
    if version != _pinned_version():
        return f"tests/node/node_modules has openai {version}, the lock pins {_pinned_version()}: run `{INSTALL}`"
    return None


@pytest.fixture(scope="module")
def node() -> str:
    missing = _missing_sdk()
    if missing is not None:
        if _in_ci():
            pytest.fail(f"CI must run the Node SDK tests, but {missing}")
        pytest.skip(missing)
    return shutil.which("node")


def run_node(node: str, runtime: Any, scenario: str) -> dict[str, Any]:
    """Run one scenario of ``sdk.mjs`` against ``runtime``; what the SDK parsed, as a dict."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("OPENAI_")}
    env.update(OPENAI_BASE_URL=runtime.base_url, OPENAI_API_KEY=runtime.settings.token or "tutor-nb-local")
    done = subprocess.run([node, str(SCRIPT), scenario], capture_output=True, text=True, timeout=180, env=env,
                          cwd=NODE_DIR)
    lines = done.stdout.strip().splitlines()
    assert lines, f"sdk.mjs {scenario} printed nothing (exit {done.returncode}): {done.stderr[-3000:]}"
    result = json.loads(lines[-1])
    assert done.returncode == 0 and "error" not in result, f"sdk.mjs {scenario}: {result}\n{done.stderr[-3000:]}"
    return result


def test_missing_sdk_is_reported_with_the_install_command(monkeypatch, tmp_path):
    monkeypatch.setattr(f"{__name__}.NODE_DIR", tmp_path)
    (tmp_path / "package-lock.json").write_text(json.dumps(
        {"packages": {"node_modules/openai": {"version": "1.2.3"}}}), encoding="utf-8")
    if shutil.which("node") is not None:
        assert INSTALL in _missing_sdk()
        (tmp_path / "node_modules" / "openai").mkdir(parents=True)
        (tmp_path / "node_modules" / "openai" / "package.json").write_text('{"version": "1.0.0"}')
        assert "openai 1.0.0, the lock pins 1.2.3" in _missing_sdk()


def test_the_node_sdk_runs_the_walkthrough_on_the_assistants_api(node, runtime):
    seen = run_node(node, runtime, "assistants")
    assert seen["assistant"]["object"] == "assistant" and seen["assistant"]["tools"] == ["code_interpreter"]
    assert seen["run"]["status"] == "completed" and seen["run"]["usage"]["total_tokens"] > 0
    assert seen["steps"] == ["tool_calls", "message_creation"]
    assert "fib" in seen["code"][0] and str(FIB_NUMBERS[-1]) in "".join(seen["logs"])
    assert seen["answer_role"] == "assistant" and str(FIB_NUMBERS[-1]) in seen["answer"]

    stream = seen["stream"]
    assert stream["status"] == "completed" and stream["messages"] == 1
    assert stream["events"][0] == "thread.run.created" and stream["events"][-1] == "thread.run.completed"
    assert "thread.run.step.delta" in stream["events"] and "thread.message.delta" in stream["events"]
    assert stream["code"] == seen["code"][0], "the streamed code deltas join to the code in the step"
    assert str(FIB_NUMBERS[-1]) in stream["text"]


def test_the_node_sdk_creates_chained_code_interpreter_responses(node, runtime):
    seen = run_node(node, runtime, "responses_create")
    first, second = seen["first"], seen["second"]
    assert first["object"] == "response" and first["status"] == "completed"
    assert first["output_types"] == ["code_interpreter_call", "message"]
    [call] = first["code_calls"]
    assert call["status"] == "completed" and call["code"] == "x = 21\nx" and "21" in call["logs"]
    assert call["container_id"].startswith("cntr_") and first["output_text"] == "x is 21."
    assert first["usage"]["total_tokens"] == first["usage"]["input_tokens"] + first["usage"]["output_tokens"] > 0

    assert second["previous_response_id"] == first["id"] and second["status"] == "completed"
    [doubled] = second["code_calls"]
    assert "42" in doubled["logs"], "the chained response ran in the first one's container, where x is 21"
    assert doubled["container_id"] == call["container_id"]
    assert seen["retrieved"] == {**second, "code_calls": seen["retrieved"]["code_calls"]}
    assert seen["input_items"] == ["message"]
    assert seen["deleted"]["deleted"] is True and seen["deleted"]["id"] == first["id"]
    assert seen["after_delete"]["status"] == 404


def test_the_node_sdk_streams_a_code_interpreter_response(node, runtime):
    seen = run_node(node, runtime, "responses_stream")
    events = seen["events"]
    assert events[:2] == ["response.created", "response.in_progress"] and events[-1] == "response.completed"
    assert seen["sequence"] == list(range(len(events))), "sequence_number counts every event from 0"
    order = ["response.output_item.added", "response.code_interpreter_call.in_progress",
             "response.code_interpreter_call_code.delta", "response.code_interpreter_call_code.done",
             "response.code_interpreter_call.interpreting", "response.code_interpreter_call.completed",
             "response.output_item.done", "response.content_part.added", "response.output_text.delta",
             "response.output_text.done", "response.content_part.done"]
    positions = [events.index(name) for name in order]
    assert positions == sorted(positions), events
    [call] = seen["final"]["code_calls"]
    assert seen["code"] == call["code"] and "fib" in call["code"]
    assert str(FIB_NUMBERS[-1]) in call["logs"]
    assert seen["text"] == seen["final"]["output_text"] and str(FIB_NUMBERS[-1]) in seen["text"]


def test_the_node_sdk_manages_a_container_and_its_files(node, runtime):
    seen = run_node(node, runtime, "containers")
    container = seen["container"]
    assert container["id"].startswith("cntr_") and container["object"] == "container"
    assert (container["status"], container["name"], container["minutes"]) == ("running", "node", 5)
    assert seen["uploaded"]["object"] == "container.file" and seen["uploaded"]["path"] == "/mnt/data/data.csv"
    assert (seen["uploaded"]["source"], seen["uploaded"]["bytes"]) == ("user", 8)
    [call] = seen["response"]["code_calls"]
    assert call["container_id"] == container["id"] and seen["response"]["status"] == "completed"
    written = [f for f in seen["files"] if f["source"] == "assistant"]
    assert [f["path"] for f in written] == ["/mnt/data/squares.csv"]
    assert seen["written_content"].splitlines()[:3] == ["n,square", "1,1", "2,4"]
    assert seen["retrieved"] == {"id": container["id"], "status": "running"} and container["id"] in seen["listed"]
    assert seen["remaining"] == ["/mnt/data/squares.csv"], "the uploaded file was deleted"
    assert seen["after_delete"] == 404
