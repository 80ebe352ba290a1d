"""The runtime killed with SIGKILL and restarted on the same data folder: nothing acknowledged is lost.

The server runs as ``python -m tutor_nb serve`` in its own process, as a learner starts it. SIGKILL
lets no shutdown code run (as when the machine dies or the OOM killer strikes); SQLite in WAL mode
and files renamed into place must carry everything the client got a 200 for across it. Runs that
were in progress come back ``failed`` (or ``expired``, for one waiting on tool outputs) with a reason.
The kernels of a killed server must not outlive it.
"""

from __future__ import annotations

import hashlib
import json
import random
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import openai
import pytest

from reliability import CliServer, kill_pids, processes_of, read_store, wait_gone

HELLO, CODE, SLEEP = "Say hello", "Set x to 21 and show it", "Sleep for a while"
WEATHER, HELPER = "What is the weather in Seoul?", "Start a helper process"
HELPER_CODE = ("import subprocess, sys\n"
               "helper = subprocess.Popen([sys.executable, '-c', 'import time; time.sleep(600)'])\nhelper.pid")
WEATHER_TOOL = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
TURNS = {"source": "authored", "description": "Turns for the durability tests.", "turns": [
    {"user": HELLO, "turn": 0, "reply": {"content": "Hello!", "tool_calls": []}},
    {"user": WEATHER, "turn": 0, "reply": {"content": None, "tool_calls": [
        {"name": "get_weather", "arguments": "{\"city\": \"Seoul\"}"}]}},
    {"user": HELPER, "turn": 0, "reply": {"content": None, "tool_calls": [
        {"name": "code_interpreter", "arguments": json.dumps({"code": HELPER_CODE})}]}},
    {"user": HELPER, "turn": 1, "reply": {"content": "Started.", "tool_calls": []}},
]}
INTERRUPTED = "stopped while this run was in progress"
ACTIVE = {"queued", "in_progress", "requires_action", "cancelling"}
KERNEL_GRACE = 10.0  # seconds the kernels of a killed server get to notice and exit


@pytest.fixture
def cassette(tmp_path: Path) -> Path:
    path = tmp_path / "turns.json"
    path.write_text(json.dumps(TURNS), encoding="utf-8")
    return path


def serve(data_dir: Path, cassette: Path) -> CliServer:
    return CliServer(data_dir, "--cassettes", str(cassette), "--replay-delay", "0.01")


def kill_and_reap(server: CliServer) -> tuple[int, list[int]]:
    """SIGKILL the server; returns how many processes it had started and which outlived it.

    Those are then killed by pid: the processes it had started, and any process naming its data folder
    (a kernel it was starting at that moment is not yet its child in every sense)."""
    children = server.descendants()
    server.kill()
    leftovers = wait_gone(sorted({*children, *processes_of(server.data_dir)}), KERNEL_GRACE)
    kill_pids(leftovers)
    return len(children), leftovers


def digest(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def assert_interrupted(client, run) -> None:
    """A run the kill cut short: ended with a reason, its steps and messages closed."""
    assert run.status in ("failed", "expired"), run
    assert run.last_error is not None and INTERRUPTED in run.last_error.message, run.last_error
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=run.thread_id).data
    assert all(s.status != "in_progress" for s in steps), steps
    messages = client.beta.threads.messages.list(thread_id=run.thread_id).data
    assert all(m.status != "in_progress" for m in messages if m.run_id == run.id), messages


