"""Who may use the runtime, and which files it will serve.

Beyond loopback the runtime refuses to start without a token, and with one it answers every request
that lacks it with OpenAI's 401. File ids and names that try to climb out of the data folder
(``../``, encoded dots, absolute paths, NUL bytes) reach nothing outside it.
"""

from __future__ import annotations

import ast
import http.client
import json
import socket
import subprocess
import sys
import tempfile
from pathlib import Path

import httpx
import openai
import pytest

from conftest import data_path
from reliability import CliServer

TOKEN = "classroom-secret-7f3a"
HELLO, LIST = "Say hello", "List the working folder"
LIST_CODE = ("import os\nprint(sorted(os.listdir('/mnt/data')))\n"
             "print(sorted(k for k in os.environ if 'TOKEN' in k.upper()))")
TURNS = {"source": "authored", "description": "Turns for the access tests.", "turns": [
    {"user": HELLO, "turn": 0, "reply": {"content": "Hello!", "tool_calls": []}},
    {"user": LIST, "turn": 0, "reply": {"content": None, "tool_calls": [
        {"name": "code_interpreter", "arguments": json.dumps({"code": LIST_CODE})}]}},
    {"user": LIST, "turn": 1, "reply": {"content": "Listed.", "tool_calls": []}},
]}


def public_address() -> str:
    """This machine's first non-loopback IPv4 address, else 0.0.0.0 (every interface)."""
    try:
        import psutil

        for addresses in psutil.net_if_addrs().values():
            for address in addresses:
                if address.family == socket.AF_INET and not address.address.startswith("127."):
                    return address.address
    except ImportError:
        pass
    return "0.0.0.0"


