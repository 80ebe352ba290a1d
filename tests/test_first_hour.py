"""A new user's first hour: the README's snippet, and what a run that did not complete tells them."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from tutor_nb import NoCodeCallsError, RunNotCompletedError, code_calls, last_code

ROOT = Path(__file__).resolve().parents[1]
UNRECORDED = "What is the airspeed velocity of an unladen swallow?"
SLOW_COUNT = "Use code to count slowly from 1 to 30, printing one number per second"


def readme_snippet() -> str:
    """The README's "In a notebook" code, exactly as a learner copies it."""
    section = (ROOT / "README.md").read_text(encoding="utf-8").split("## In a notebook", 1)[1]
    return re.search(r"```python\n(.*?)```", section, re.S).group(1)


def run_snippet(code: str, tmp_path: Path) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "OPEN_API_KEY"))}
    env["TUTOR_NB_DATA_DIR"] = str(tmp_path / "data")
    env["PYTHONPATH"] = str(ROOT) + os.pathsep + env.get("PYTHONPATH", "")
    return subprocess.run([sys.executable, "-c", code], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=180)


@pytest.mark.slow
def test_the_readme_snippet_runs_offline(tmp_path):
    done = run_snippet(readme_snippet(), tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "match" in done.stdout or "4181" in done.stdout


@pytest.mark.slow
def test_the_readme_snippet_stops_at_the_runs_own_reason(tmp_path):
    code = readme_snippet()
    question = re.search(r'content="([^"]+)"', code).group(1)
    done = run_snippet(code.replace(question, UNRECORDED), tmp_path)
    assert done.returncode != 0
    raised = [line for line in done.stderr.splitlines() if line.startswith(("RuntimeError", "IndexError"))]
    assert raised and raised[0].startswith("RuntimeError: The run failed: No recorded turn exists for this message"), \
        done.stderr[-3000:]
    assert "IndexError" not in done.stderr


@pytest.fixture(scope="module")
def failed_run(client, tutor):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": UNRECORDED}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=tutor.id, poll_interval_ms=20)
    assert run.status == "failed"
    return run


def test_code_calls_on_a_failed_run_say_it_failed_and_why(client, failed_run):
    steps = client.beta.threads.runs.steps.list(thread_id=failed_run.thread_id, run_id=failed_run.id)
    assert steps.data == []  # it failed before the model said anything
    for reader in (code_calls, last_code):
        with pytest.raises(RunNotCompletedError) as caught:
            reader(steps)
        message = str(caught.value)
        assert f"the run {failed_run.id} failed: No recorded turn exists" in message
        assert "answered without running code" not in message
    with pytest.raises(RunNotCompletedError, match="failed: No recorded turn exists"):
        code_calls(failed_run)
    assert issubclass(RunNotCompletedError, NoCodeCallsError)  # code that caught the old error still does


def test_a_run_waiting_for_outputs_says_what_to_do(client):
    weather = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
    assistant = client.beta.assistants.create(model="gpt-4o", tools=[weather])
    run = client.beta.threads.create_and_run_poll(
        assistant_id=assistant.id, thread={"messages": [{"role": "user", "content": "What is the weather in Seoul?"}]},
        poll_interval_ms=20)
    assert run.status == "requires_action", run.last_error
    steps = client.beta.threads.runs.steps.list(thread_id=run.thread_id, run_id=run.id)
    with pytest.raises(RunNotCompletedError, match="waiting for your function outputs.*submit_tool_outputs"):
        last_code(steps)


def test_a_completed_run_without_code_still_gives_an_empty_list(client, tutor):
    run = client.beta.threads.create_and_run_poll(
        assistant_id=tutor.id, thread={"messages": [{"role": "user", "content": "Say hello"}]}, poll_interval_ms=20)
    assert run.status == "completed", run.last_error
    steps = client.beta.threads.runs.steps.list(thread_id=run.thread_id, run_id=run.id)
    assert code_calls(steps) == []
    with pytest.raises(NoCodeCallsError, match="answered without running code"):
        last_code(steps)


def test_what_running_the_notebooks_writes_beside_them_is_ignored_by_git():
    if not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    written = ["notebooks/study_hours.csv", "notebooks/downloads/study_hours_predicted.csv", "notebooks/chart.png"]
    kept = ["notebooks/03_files_and_plots.ipynb", "notebooks/src/03_files_and_plots.py", "notebooks/build.py"]
    done = subprocess.run(["git", "check-ignore", *written, *kept], cwd=ROOT, capture_output=True, text=True)
    assert done.stdout.split() == written


def test_steps_of_a_run_still_going_give_the_calls_so_far(client, tutor):
    """A loop that watches for code (notebook 02) reads the steps of a running run: no error until it ends."""
    thread = client.beta.threads.create(messages=[{"role": "user", "content": SLOW_COUNT}])
    run = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=tutor.id)
    try:
        steps = client.beta.threads.runs.steps.list(thread_id=thread.id, run_id=run.id)
        assert client.beta.threads.runs.retrieve(run.id, thread_id=thread.id).status in ("queued", "in_progress")
        assert isinstance(code_calls(steps), list)
        if not code_calls(steps):
            with pytest.raises(RunNotCompletedError, match="is still running.*runs.poll"):
                last_code(steps)
    finally:
        client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
    run = client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=20)
    assert run.status == "cancelled"
