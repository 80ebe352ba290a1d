"""Attacks model-written code makes on the runtime that runs it, through the real API and real kernels.

The server runs as ``python -m tutor_nb serve`` with two canary secrets (its token and a model key,
both from the environment, as the docs say to give them). The code the model "writes" (a replay
cassette) hunts for them in every process's environ and cmdline, opens the database, reads another
thread's folder and signals the server. What it may reach depends on the platform (docs/sandbox.md);
each platform's row of that table is asserted here.
"""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest

from reliability import CliServer, kill_pids, wait_gone

CANARY_TOKEN = "canary-token-93a1c7e2"
CANARY_KEY = "sk-canary-model-key-4d2f08"
PROBE, SECRET, HELPERS, REMEMBER, RECALL = ("Probe the runtime", "Keep a secret", "Start helpers",
                                            "Remember x", "Recall x")
PROBE_CODE = r"""
import json, os
target = json.load(open('/mnt/data/target.json'))
found = {}
for pid in os.listdir('/proc'):
    if not pid.isdigit():
        continue
    for part in ('environ', 'cmdline'):
        try:
            with open(f'/proc/{pid}/{part}', 'rb') as f:
                data = f.read()
        except OSError:
            continue
        for name, canary in target['canaries'].items():
            if canary.encode() in data:
                found.setdefault(name, []).append(f'{pid}/{part}')
result = {'found': found}
def attempt(label, action):
    try:
        action()
        result[label] = 'yes'
    except OSError as e:
        result[label] = type(e).__name__
attempt('read database', lambda: open(target['database'], 'rb').read(16))
attempt('write database', lambda: open(target['database'], 'r+b').close())
attempt('list data dir', lambda: os.listdir(target['data_dir']))
attempt('list other thread', lambda: os.listdir(target['other']))
attempt('read other thread', lambda: open(os.path.join(target['other'], 'secret.txt')).read())
attempt('signal server', lambda: os.kill(target['server'], 0))
print(json.dumps(result))
"""
HELPER_CODE = r"""
import os, subprocess
plain = subprocess.Popen(['sleep', '600'])
session = subprocess.Popen(['sleep', '601'], start_new_session=True)
tool = subprocess.Popen(['setsid', 'sleep', '602'])
r, w = os.pipe()
child = os.fork()
if child == 0:
    os.setsid()
    if os.fork() == 0:
        os.write(w, str(os.getpid()).encode())
        os.execvp('sleep', ['sleep', '603'])
    os._exit(0)
os.close(w)
os.waitpid(child, 0)
grandchild = int(os.read(r, 32))
import time; time.sleep(0.3)
print(plain.pid, session.pid, grandchild)
"""


def code_turns(user: str, code: str) -> list[dict]:
    return [{"user": user, "turn": 0, "reply": {"content": None, "tool_calls": [
                {"name": "code_interpreter", "arguments": json.dumps({"code": code})}]}},
            {"user": user, "turn": 1, "reply": {"content": "Done.", "tool_calls": []}}]


TURNS = {"source": "authored", "description": "Model code that attacks the runtime.", "turns": [
    *code_turns(PROBE, PROBE_CODE), *code_turns(SECRET, "open('secret.txt', 'w').write('thread A only')"),
    *code_turns(HELPERS, HELPER_CODE), *code_turns(REMEMBER, "x = 'kept'"), *code_turns(RECALL, "print(x)"),
]}


@pytest.fixture(scope="module")
def cassette(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("attacks") / "turns.json"
    path.write_text(json.dumps(TURNS), encoding="utf-8")
    return path


def platform() -> str:
    from tutor_nb.runtime import kernel_boot

    if os.geteuid() == 0:
        return "root"
    return "bubblewrap" if kernel_boot.find_bwrap() else "plain"


def run_code(client, tutor, prompt: str, *, thread_id: str | None = None, file_ids=()):
    attachments = [{"file_id": f, "tools": [{"type": "code_interpreter"}]} for f in file_ids]
    if thread_id is None:
        thread_id = client.beta.threads.create().id
    client.beta.threads.messages.create(thread_id=thread_id, role="user", content=prompt, attachments=attachments)
    run = client.beta.threads.runs.create_and_poll(thread_id=thread_id, assistant_id=tutor.id, poll_interval_ms=20)
    assert run.status == "completed", run.last_error
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread_id, order="asc").data
    outputs = steps[0].step_details.tool_calls[0].code_interpreter.outputs
    return thread_id, outputs[0].logs if outputs else ""