@pytest.fixture(scope="module")
def cassette(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("access") / "turns.json"
    path.write_text(json.dumps(TURNS), encoding="utf-8")
    return path


# -- binding beyond loopback -------------------------------------------------------------------


@pytest.mark.parametrize("host", [public_address(), "0.0.0.0", "::"], ids=["this machine's address", "0.0.0.0", "::"])
def test_non_loopback_bind_without_token_refuses_to_start(tmp_path, host, monkeypatch, fault_report, request):
    from tutor_nb.errors import RuntimeStartError
    from tutor_nb.runtime import start

    monkeypatch.delenv("TUTOR_NB_TOKEN", raising=False)
    with pytest.raises(RuntimeStartError) as caught:
        start(host=host, data_dir=tmp_path / "data")
    message = str(caught.value)
    assert f"Refusing to serve on {host} without a token" in message
    assert "--token" in message and "TUTOR_NB_TOKEN" in message and "127.0.0.1" in message
    assert not (tmp_path / "data").exists()  # refused before touching anything
    done = subprocess.run([sys.executable, "-m", "tutor_nb", "serve", "--port", "0", "--host", host,
                           "--data-dir", str(tmp_path / "cli")], capture_output=True, text=True, timeout=60,
                          cwd=Path(__file__).resolve().parents[1], env={"PATH": "", "PYTHONPATH": "."})
    assert done.returncode == 2 and "Refusing to serve" in done.stderr and "Traceback" not in done.stderr
    assert done.stdout == ""  # no URL was ever announced
    fault_report(f"bind {request.node.callspec.id} without a token",
                 trials=2, outcome="refused to start (in-process and CLI, exit code 2) with a message naming "
                                   "--token, TUTOR_NB_TOKEN and 127.0.0.1",
                 nothing_lost="nothing served, no data folder created")


def test_loopback_addresses_need_no_token(tmp_path, monkeypatch):
    from tutor_nb.runtime.config import Settings

    monkeypatch.delenv("TUTOR_NB_TOKEN", raising=False)
    for host in ("127.0.0.1", "127.0.0.2", "localhost", "::1"):
        assert Settings(host=host, data_dir=tmp_path).is_loopback


# -- the token ---------------------------------------------------------------------------------


ROUTES = [
    ("GET", "/v1"), ("GET", "/v1/assistants"), ("POST", "/v1/assistants"), ("GET", "/v1/assistants/asst_x"),
    ("POST", "/v1/assistants/asst_x"), ("DELETE", "/v1/assistants/asst_x"), ("POST", "/v1/threads"),
    ("POST", "/v1/threads/runs"), ("GET", "/v1/threads/t"), ("POST", "/v1/threads/t"), ("DELETE", "/v1/threads/t"),
    ("GET", "/v1/threads/t/messages"), ("POST", "/v1/threads/t/messages"), ("GET", "/v1/threads/t/messages/m"),
    ("POST", "/v1/threads/t/messages/m"), ("DELETE", "/v1/threads/t/messages/m"), ("GET", "/v1/threads/t/runs"),
    ("POST", "/v1/threads/t/runs"), ("GET", "/v1/threads/t/runs/r"), ("POST", "/v1/threads/t/runs/r"),
    ("POST", "/v1/threads/t/runs/r/cancel"), ("POST", "/v1/threads/t/runs/r/submit_tool_outputs"),
    ("GET", "/v1/threads/t/runs/r/steps"), ("GET", "/v1/threads/t/runs/r/steps/s"), ("GET", "/v1/files"),
    ("POST", "/v1/files"), ("GET", "/v1/files/f"), ("DELETE", "/v1/files/f"), ("GET", "/v1/files/f/content"),
    ("GET", "/v1/nothing"), ("PUT", "/v1/assistants"), ("GET", "/"),
]


@pytest.fixture(scope="module")
def guarded(tmp_path_factory, cassette):
    """A runtime bound to this machine's non-loopback address, with a token."""
    from tutor_nb.runtime import start

    rt = start(host=public_address(), token=TOKEN, data_dir=tmp_path_factory.mktemp("guarded"),
               cassettes=[data_path("cassettes"), cassette], exec_timeout=30)
    assert not rt.base_url.startswith("http://127.")
    yield rt
    rt.stop()


def test_every_request_without_the_token_is_401(guarded, fault_report):
    origin = guarded.base_url.removesuffix("/v1")
    wrong = [{}, {"authorization": "Bearer"}, {"authorization": "Bearer wrong"}, {"authorization": f"Basic {TOKEN}x"},
             {"authorization": f"Bearer {TOKEN[:-1]}"}, {"authorization": f"Bearer {TOKEN}x"},
             {"x-api-key": TOKEN}]
    refused = 0
    with httpx.Client(base_url=origin, timeout=30) as http:
        for headers in wrong:
            for method, path in ROUTES:
                body = {"model": "m"} if method == "POST" else None
                response = http.request(method, path, headers=headers, json=body)
                assert response.status_code == 401, (method, path, headers, response.text)
                error = response.json()["error"]
                assert set(error) == {"message", "type", "param", "code"} and error["code"] == "invalid_api_key"
                assert "token" in error["message"]
                refused += 1
        answered = [http.request(m, p, headers={"authorization": f"Bearer {TOKEN}"}).status_code for m, p in ROUTES]
    assert 401 not in answered and 500 not in answered, answered
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(base_url=guarded.base_url, api_key="not-the-token", max_retries=0).beta.assistants.list()
    client = guarded.client(max_retries=0)
    assert client.beta.assistants.list().data == []  # nothing the refused POSTs sent was created
    fault_report("requests without the token on a non-loopback bind", trials=refused,
                 outcome=f"401 invalid_api_key (OpenAI's envelope) on all {len(ROUTES)} routes, unknown ones "
                         f"included, for {len(wrong)} kinds of missing or wrong credentials; the SDK raises "
                         "AuthenticationError; with the token none of them is 401",
                 nothing_lost="none of the refused requests created anything")


def test_with_the_token_everything_works_and_model_code_never_sees_it(guarded, fault_report):
    client = guarded.client(max_retries=0)
    tutor = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": HELLO}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=tutor.id, poll_interval_ms=20)
    assert run.status == "completed", run.last_error
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content=LIST)
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=tutor.id, poll_interval_ms=20)
    assert run.status == "completed", run.last_error
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    logs = steps[0].step_details.tool_calls[0].code_interpreter.outputs[0].logs
    assert logs.splitlines()[-1] == "[]" and TOKEN not in logs
    fault_report("the token and model code", trials=1,
                 outcome="runs work with the token; code the model runs finds no *TOKEN* variable in its "
                         "environment and never prints the token",
                 nothing_lost="-")


# -- paths -------------------------------------------------------------------------------------


TRAVERSALS = [
    "../../etc/passwd", "..%2F..%2Fetc%2Fpasswd", "%2e%2e%2f%2e%2e%2fetc%2fpasswd", "%252e%252e%252fetc%252fpasswd",
    "..%5C..%5Cetc%5Cpasswd", "....//....//etc/passwd", "%2Fetc%2Fpasswd", "/etc/passwd", "..", "%2e%2e",
    "..%2Ftutor_nb.sqlite3", "../tutor_nb.sqlite3", "..%2F..%2Fcanary.txt", "file-abc%00.png", "files%2F..%2F..",
    "%2E%2E%2F%2E%2E%2F%2E%2E%2F%2E%2E%2Fproc%2Fself%2Fenviron",
]


@pytest.fixture(scope="module")
def local(tmp_path_factory, cassette):
    from tutor_nb.runtime import start

    folder = tmp_path_factory.mktemp("paths")
    (folder / "canary.txt").write_text("CANARY-OUTSIDE-THE-DATA-FOLDER")
    rt = start(data_dir=folder / "data", cassettes=[data_path("cassettes"), cassette], exec_timeout=30)
    yield rt
    rt.stop()


