"""Upload names that break file systems: NUL and control characters, 300 bytes, paths. Each is made safe at
upload (or refused with a 400 that says why), every later run that stages it still works, and no answer
ever shows an absolute path of the data folder."""

from __future__ import annotations

import json

import httpx
import pytest

from conftest import data_path

LIST, LIST_CODE = "List the working folder", "import os\nprint(sorted(os.listdir('/mnt/data')))"
TURNS = {"source": "authored", "description": "Turns for the upload tests.", "turns": [
    {"user": LIST, "turn": 0, "reply": {"content": None, "tool_calls": [
        {"name": "code_interpreter", "arguments": json.dumps({"code": LIST_CODE})}]}},
    {"user": LIST, "turn": 1, "reply": {"content": "Listed.", "tool_calls": []}},
]}
HOSTILE = [
    b"nul\x00byte.txt", b"\x00", "x".encode() * 300 + b".csv", ("\u00e9" * 200 + ".parquet").encode(),
    b"../../../../etc/cron.d/evil", b"/etc/passwd", b"C:\\Users\\me\\evil.txt", b"dir/sub/name.txt",
    b"bell\x07\x1b[31mred\r\n.txt", b"tab\there.txt", b"   ", b"..", b".hidden.txt", b"\xff\xfe broken utf-8.txt",
]


@pytest.fixture(scope="module")
def rt(tmp_path_factory):
    from tutor_nb.runtime import start

    folder = tmp_path_factory.mktemp("uploads")
    (folder / "turns.json").write_text(json.dumps(TURNS), encoding="utf-8")
    runtime = start(data_dir=folder / "data", cassettes=[data_path("cassettes"), folder / "turns.json"])
    yield runtime
    runtime.stop()


def upload(rt, name: bytes) -> httpx.Response:
    """A multipart upload with the file name's bytes exactly as given (no client escapes them)."""
    body = (b"--b0undary\r\nContent-Disposition: form-data; name=\"purpose\"\r\n\r\nassistants\r\n"
            b"--b0undary\r\nContent-Disposition: form-data; name=\"file\"; filename=\"" + name.replace(b'"', b"%22")
            + b"\"\r\nContent-Type: application/octet-stream\r\n\r\ncontent of the file\r\n--b0undary--\r\n")
    client = rt.client()
    headers = {"content-type": "multipart/form-data; boundary=b0undary", "authorization": f"Bearer {client.api_key}"}
    return httpx.post(rt.base_url + "/files", content=body, headers=headers, timeout=30)


def test_hostile_upload_names_are_made_safe_and_runs_still_work(rt, fault_report):
    data_dir = str(rt.settings.data_dir.resolve())
    kept, refused = [], []
    for name in HOSTILE:
        response = upload(rt, name)
        assert data_dir not in response.text and str(rt.settings.data_dir) not in response.text
        if response.status_code == 400:
            refused.append(name)
            message = response.json()["error"]["message"]
            assert "name" in message or "multipart" in message, message  # says why (a CR/LF breaks the part)
            continue
        assert response.status_code == 200, (name, response.text)
        meta = response.json()
        filename = meta["filename"]
        assert filename and filename not in (".", "..") and "/" not in filename and "\\" not in filename
        assert not any(ord(c) < 32 or ord(c) == 127 for c in filename), filename
        assert len(filename.encode()) <= 255, len(filename.encode())
        if name.endswith((b".csv", b".parquet")):
            assert filename.endswith(name.decode()[-4:]), filename  # the extension survives shortening
        kept.append(meta)
    client = rt.client(max_retries=0)
    tutor = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
    thread = client.beta.threads.create(messages=[{"role": "user", "content": LIST, "attachments": [
        {"file_id": m["id"], "tools": [{"type": "code_interpreter"}]} for m in kept]}])
    run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=tutor.id, poll_interval_ms=20)
    assert run.status == "completed", run.last_error
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
    logs = steps[0].step_details.tool_calls[0].code_interpreter.outputs[0].logs
    assert data_dir not in logs
    listed = set(eval(logs.splitlines()[0]))  # noqa: S307 - the kernel printed a list of str
    assert {m["filename"] for m in kept} <= listed, (listed, [m["filename"] for m in kept])
    # and the thread keeps working: a second run stages the same files again
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content=LIST)
    again = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=tutor.id, poll_interval_ms=20)
    assert again.status == "completed", again.last_error
    fault_report("hostile upload names (NUL, control characters, 300 bytes, paths), then runs that stage them",
                 trials=len(HOSTILE) + 2,
                 outcome=f"{len(kept)} stored under safe names (<= 255 bytes, extension kept), {len(refused)} "
                         "refused with 400; both runs completed; no answer showed the data folder's path",
                 nothing_lost="the thread works on")