@pytest.mark.slow
def test_sigkill_mid_run_then_restart_keeps_everything(tmp_path, cassette, fault_report):
    """Issue 3's must-show: objects made, a run killed mid-execution, restart, all there, the run failed."""
    data = tmp_path / "data"
    server = serve(data, cassette)
    try:
        client = server.client()
        payload = random.Random(3).randbytes(50_000)
        upload = client.files.create(file=("numbers.bin", payload), purpose="assistants")
        tutor = client.beta.assistants.create(model="gpt-4o", name="tutor", tools=[{"type": "code_interpreter"}],
                                              tool_resources={"code_interpreter": {"file_ids": [upload.id]}})
        thread = client.beta.threads.create(messages=[{"role": "user", "content": CODE}])
        done = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=tutor.id, poll_interval_ms=20)
        assert done.status == "completed", done.last_error
        client.beta.threads.messages.create(thread_id=thread.id, role="user", content=SLEEP)
        cut = client.beta.threads.runs.create(thread_id=thread.id, assistant_id=tutor.id)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:  # until the kernel is busy sleeping
            steps = client.beta.threads.runs.steps.list(cut.id, thread_id=thread.id).data
            calls = [s.step_details.tool_calls[0] for s in steps if s.type == "tool_calls" and s.status == "in_progress"
                     and s.step_details.tool_calls]
            if any("sleep" in call.code_interpreter.input for call in calls):
                break
            time.sleep(0.05)
        else:
            pytest.fail("the run never started executing its code")
        time.sleep(0.5)
        before = {
            "assistant": tutor, "file": client.files.retrieve(upload.id),
            "thread": client.beta.threads.retrieve(thread.id),
            "messages": client.beta.threads.messages.list(thread_id=thread.id, order="asc").data,
            "run": client.beta.threads.runs.retrieve(done.id, thread_id=thread.id),
            "steps": client.beta.threads.runs.steps.list(done.id, thread_id=thread.id, order="asc").data,
        }
        assert client.beta.threads.runs.retrieve(cut.id, thread_id=thread.id).status == "in_progress"
    finally:
        started, leftovers = kill_and_reap(server)
    assert started >= 1, "the server had started no kernel"

    server = serve(data, cassette)
    try:
        client = server.client()
        assert client.beta.assistants.retrieve(tutor.id) == before["assistant"]
        assert client.files.retrieve(upload.id) == before["file"]
        assert client.files.content(upload.id).read() == payload
        assert client.beta.threads.retrieve(thread.id) == before["thread"]
        assert client.beta.threads.messages.list(thread_id=thread.id, order="asc").data == before["messages"]
        assert client.beta.threads.runs.retrieve(done.id, thread_id=thread.id) == before["run"]
        assert client.beta.threads.runs.steps.list(done.id, thread_id=thread.id, order="asc").data == before["steps"]
        interrupted = client.beta.threads.runs.retrieve(cut.id, thread_id=thread.id)
        assert interrupted.status == "failed" and interrupted.failed_at is not None
        assert_interrupted(client, interrupted)
        # the thread goes on: a new run starts (in a new kernel) and completes
        client.beta.threads.messages.create(thread_id=thread.id, role="user", content=CODE)
        again = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=tutor.id,
                                                         poll_interval_ms=20)
        assert again.status == "completed", again.last_error
        integrity, stored = read_store(data)
        assert integrity == "ok"
    finally:
        server.stop()
    fault_report("SIGKILL during a code execution, restart on the same data folder", trials=1,
                 outcome=f"the run came back failed: \"{interrupted.last_error.message}\"; the thread took a new "
                         f"run; {started - len(leftovers)} of the {started} kernel processes of the killed server "
                         "exited with it"
                         + (f" ({len(leftovers)} outlived it and were killed by the test)" if leftovers else ""),
                 nothing_lost=f"assistant, file (50 kB, same bytes), thread, {len(before['messages'])} messages, "
                              "the completed run and its steps identical; "
                              f"integrity_check ok, {len(stored)} rows parse")


# -- many kills at random points ---------------------------------------------------------------


@dataclass
class Ledger:
    """Everything the client got a 200 for, as it got it."""

    objects: dict[str, Any] = field(default_factory=dict)  # id -> last acknowledged SDK object
    blobs: dict[str, str] = field(default_factory=dict)  # file id -> sha256 of its bytes
    deleted: set[str] = field(default_factory=set)

    def keep(self, obj: Any) -> Any:
        self.objects[obj.id] = obj
        return obj

    def live(self, kind: str) -> list[Any]:
        return [o for o in self.objects.values() if o.object == kind and o.id not in self.deleted]