def send_raw(runtime, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
    """One request with the path exactly as written: no client normalises its dots or decodes its escapes."""
    url = httpx.URL(runtime.base_url)
    connection = http.client.HTTPConnection(url.host, url.port, timeout=30)
    try:
        headers = {"content-type": "application/json"} if body is not None else {}
        headers["authorization"] = f"Bearer {runtime.settings.token}"
        connection.request(method, path, body=json.dumps(body) if body is not None else None, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


def _outside(body: bytes) -> bool:
    return any(marker in body for marker in (b"root:", b"SQLite format 3", b"CANARY-OUTSIDE", b"PATH="))


def test_file_ids_cannot_climb_out_of_the_data_folder(local, fault_report):
    client = local.client(max_retries=0)
    kept = client.files.create(file=("kept.txt", b"keep me"), purpose="assistants")
    data_dir = local.settings.data_dir
    before = sorted(p.relative_to(data_dir) for p in data_dir.rglob("*") if ".kernels" not in p.parts)
    tried = 0
    for attempt in TRAVERSALS:
        for method, path in (("GET", f"/v1/files/{attempt}/content"), ("GET", f"/v1/files/{attempt}"),
                             ("DELETE", f"/v1/files/{attempt}"), ("GET", f"/v1/files/{kept.id}/{attempt}")):
            status, body = send_raw(local, method, path)
            assert status in (400, 404, 405), (method, path, status, body[:300])
            assert not _outside(body), (method, path, body[:200])
            assert json.loads(body)["error"]["type"] == "invalid_request_error"
            tried += 1
    assert client.files.content(kept.id).read() == b"keep me"
    after = sorted(p.relative_to(data_dir) for p in data_dir.rglob("*") if ".kernels" not in p.parts)
    assert after == before and (data_dir / "tutor_nb.sqlite3").exists()
    assert (data_dir.parent / "canary.txt").read_text() == "CANARY-OUTSIDE-THE-DATA-FOLDER"
    fault_report("path traversal in file ids", trials=tried,
                 outcome=f"{len(TRAVERSALS)} traversal forms (../, %2e%2e, double encoding, backslashes, absolute "
                         "paths, NUL bytes, /proc) in GET content, GET, DELETE: every answer 400/404/405, "
                         "no byte from outside the data folder",
                 nothing_lost="data folder listing unchanged; the database and a canary file beside the folder intact")


def test_uploaded_names_and_thread_ids_stay_inside(local, fault_report):
    client = local.client(max_retries=0)
    data_dir = local.settings.data_dir
    hostile = ["../../escape-up.txt", "/tmp/escape-absolute.txt", "..\\..\\escape-back.txt", "..", "a/../../b.txt",
               'quote".txt\r\nX-Injected: 1']
    uploads = [client.files.create(file=(name, f"from {name!r}".encode()), purpose="assistants") for name in hostile]
    names = [u.filename for u in uploads]
    assert all("/" not in n and "\\" not in n and n not in ("", ".", "..") for n in names), names
    for upload in uploads:
        response = client.files.with_raw_response.content(upload.id)
        assert "x-injected" not in response.headers and "\n" not in response.headers["content-disposition"]
    # the files land in the thread's working folder, under their plain names, and nowhere else
    tutor = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": LIST, "attachments": [
        {"file_id": u.id, "tools": [{"type": "code_interpreter"}]} for u in uploads]}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=tutor.id, poll_interval_ms=20)
    assert run.status == "completed", run.last_error
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    logs = steps[0].step_details.tool_calls[0].code_interpreter.outputs[0].logs
    assert set(ast.literal_eval(logs.splitlines()[0])) == set(names), (logs, names)
    sandbox = data_dir / "sandbox"
    workdir = sandbox / thread.id
    strays = [p for p in data_dir.parent.rglob("*") if p.name.startswith(("escape-", "b.txt"))
              and workdir not in p.parents]
    assert strays == [] and not (Path(tempfile.gettempdir()) / "escape-absolute.txt").exists()
    # thread ids that try to climb out are unknown ids; no folder appears outside the sandbox
    tried = 0
    for attempt in ("../../evil", "..%2F..%2Fevil", "%2e%2e", "..%2Fsandbox", "thread_x%2F..%2F..%2Fevil",
                    "%2Ftmp%2Fevil"):
        for method, path, body in (("POST", f"/v1/threads/{attempt}/messages", {"role": "user", "content": "x"}),
                                   ("POST", f"/v1/threads/{attempt}/runs", {"assistant_id": tutor.id}),
                                   ("DELETE", f"/v1/threads/{attempt}", None)):
            status, answer = send_raw(local, method, path, body)
            assert status in (400, 404, 405), (method, path, status, answer[:300])
            tried += 1
    assert {p.name for p in sandbox.iterdir() if not p.name.startswith(".")} <= {thread.id}
    assert not (data_dir.parent / "evil").exists() and not (data_dir / "evil").exists()
    fault_report("hostile upload names and thread ids", trials=len(hostile) + tried,
                 outcome=f"{len(hostile)} names (../, absolute, backslashes, '..', CR/LF header injection) stored as "
                         f"plain names {names}; staged only inside the thread's folder; {tried} requests on "
                         "thread ids with ../ answered 400/404/405",
                 nothing_lost="no file or folder written outside the data folder; no header injected")