#: what model code reaches on each platform (docs/sandbox.md's table); "yes" means it can. As root the
#: data folder is either hidden from the kernel (not found) or closed to its user (permission denied).
DENIED = {"PermissionError", "FileNotFoundError"}
EXPECTED = {
    "root": {"read database": DENIED, "write database": DENIED, "list data dir": DENIED,
             "list other thread": {"PermissionError"}, "read other thread": {"PermissionError"},
             "signal server": {"PermissionError"}},
    "plain": {"read database": {"yes"}, "write database": {"yes"}, "list data dir": {"yes"},
              "list other thread": {"yes"}, "read other thread": {"yes"}, "signal server": {"yes"}},
}


def test_model_code_cannot_reach_the_servers_secrets_data_or_process(tmp_path, cassette, fault_report):
    data = tmp_path / "data"
    env = {"TUTOR_NB_TOKEN": CANARY_TOKEN, "OPENAI_API_KEY": CANARY_KEY, "TUTOR_NB_MODEL_API_KEY": CANARY_KEY}
    server = CliServer(data, "--cassettes", str(cassette), "--exec-timeout", "60", env=env)
    try:
        client = server.client(api_key=CANARY_TOKEN)
        tutor = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
        other, _ = run_code(client, tutor, SECRET)
        target = {"canaries": {"token": CANARY_TOKEN, "model key": CANARY_KEY}, "server": server.proc.pid,
                  "database": str(data / "tutor_nb.sqlite3"), "data_dir": str(data),
                  "other": os.path.realpath(data / "sandbox" / other)}
        upload = client.files.create(file=("target.json", json.dumps(target).encode()), purpose="assistants")
        _, logs = run_code(client, tutor, PROBE, file_ids=[upload.id])
        result = json.loads(logs.strip().splitlines()[-1])
        assert server.proc.poll() is None
        assert client.beta.assistants.retrieve(tutor.id).id == tutor.id  # the database was not touched
    finally:
        server.stop()
    kind = platform()
    assert result.pop("found") == {}, result  # on every platform: no secret in any process it can read
    if kind in EXPECTED:
        assert all(result[k] in allowed for k, allowed in EXPECTED[kind].items()), result
    else:  # bubblewrap: its own pid namespace and only its folder in view
        assert result["signal server"] == "ProcessLookupError" and result["read database"] != "yes", result
    fault_report(f"model code hunting secrets, data and the server ({kind})", trials=1 + len(result),
                 outcome=f"no canary in any /proc/*/environ or cmdline; {result}",
                 nothing_lost="server alive, database intact")


@pytest.mark.slow
@pytest.mark.timeout(1200)
def test_sigkilled_server_leaves_no_helper_running(tmp_path, cassette, fault_report):
    """20 trials: model code starts a plain, a setsid'd, a setsid(1) and a double-forked helper; the server
    is SIGKILLed; within 3 s none of them may be left. Half the trials fork kernels from the warm template
    (the default), half start them cold."""
    trials, survivors, helpers = 20, [], 0
    data = tmp_path / "data"
    began = time.monotonic()
    for trial in range(trials):
        server = CliServer(data, "--cassettes", str(cassette), "--pool-size", "0", *(["--cold-kernels"] * (trial % 2)))
        try:
            client = server.client()
            tutor = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
            _, logs = run_code(client, tutor, HELPERS)
            pids = [int(p) for p in logs.split()[-3:]]
            sleepers = [p.pid for p in psutil.process_iter(["cmdline"])
                        if (p.info["cmdline"] or [""])[0] == "sleep" and p.info["cmdline"][1:2] == ["602"]
                        and p.pid in {c.pid for c in _tree(server.proc.pid)}]
            pids += sleepers
            helpers += len(pids)
        finally:
            server.kill()
        left = wait_gone(pids, 3.0)
        survivors += left
        kill_pids(left)
    fault_report("SIGKILLed server while model code's helpers run (plain, setsid, setsid(1), double fork)",
                 trials=trials, survived=not survivors,
                 outcome=f"{helpers} helpers across {trials} kills; {len(survivors)} still running 3 s later; "
                         f"{time.monotonic() - began:.0f} s",
                 nothing_lost="no process of model code outlived the server" if not survivors else "orphans found")
    assert not survivors, f"{len(survivors)} of {helpers} helpers outlived the server"