class Workload:
    """A learner's traffic until the server dies: uploads, assistants, threads, messages, runs, edits, deletes."""

    def __init__(self, client, ledger: Ledger, rng: random.Random) -> None:
        self.client, self.ledger, self.rng = client, ledger, rng
        self.run_started = threading.Event()
        self.in_flight: set[str] = set()  # existing objects the unanswered request may have changed
        self.operations = 0
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._loop, daemon=True)

    def start(self) -> "Workload":
        self.thread.start()
        return self

    def _loop(self) -> None:
        try:
            while True:
                self.in_flight = set()
                self._step()
                self.operations += 1
        except (openai.APIConnectionError, openai.APITimeoutError):
            return  # the server is gone
        except BaseException as exc:  # surfaced by the test
            self.error = exc

    def _step(self) -> None:
        c, ledger, rng = self.client, self.ledger, self.rng
        assistants, threads = ledger.live("assistant"), ledger.live("thread")
        kind = rng.choice(["file", "file", "assistant", "thread", "message", "edit", "delete", *["run"] * 4])
        if kind == "assistant" or not assistants:
            ledger.keep(c.beta.assistants.create(model="gpt-4o", name=f"a{rng.randint(0, 999)}",
                                                 tools=[{"type": "code_interpreter"}, WEATHER_TOOL]))
        elif kind == "file":
            data = rng.randbytes(rng.randint(1, 200_000))
            upload = c.files.create(file=(f"f{rng.randint(0, 999)}.bin", data), purpose="assistants")
            ledger.blobs[upload.id] = digest(data)
            ledger.keep(upload)
        elif kind == "thread" or not threads:
            thread = ledger.keep(c.beta.threads.create(messages=[{"role": "user", "content": "hello there"}]))
            for message in c.beta.threads.messages.list(thread_id=thread.id).data:
                ledger.keep(message)
        elif kind == "message":
            thread = rng.choice(threads)
            note = f"note {rng.random()}"
            ledger.keep(c.beta.threads.messages.create(thread_id=thread.id, role="user", content=note))
        elif kind == "edit":
            assistant = rng.choice(assistants)
            self.in_flight = {assistant.id}
            ledger.keep(c.beta.assistants.update(assistant.id, metadata={"n": str(rng.randint(0, 10**6))}))
        elif kind == "delete":
            files = ledger.live("file")
            if files:
                victim = rng.choice(files)
                self.in_flight = {victim.id}
                c.files.delete(victim.id)
                ledger.deleted.add(victim.id)
        else:
            self._run(rng.choice(assistants), rng.choices([HELLO, CODE, SLEEP, WEATHER], weights=[4, 3, 1, 1])[0])

    def _run(self, assistant, prompt: str) -> None:
        beta, ledger = self.client.beta, self.ledger
        thread = ledger.keep(beta.threads.create(messages=[{"role": "user", "content": prompt}]))
        run = ledger.keep(beta.threads.runs.create(thread_id=thread.id, assistant_id=assistant.id))
        self.run_started.set()
        if prompt in (SLEEP, WEATHER):
            return  # left running (or waiting for tool outputs) for the kill to find
        run = ledger.keep(beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=20))
        assert run.status == "completed", run.last_error
        for message in beta.threads.messages.list(thread_id=thread.id).data:
            ledger.keep(message)


