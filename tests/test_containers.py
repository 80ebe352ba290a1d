"""/v1/containers and their files through the official SDK over real HTTP, with real kernels.

A container is a kernel plus its folder: files given to it are in the code's /mnt/data, files the code
writes there are listed and downloadable, and one unused for ``expires_after.minutes`` expires as OpenAI's
did (still retrievable, listed and deletable with ``status: "expired"``; anything that would use it is a
400 ``Container is expired.``). The model is the stand-in server; it runs the code a message asks for.
"""

from __future__ import annotations

import json

import openai
import pytest

from tests.fakemodel import FakeModel, _text

USAGE = {"prompt_tokens": 10, "completion_tokens": 5}


def script(request: dict) -> dict:
    """``run: <code>`` calls the code interpreter with that code, then answers with its output."""
    messages = request["messages"]
    last_user = max(i for i, m in enumerate(messages) if m["role"] == "user")
    results = [_text(m) for m in messages[last_user + 1:] if m["role"] == "tool"]
    if results:
        return {"content": f"Output: {results[-1].strip()}", "tool_calls": [], "usage": USAGE}
    code = _text(messages[last_user]).removeprefix("run:").strip()
    return {"content": None, "tool_calls": [{"name": "code_interpreter", "arguments": json.dumps({"code": code})}],
            "usage": USAGE}


@pytest.fixture(scope="module")
def served(tmp_path_factory):
    from tutor_nb.runtime import start

    with FakeModel(script) as fake, start(backend="chat", model_base_url=fake.base_url, exec_timeout=30,
                                          data_dir=tmp_path_factory.mktemp("containers")) as rt:
        yield rt


@pytest.fixture(scope="module")
def client(served):
    return served.client(max_retries=0)


def run_in(client, container_id: str, code: str):
    response = client.responses.create(model="tutor-model", input=f"run: {code}", include=["code_interpreter_call.outputs"],
                                       tools=[{"type": "code_interpreter", "container": container_id}])
    assert response.status == "completed", response.error
    call = next(item for item in response.output if item.type == "code_interpreter_call")
    assert call.container_id == container_id
    return "".join(o.logs for o in call.outputs or [] if o.type == "logs")


def test_containers_are_created_listed_retrieved_and_deleted(client):
    made = client.containers.create(name="lesson 7", expires_after={"anchor": "last_active_at", "minutes": 5},
                                    memory_limit="4g")
    assert made.id.startswith("cntr_") and made.object == "container" and made.status == "running"
    assert made.name == "lesson 7" and made.memory_limit == "4g"
    assert (made.expires_after.anchor, made.expires_after.minutes) == ("last_active_at", 5)
    assert made.last_active_at >= made.created_at > 0
    other = client.containers.create(name="scratch")
    assert other.expires_after.minutes == 20, "OpenAI's default idle expiry"

    assert client.containers.retrieve(made.id).model_dump() == made.model_dump()
    listed = client.containers.list()
    assert [c.id for c in listed.data[:2]] == [other.id, made.id], "newest first"
    assert [c.id for c in client.containers.list(name="lesson 7").data] == [made.id]
    page = client.containers.list(limit=1, order="asc")
    assert page.has_more and client.containers.list(limit=1, order="asc", after=page.data[0].id).data[0].id != page.data[0].id

    assert client.containers.delete(made.id) is None  # the SDK returns nothing; the wire says deleted
    with pytest.raises(openai.NotFoundError, match=made.id):
        client.containers.retrieve(made.id)
    with pytest.raises(openai.NotFoundError):
        client.containers.delete(made.id)
    assert made.id not in [c.id for c in client.containers.list(limit=100).data]


def test_files_from_an_upload_and_a_file_id_are_in_the_codes_folder(client):
    container = client.containers.create(name="files")
    uploaded = client.containers.files.create(container.id, file=("scores.csv", b"name,score\nSara,91\n"))
    assert uploaded.object == "container.file" and uploaded.id.startswith("cfile_")
    assert (uploaded.path, uploaded.source, uploaded.bytes) == ("/mnt/data/scores.csv", "user", 19)
    assert uploaded.container_id == container.id
    source = client.files.create(file=("notes.txt", "피보나치\n".encode()), purpose="assistants")
    copied = client.containers.files.create(container.id, file_id=source.id)
    assert (copied.path, copied.source) == ("/mnt/data/notes.txt", "user")

    logs = run_in(client, container.id, "import os\nprint(sorted(os.listdir('/mnt/data')))\n"
                                        "print(open('/mnt/data/scores.csv').read().split()[1])\n"
                                        "print(open('/mnt/data/notes.txt', encoding='utf-8').read().strip())")
    assert "['notes.txt', 'scores.csv']" in logs and "Sara,91" in logs and "피보나치" in logs

    assert {f.id for f in client.containers.files.list(container.id)} == {uploaded.id, copied.id}
    assert client.containers.files.retrieve(copied.id, container_id=container.id).model_dump() == copied.model_dump()
    content = client.containers.files.content.retrieve(uploaded.id, container_id=container.id)
    assert content.read() == b"name,score\nSara,91\n"

    client.containers.files.delete(copied.id, container_id=container.id)
    assert [f.id for f in client.containers.files.list(container.id)] == [uploaded.id]
    assert "notes.txt" not in run_in(client, container.id, "import os\nprint(os.listdir('/mnt/data'))")
    with pytest.raises(openai.NotFoundError):
        client.containers.files.content.retrieve(copied.id, container_id=container.id)


