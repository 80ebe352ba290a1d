"""The token by default, secrets only from the environment or private files, and a private data folder.

``serve`` makes a token, prints it on its ready line and leaves it (mode 0600) where
``tutor_nb.connect(base_url=...)`` finds it; the in-process runtime's token never reaches the learner.
No secret is ever on a command line, and files other users can read are refused.
"""

from __future__ import annotations

import os
import stat
import subprocess
import sys
from pathlib import Path

import httpx
import openai
import pytest

from fakemodel import FakeModel, math_tutor_script
from reliability import ROOT, CliServer

MODEL_KEY = "sk-model-key-from-a-file-77c1"


def mode(path: Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


def test_serve_makes_a_token_prints_it_and_keeps_it_private(tmp_path, monkeypatch, fault_report):
    import tutor_nb

    data = tmp_path / "data"
    server = CliServer(data)
    try:
        assert server.api_key != "local" and len(server.api_key) >= 32  # printed as api_key=... on the ready line
        url = httpx.URL(server.base_url)
        anonymous = httpx.get(f"http://{url.host}:{url.port}/v1/assistants")
        assert anonymous.status_code == 401
        message = anonymous.json()["error"]["message"]
        assert "api_key" in message and "connect(base_url=...)" in message and "server.json" in message
        assert str(data) not in message
        assert mode(data / "server.json") == 0o600 and server.api_key in (data / "server.json").read_text()
        monkeypatch.setenv("TUTOR_NB_DATA_DIR", str(data))
        client = tutor_nb.connect(base_url=server.base_url, max_retries=0)  # finds the token by itself
        assert client.api_key == server.api_key
        assert client.beta.assistants.create(model="gpt-4o").id.startswith("asst_")
        with pytest.raises(openai.AuthenticationError):
            openai.OpenAI(base_url=server.base_url, api_key="guess", max_retries=0).beta.assistants.list()
        commands = [" ".join(p.cmdline()) for p in _tree(server.proc.pid)]
        assert not any(server.api_key in c for c in commands)
    finally:
        assert server.stop() == 0
    assert not (data / "server.json").exists()  # a clean stop takes it away
    fault_report("requests without the token on loopback", trials=2,
                 outcome="401 saying where the token is (connect(base_url=...), server.json); the SDK raises "
                         "AuthenticationError; the token is on no process's command line",
                 nothing_lost="-")


def _tree(pid: int):
    import psutil

    process = psutil.Process(pid)
    return [process, *process.children(recursive=True)]


def test_the_data_folder_is_closed_to_everyone_else(tmp_path):
    from tutor_nb.runtime import start

    rt = start(data_dir=tmp_path / "data", pool_size=0)
    try:
        client = rt.client(max_retries=0)
        client.files.create(file=("notes.txt", b"private"), purpose="assistants")
        rt._server.app.state.runtime.sandbox.workdir("thread_modes")
        data = rt.settings.data_dir
        assert mode(data) == 0o700 and mode(data / "files") == 0o700
        for name in ("tutor_nb.sqlite3", "tutor_nb.sqlite3-wal", "tutor_nb.sqlite3-shm"):
            assert mode(data / name) == 0o600, name
        assert mode(data / "sandbox" / "thread_modes") == 0o700
        assert all(mode(p) & 0o077 == 0 for p in (data / "files").iterdir())
    finally:
        rt.stop()


def test_in_process_runtime_always_has_a_token_the_learner_never_types(tmp_path):
    from tutor_nb.runtime import start

    rt = start(data_dir=tmp_path / "data", pool_size=0)
    try:
        assert rt.settings.token and len(rt.settings.token) >= 32
        assert rt.client(max_retries=0).beta.assistants.list().data == []
        assert httpx.get(rt.base_url + "/assistants").status_code == 401
    finally:
        rt.stop()


def serve(*args: str, env: dict[str, str] | None = None, timeout: float = 60) -> subprocess.CompletedProcess:
    environment = {k: v for k, v in os.environ.items() if not k.startswith(("OPENAI_", "TUTOR_NB_"))}
    environment.update(PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "tutor_nb", "serve", "--port", "0", *args], cwd=ROOT,
                          env=environment, capture_output=True, text=True, timeout=timeout)