def verify(client, ledger: Ledger, uncertain: set[str], data_dir: Path) -> dict[str, int]:
    """Every acknowledged object is back as acknowledged; runs ended; bytes intact; the database sound.

    ``uncertain`` names objects the request cut by the kill was changing: either version is right,
    and the one found becomes the acknowledged one.
    """
    counts = {"objects": 0, "interrupted runs": 0, "file bytes": 0}
    beta = client.beta
    fetch = {
        "assistant": lambda o: beta.assistants.retrieve(o.id),
        "thread": lambda o: beta.threads.retrieve(o.id),
        "thread.message": lambda o: beta.threads.messages.retrieve(o.id, thread_id=o.thread_id),
        "thread.run": lambda o: beta.threads.runs.retrieve(o.id, thread_id=o.thread_id),
        "file": lambda o: client.files.retrieve(o.id),
    }
    for obj_id, obj in list(ledger.objects.items()):
        if obj_id in ledger.deleted:
            with pytest.raises(openai.NotFoundError):
                client.files.retrieve(obj_id)
            continue
        try:
            now = fetch[obj.object](obj)
        except openai.NotFoundError:
            assert obj_id in uncertain, f"lost: {obj}"
            ledger.deleted.add(obj_id)
            continue
        counts["objects"] += 1
        if obj_id in uncertain:
            ledger.keep(now)
        elif obj.object == "thread.run" and obj.status in ACTIVE:
            kept = ("id", "thread_id", "assistant_id", "created_at", "model", "instructions", "tools")
            assert {k: getattr(now, k) for k in kept} == {k: getattr(obj, k) for k in kept}
            assert now.status in ("completed", "failed", "expired"), now
            if now.status != "completed":
                assert_interrupted(client, now)
                counts["interrupted runs"] += 1
            ledger.keep(now)
        else:
            assert now == obj
        if obj.object == "file":
            assert digest(client.files.content(obj_id).read()) == ledger.blobs[obj_id]
            counts["file bytes"] += 1
    integrity, stored = read_store(data_dir)
    assert integrity == "ok"
    for obj in stored.values():  # nothing dangles: every message, run and step has its thread
        thread_id = getattr(obj, "thread_id", None)
        assert thread_id is None or thread_id in stored, obj
    counts["rows"] = len(stored)
    return counts


@pytest.mark.slow
def test_sigkill_at_random_points_loses_nothing(tmp_path, cassette, fault_report):
    trials, rng = 20, random.Random(2026)
    data, ledger = tmp_path / "data", Ledger()
    totals = {"operations": 0, "interrupted runs": 0, "kernels": 0, "mid-run kills": 0, "outlived": 0}
    uncertain: set[str] = set()
    began = time.monotonic()
    for trial in range(trials + 1):
        server = serve(data, cassette)
        try:
            client = server.client()
            totals["interrupted runs"] += verify(client, ledger, uncertain, data)["interrupted runs"]
            if trial == trials:
                final = verify(client, ledger, set(), data)  # and once more, now that nothing is uncertain
                break
            work = Workload(server.client(timeout=20), ledger, random.Random(rng.random())).start()
            if trial % 2:  # half the kills aim at a run that was just started
                assert work.run_started.wait(30), "no run started"
                totals["mid-run kills"] += 1
                time.sleep(rng.uniform(0, 0.3))
            else:
                time.sleep(rng.uniform(0.2, 2.5))
        finally:
            if trial == trials:
                server.stop()
            else:
                started, leftovers = kill_and_reap(server)
        work.thread.join(30)
        assert not work.thread.is_alive() and work.error is None, work.error
        totals["outlived"] += len(leftovers)
        uncertain = work.in_flight
        totals["operations"] += work.operations
        totals["kernels"] += started
    assert totals["interrupted runs"] >= trials // 2, totals
    took = time.monotonic() - began
    fault_report("SIGKILL at random points of a busy workload, restart each time", trials=trials,
                 outcome=f"{totals['operations']} acknowledged operations across {trials} kills "
                         f"({totals['mid-run kills']} aimed just after a run started); "
                         f"{totals['interrupted runs']} interrupted runs came back failed/expired with a reason, "
                         f"none left active; of {totals['kernels']} kernel (and sandbox) processes of the killed "
                         f"servers, {totals['outlived']} outlived them (killed by the test; see the rows on "
                         "kernels of a killed server); "
                         f"{took:.0f} s",
                 nothing_lost=f"all {final['objects']} acknowledged objects identical after every restart, "
                              f"{final['file bytes']} files byte-identical, deleted files stay deleted; "
                              f"integrity_check ok and all {final['rows']} rows parse, "
                              "no message or run without its thread")


# -- kernels of a killed server ----------------------------------------------------------------