def test_files_the_code_writes_are_listed_and_downloadable(client):
    container = client.containers.create(name="outputs")
    run_in(client, container.id, "open('/mnt/data/squares.txt', 'w').write(' '.join(str(n * n) for n in range(1, 6)))\n"
                                 "open('/mnt/data/scratch.txt', 'w').write('x')")
    files = {f.path: f for f in client.containers.files.list(container.id)}
    assert set(files) == {"/mnt/data/squares.txt", "/mnt/data/scratch.txt"}
    squares = files["/mnt/data/squares.txt"]
    assert squares.source == "assistant" and squares.bytes == len("1 4 9 16 25")
    assert client.containers.files.content.retrieve(squares.id, container_id=container.id).read() == b"1 4 9 16 25"

    run_in(client, container.id, "import os\nos.remove('/mnt/data/scratch.txt')")
    assert [f.path for f in client.containers.files.list(container.id)] == ["/mnt/data/squares.txt"]


def test_an_idle_container_expires_as_openais_did(client, served, monkeypatch):
    from tutor_nb.runtime import containers as containers_module

    container = client.containers.create(name="short", expires_after={"anchor": "last_active_at", "minutes": 1})
    kept = client.containers.files.create(container.id, file=("kept.txt", b"kept"))
    assert "kept" in run_in(client, container.id, "print(open('/mnt/data/kept.txt').read())")
    real_now = containers_module.now
    monkeypatch.setattr(containers_module, "now", lambda: real_now() + 61)  # a minute and a second later

    expired = client.containers.retrieve(container.id)
    assert expired.status == "expired" and expired.id == container.id
    assert next(c for c in client.containers.list(limit=100) if c.id == container.id).status == "expired"
    for use in (lambda: client.containers.files.list(container.id),
                lambda: client.containers.files.create(container.id, file=("more.txt", b"more")),
                lambda: client.containers.files.content.retrieve(kept.id, container_id=container.id)):
        with pytest.raises(openai.BadRequestError, match=r"^Error code: 400 .*Container is expired\.") as caught:
            use()
        assert caught.value.body["type"] == "invalid_request_error"
    with pytest.raises(openai.BadRequestError, match="expired"):
        run_in(client, container.id, "print(1)")
    sandbox = served._server.app.state.runtime.sandbox
    assert container.id not in sandbox.pool.assigned, "its kernel was shut down"
    client.containers.delete(container.id)
    with pytest.raises(openai.NotFoundError):
        client.containers.retrieve(container.id)


def test_bad_requests_say_what_to_fix_and_make_nothing(client):
    before = len(client.containers.list(limit=100).data)
    with pytest.raises(openai.BadRequestError, match="name"):
        client.post("/containers", body={"memory_limit": "1g"}, cast_to=object)
    with pytest.raises(openai.BadRequestError, match="expires_after.minutes"):
        client.containers.create(name="x", expires_after={"anchor": "last_active_at", "minutes": 0})
    with pytest.raises(openai.NotFoundError, match="file-nope"):
        client.containers.create(name="x", file_ids=["file-nope"])
    with pytest.raises(openai.BadRequestError, match="network"):
        client.containers.create(name="x", network_policy={"type": "allowlist", "allowed_domains": ["pypi.org"]})
    assert len(client.containers.list(limit=100).data) == before, "a refused request made no container"

    container = client.containers.create(name="checks")
    with pytest.raises(openai.BadRequestError, match="file_id"):
        client.containers.files.create(container.id)
    with pytest.raises(openai.NotFoundError, match="file-nope"):
        client.containers.files.create(container.id, file_id="file-nope")
    with pytest.raises(openai.NotFoundError, match="cntr_nope"):
        client.containers.files.list("cntr_nope")
    other = client.containers.create(name="other")
    theirs = client.containers.files.create(other.id, file=("theirs.txt", b"theirs"))
    with pytest.raises(openai.NotFoundError, match=theirs.id):
        client.containers.files.retrieve(theirs.id, container_id=container.id)

    escaped = client.containers.files.create(container.id, file=("../../escape.txt", b"inside"))
    assert escaped.path == "/mnt/data/escape.txt"
    assert "inside" in run_in(client, container.id, "print(open('/mnt/data/escape.txt').read())")