def test_secret_files_other_users_can_read_are_refused(tmp_path, fault_report):
    shared = tmp_path / "token"
    shared.write_text("readable-by-all\n")
    shared.chmod(0o644)
    cases = {
        "--token-file": (shared, "can be read by other users", "chmod 600"),
        "--model-api-key-file": (shared, "can be read by other users", "chmod 600"),
    }
    missing, empty = tmp_path / "absent", tmp_path / "empty"
    empty.write_text("\n")
    empty.chmod(0o600)
    tried = 0
    for option, (path, says, fix) in cases.items():
        done = serve(option, str(path), "--data-dir", str(tmp_path / "d"))
        assert done.returncode == 2 and says in done.stderr and fix in done.stderr, done.stderr
        assert "Traceback" not in done.stderr and done.stdout == ""
        tried += 1
    for path, says in ((missing, "does not exist"), (empty, "is empty")):
        done = serve("--token-file", str(path), "--data-dir", str(tmp_path / "d"))
        assert done.returncode == 2 and says in done.stderr, done.stderr
        tried += 1
    done = serve("--model-api-key", "sk-on-the-command-line", "--data-dir", str(tmp_path / "d"))
    assert done.returncode == 2 and "--model-api-key was removed" in done.stderr and "TUTOR_NB_MODEL_API_KEY" in done.stderr
    assert "sk-on-the-command-line" not in done.stderr + done.stdout
    done = serve("--token", "a", "--token-file", str(empty), "--data-dir", str(tmp_path / "d"))
    assert done.returncode == 2 and "not both" in done.stderr
    fault_report("secret files other users can read, missing or empty; a key on the command line", trials=tried + 2,
                 outcome="refused at start (exit 2) with a message naming the file and the fix (chmod 600); "
                         "--model-api-key no longer exists",
                 nothing_lost="nothing served")


def test_model_key_from_a_private_file_reaches_the_model_server(tmp_path):
    key_file = tmp_path / "model.key"
    key_file.write_text(MODEL_KEY + "\n")
    key_file.chmod(0o600)
    with FakeModel(math_tutor_script, api_key=MODEL_KEY) as fake:
        server = CliServer(tmp_path / "data", "--backend", "chat", "--model-base-url", fake.base_url,
                           "--model", "stand-in", "--model-api-key-file", str(key_file))
        try:
            client = server.client()
            tutor = client.beta.assistants.create(model="gpt-4o")
            run = client.beta.threads.create_and_run_poll(
                assistant_id=tutor.id, thread={"messages": [{"role": "user", "content": "What is 2 + 2?"}]},
                poll_interval_ms=20)
            assert run.status == "completed", run.last_error
            assert fake.headers[0]["authorization"] == f"Bearer {MODEL_KEY}"
            commands = [" ".join(p.cmdline()) for p in _tree(server.proc.pid)]
            assert not any(MODEL_KEY in c for c in commands)
        finally:
            server.stop()


def test_token_on_the_command_line_warns_and_no_token_says_so(tmp_path):
    warned = CliServer(tmp_path / "a", "--token", "visible-to-ps")
    try:
        assert "--token puts the token on the command line" in warned.stderr()
        assert warned.client(api_key="visible-to-ps").beta.assistants.list().data == []
    finally:
        warned.stop()
    open_server = CliServer(tmp_path / "b", "--no-token")
    try:
        assert open_server.api_key == "local"  # it printed none
        assert httpx.get(open_server.base_url + "/assistants").status_code == 200
    finally:
        open_server.stop()


def test_serve_help_lists_every_option_with_its_default_and_the_data_folder(tmp_path):
    done = subprocess.run([sys.executable, "-m", "tutor_nb", "serve", "--help"], cwd=ROOT, capture_output=True,
                          text=True, env={**os.environ, "TUTOR_NB_DATA_DIR": str(tmp_path / "where")}, timeout=60)
    text = " ".join(done.stdout.split())  # as read, not as wrapped
    assert done.returncode == 0 and "``" not in text and ":class:" not in text
    assert str(tmp_path / "where") in text
    for option in ("--host", "--port", "--data-dir", "--backend", "--model-base-url", "--model-api-key-file",
                   "--model", "--token-file", "--no-token", "--allow-host", "--allow-origin", "--exec-timeout",
                   "--idle-timeout", "--pool-size", "--memory-limit-mb", "--max-kernels", "--replay-delay"):
        assert option in text, option
    for default in ("(default: 127.0.0.1)", "(default: 8765)", "(default: 60.0)", "(default: 900.0)",
                    "(default: 2048)", "(default: replay)"):
        assert default in text, default
    assert "TUTOR_NB_MODEL_API_KEY" in text and "TUTOR_NB_TOKEN" in text