def kernels_of(server: int) -> int:
    """The server's kernels: its children that launch one (kernel_boot, or bubblewrap running it), and the
    children of its warm template (each a kernel forked from it)."""
    count = 0
    for child in psutil.Process(server).children():
        try:
            command = " ".join(child.cmdline())
            if "kernel_template" in command:
                count += len(child.children())
            elif "kernel_boot" in command or "ipykernel" in command:
                count += 1
        except psutil.NoSuchProcess:
            pass
    return count


def _tree(pid: int) -> list[psutil.Process]:
    try:
        return psutil.Process(pid).children(recursive=True)
    except psutil.NoSuchProcess:
        return []


def test_kernel_cap_evicts_the_idle_kernel_used_longest_ago(tmp_path, cassette, fault_report):
    server = CliServer(tmp_path / "data", "--cassettes", str(cassette), "--max-kernels", "2", "--pool-size", "0")
    try:
        client = server.client()
        tutor = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
        first, _ = run_code(client, tutor, REMEMBER)
        threads, counts = [], []
        for _ in range(3):
            threads.append(run_code(client, tutor, REMEMBER)[0])
            counts.append(kernels_of(server.proc.pid))
        _, recalled = run_code(client, tutor, RECALL, thread_id=threads[-1])
        _, lost = run_code(client, tutor, RECALL, thread_id=first)
        counts.append(kernels_of(server.proc.pid))
    finally:
        server.stop()
    assert 1 <= min(counts) and max(counts) <= 2, counts
    assert recalled == "kept\n"
    assert "NameError" in lost
    notes = [line for line in lost.splitlines() if line.startswith("[sandbox]")]
    assert len(notes) == 1 and "gone" in notes[0] and "2 kernels" in notes[0], lost
    fault_report("more threads than the kernel cap (--max-kernels 2, 4 threads)", trials=5,
                 outcome=f"at most {max(counts)} kernels; the longest-idle one was shut down and its thread's "
                         f"next logs said: {notes[0]!r}",
                 nothing_lost="every run completed; the evicted thread runs code again")


def test_root_without_mount_namespaces_says_what_model_code_can_reach(tmp_path, fault_report):
    """Docker's default (no CAP_SYS_ADMIN): kernels cannot get a view and a user of their own, and the
    runtime says so in one line when it starts (the table's second row)."""
    import shutil
    import subprocess
    import sys

    from reliability import ROOT

    setpriv = shutil.which("setpriv")
    if os.geteuid() != 0 or setpriv is None:
        pytest.skip("needs root and setpriv (util-linux) to take CAP_SYS_ADMIN away")
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TUTOR_NB_"))}
    env["PYTHONPATH"] = str(ROOT)
    cmd = [setpriv, "--bounding-set", "-sys_admin", "--inh-caps", "-sys_admin", "--", sys.executable, "-m",
           "tutor_nb", "serve", "--port", "0", "--pool-size", "0", "--data-dir", str(tmp_path / "data")]
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        ready, note = proc.stdout.readline(), proc.stdout.readline()
    finally:
        proc.send_signal(signal.SIGINT)
        proc.wait(30)
    assert "ready at http://127.0.0.1:" in ready and "api_key=" in ready, ready
    assert note.startswith("note: running as root, but kernels cannot run as users of their own here"), note
    assert "whatever root can" in note
    fault_report("root without mount namespaces (CAP_SYS_ADMIN taken away)", trials=1,
                 outcome=f"the runtime says at start: {note.strip()!r}", nothing_lost="-")
