"""Fuzz the runtime with schemathesis against OpenAI's own API description.

``st run`` generates requests for every operation the runtime implements (assistants, threads,
messages, runs, run steps, files), valid and invalid, sends them over HTTP to a real runtime and
checks two things: no answer is a server error, and every answer matches the response schema of
OpenAI's description. Path ids are drawn mostly from objects made beforehand, so requests reach
the handlers instead of stopping at 404.

Exclusions, where OpenAI's description disagrees with what OpenAI's API and SDK did (the SDK wins):

* ``first_id`` / ``last_id`` of an empty list: the description says string; OpenAI sent ``null`` and the
  ``openai`` SDK's cursor pages type them ``Optional[str]``. The schema used here allows ``null`` there.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path

import pytest

from conftest import data_path
from reliability import read_store

SPEC = Path(__file__).resolve().parent / "spec" / "assistants.openapi.yaml"  # vendored, with its MIT licence
PATHS = r"^/(assistants|threads|files)(/|$)"  # what the runtime implements; nothing else is fuzzed
EXAMPLES = 25  # per operation and phase; ~2,000 requests in all
CHECKS = "not_a_server_error,response_schema_conformance"
HELLO, WEATHER = "Say hello", "What is the weather in Seoul?"
TURNS = {"source": "authored", "description": "Turns for the fuzzing runtime's seed objects.", "turns": [
    {"user": HELLO, "turn": 0, "reply": {"content": "Hello!", "tool_calls": []}},
    {"user": WEATHER, "turn": 0, "reply": {"content": None, "tool_calls": [
        {"name": "get_weather", "arguments": "{\"city\": \"Seoul\"}"}]}},
]}
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}

pytestmark = pytest.mark.slow


def allowing_null_list_ids(spec: dict) -> dict:
    """The documented exclusion: list answers may carry null first_id/last_id (an empty page)."""
    for name, schema in spec["components"]["schemas"].items():
        if re.fullmatch(r"List\w+Response", name):
            for field in ("first_id", "last_id"):
                if field in schema.get("properties", {}):
                    schema["properties"][field] = {"anyOf": [schema["properties"][field], {"type": "null"}]}
    return spec


def seed(client) -> dict[str, list[str]]:
    """Objects for the fuzzer to aim at: a few of each kind, so a fuzzed delete does not end the game."""
    kinds = ("assistant_id", "thread_id", "message_id", "run_id", "step_id", "file_id")
    ids: dict[str, list[str]] = {kind: [] for kind in kinds}
    for n in range(3):
        coder = client.beta.assistants.create(model="gpt-4o", name=f"fuzz {n}", tools=[{"type": "code_interpreter"},
                                                                                      WEATHER_TOOL])
        ids["assistant_id"].append(coder.id)
        upload = client.files.create(file=(f"data{n}.csv", b"a,b\n1,2\n"), purpose="assistants")
        ids["file_id"].append(upload.id)
        for prompt in (HELLO, WEATHER):
            thread = client.beta.threads.create(messages=[{"role": "user", "content": prompt}])
            run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=coder.id,
                                                           poll_interval_ms=20)
            assert run.status in ("completed", "requires_action"), run.last_error
            ids["thread_id"].append(thread.id)
            ids["run_id"].append(run.id)
            ids["message_id"] += [m.id for m in client.beta.threads.messages.list(thread_id=thread.id)]
            ids["step_id"] += [s.id for s in client.beta.threads.runs.steps.list(run.id, thread_id=thread.id)]
    return ids


def config(ids: dict[str, list[str]]) -> str:
    lines = ["[dictionaries]"]
    lines += [f"{name} = {{ values = {json.dumps(values)} }}" for name, values in ids.items()]
    lines += ["", "[parameters]"]
    lines += [f'"path.{name}" = {{ dictionary = "{name}", probability = 0.85 }}' for name in ids]
    return "\n".join(lines) + "\n"


def fuzz(rt, spec: Path, ids: dict[str, list[str]], *, seed: int, examples: int, paths: str | None = None,
         workers: int = 2, timeout: int = 900) -> subprocess.CompletedProcess:
    """schemathesis against ``rt`` with its token in a private config file (never on a command line)."""
    settings = spec.parent / "schemathesis.toml"
    settings.touch(mode=0o600)
    settings.write_text(f'headers = {{ Authorization = "Bearer {rt.settings.token}" }}\n' + config(ids),
                        encoding="utf-8")
    command = [sys.executable, "-m", "schemathesis.cli", "--config-file", str(settings), "run", str(spec),
               "--url", rt.base_url, "--checks", CHECKS, "--phases", "examples,coverage,fuzzing",
               "--max-examples", str(examples), "--seed", str(seed), "--generation-database", "none",
               "--request-timeout", "30", "--no-color", "--workers", str(workers)]
    if paths is not None:
        command += ["--include-path-regex", paths]
    return subprocess.run(command, capture_output=True, text=True, timeout=timeout, cwd=spec.parent)


def test_fuzzed_requests_get_no_server_error_and_match_openais_schemas(tmp_path, fault_report):
    pytest.importorskip("schemathesis")
    yaml = pytest.importorskip("yaml")
    from tutor_nb.runtime import start

    spec = tmp_path / "assistants.openapi.json"
    spec.write_text(json.dumps(allowing_null_list_ids(yaml.safe_load(SPEC.read_text(encoding="utf-8")))))
    cassette = tmp_path / "turns.json"
    cassette.write_text(json.dumps(TURNS), encoding="utf-8")
    rt = start(backend="replay", data_dir=tmp_path / "data", cassettes=[data_path("cassettes"), cassette],
               exec_timeout=10)
    try:
        ids = seed(rt.client(max_retries=0))
        done = fuzz(rt, spec, ids, seed=6, examples=EXAMPLES, paths=PATHS)
    finally:
        rt.stop()
    integrity, stored = read_store(tmp_path / "data")
    out = done.stdout + done.stderr
    summary = re.search(r"(\d+) generated", out)
    assert done.returncode == 0, out[-6000:]
    assert summary is not None, out[-3000:]
    generated = int(summary.group(1))
    operations = re.search(r"Tested: (\d+)", out)
    assert generated > 500 and operations is not None and int(operations.group(1)) >= 28, out[-3000:]
    assert integrity == "ok" and len(stored) > sum(map(len, ids.values()))
    fault_report("schemathesis fuzzing against OpenAI's API description", trials=generated,
                 outcome=f"{generated} generated requests (valid and invalid) on {operations.group(1)} operations: "
                         "0 server errors, 0 response-schema violations (one documented exclusion: null "
                         "first_id/last_id on empty lists, as OpenAI and the SDK have it)",
                 nothing_lost=f"integrity_check ok; all {len(stored)} stored rows parse as the SDK's types")