def _kernel_starting(server: CliServer) -> None:
    """Kill while a kernel is being started: a run in a new thread takes the pooled kernel, the pool refills
    (a kernel launched cold runs kernel_boot; one forked from the warm template is a new child of it)."""
    import psutil

    client = server.client()
    tutor = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    before = set(server.descendants())
    client.beta.threads.create_and_run(assistant_id=tutor.id, thread={"messages": [{"role": "user", "content": CODE}]})
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        for pid in set(server.descendants()) - before:
            try:
                if any(name in a for a in psutil.Process(pid).cmdline() for name in ("kernel_boot", "kernel_template")):
                    return
            except psutil.NoSuchProcess:
                pass
        time.sleep(0.002)
    pytest.fail("no kernel was being started")


def _helper_running(server: CliServer) -> None:
    """Model code starts a long-lived process of its own."""
    import psutil

    client = server.client()
    tutor = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    run = client.beta.threads.create_and_run_poll(assistant_id=tutor.id, poll_interval_ms=20,
                                                  thread={"messages": [{"role": "user", "content": HELPER}]})
    assert run.status == "completed", run.last_error
    commands = [" ".join(psutil.Process(pid).cmdline()) for pid in server.descendants()]
    assert any("time.sleep(600)" in c for c in commands), commands


@pytest.mark.slow
@pytest.mark.parametrize("moment", ["kernel starting", "helper process started by model code"])
def test_kernels_do_not_outlive_a_killed_server(tmp_path, cassette, moment, fault_report):
    server = serve(tmp_path / "data", cassette)
    try:
        if moment == "kernel starting":
            _kernel_starting(server)
        else:
            _helper_running(server)
            time.sleep(3.0)  # let the pool refill, so only the helper is in question
    finally:
        started, leftovers = kill_and_reap(server)
    fault_report(f"SIGKILLed server, {moment}: its kernel processes must exit with it", trials=1,
                 survived=not leftovers,
                 outcome=(f"all {started} processes it had started exited" if not leftovers else
                          f"{len(leftovers)} process(es) outlived the server (killed by the test)"),
                 nothing_lost="no orphaned kernel left running code" if not leftovers else "orphans found")
    assert not leftovers, f"{len(leftovers)} processes outlived the killed server"


# -- the Responses API ---------------------------------------------------------------------------

RESPONSE_TOOLS = [{"type": "code_interpreter", "container": {"type": "auto"}}]


@pytest.mark.slow
def test_sigkill_mid_response_then_restart_keeps_the_chain(tmp_path, fault_report):
    """A background response killed while its code runs ends failed after restart; what came before is intact."""
    data = tmp_path / "data"
    server = CliServer(data)
    try:
        client = server.client()
        done = client.responses.create(model="gpt-4o", input=CODE, tools=RESPONSE_TOOLS,
                                       include=["code_interpreter_call.outputs"])
        assert done.status == "completed", done.error
        cut = client.responses.create(model="gpt-4o", input=SLEEP, tools=RESPONSE_TOOLS, background=True,
                                      previous_response_id=done.id)
        for event in client.responses.retrieve(cut.id, stream=True):
            if event.type == "response.code_interpreter_call.interpreting":
                break
        time.sleep(0.5)
        running = client.responses.retrieve(cut.id)
        assert running.status == "in_progress" and running.output[0].type == "code_interpreter_call"
        before = client.responses.retrieve(done.id, include=["code_interpreter_call.outputs"])
        inputs = client.responses.input_items.list(cut.id).data
    finally:
        kill_and_reap(server)

    server = CliServer(data)
    try:
        client = server.client()
        assert client.responses.retrieve(done.id, include=["code_interpreter_call.outputs"]) == before
        interrupted = client.responses.retrieve(cut.id)
        assert interrupted.status == "failed" and "stopped while this response was in progress" in interrupted.error.message
        assert client.responses.input_items.list(cut.id).data == inputs
        again = client.responses.create(model="gpt-4o", input=CODE, tools=RESPONSE_TOOLS, previous_response_id=done.id)
        assert again.status == "completed", again.error
        integrity, _ = read_store(data)
        assert integrity == "ok"
    finally:
        server.kill()
    fault_report("SIGKILL mid-response (background, code running), then restart", trials=1,
                 outcome="the response is failed with the reason; the chain before it and its input items intact; "
                         "the chain goes on", nothing_lost="every stored response and item reads back equal")
