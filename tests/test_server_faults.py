"""The runtime's HTTP face under bad input, races and load: OpenAI-shaped errors, never a 5xx.

Everything goes through the real ``openai`` SDK (or raw HTTP where the SDK would refuse to send the
garbage) to a real uvicorn on 127.0.0.1. A handler on the runtime's loggers fails any test during
which the server logged an internal error, so a 5xx or a crashed run cannot slip past as an
"expected" answer.
"""

from __future__ import annotations

import asyncio
import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import openai
import pytest

from conftest import data_path

LIMIT_MB = 1  # the body limit of this module's runtime, small so oversized bodies are cheap to send
HELLO = "Say hello"
WEATHER = "What is the weather in Seoul?"
CODE = "Set x to 21 and show it"
WEATHER_TOOL = {"type": "function", "function": {
    "name": "get_weather", "description": "Current weather of a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
SHORT_TURNS = {
    "source": "authored",
    "description": "Short turns for the fault tests: an answer without code, and a function call.",
    "turns": [
        {"user": HELLO, "turn": 0, "reply": {"content": "Hello!", "tool_calls": [],
                                             "usage": {"prompt_tokens": 10, "completion_tokens": 2}}},
        {"user": WEATHER, "turn": 0, "reply": {"content": None, "tool_calls": [
            {"name": "get_weather", "arguments": "{\"city\": \"Seoul\"}"}]}},
        {"user": WEATHER, "turn": 1, "reply": {"content": "It is sunny in Seoul.", "tool_calls": []}},
    ],
}


@pytest.fixture(scope="module")
def runtime(tmp_path_factory):
    from tutor_nb.runtime import start

    folder = tmp_path_factory.mktemp("server_faults")
    cassette = folder / "short.json"
    cassette.write_text(json.dumps(SHORT_TURNS), encoding="utf-8")
    rt = start(backend="replay", data_dir=folder / "data", cassettes=[data_path("cassettes"), cassette],
               exec_timeout=30, max_body_mb=LIMIT_MB, replay_delay=0.005)
    yield rt
    rt.stop()


@pytest.fixture(scope="module")
def http(runtime):
    with httpx.Client(base_url=runtime.base_url, timeout=60,
                      headers={"authorization": f"Bearer {runtime.settings.token}"}) as session:
        yield session


@pytest.fixture(scope="module")
def plain(client):
    """An assistant whose runs answer in words (no kernel), and one with a function tool."""
    return client.beta.assistants.create(model="gpt-4o", name="plain", instructions="Answer briefly.",
                                         tools=[WEATHER_TOOL])


class _ServerErrors(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.ERROR)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)


@pytest.fixture(autouse=True)
def no_server_errors():
    """Fail the test if the runtime logged an internal error (a 5xx or a crashed run) while it ran."""
    handler = _ServerErrors()
    loggers = [logging.getLogger(name) for name in ("tutor_nb.runtime", "uvicorn.error")]
    for logger in loggers:
        logger.addHandler(handler)
    yield handler
    for logger in loggers:
        logger.removeHandler(handler)
    assert not handler.records, [handler.format(r) for r in handler.records]


def assert_openai_error(response: httpx.Response, status: int, param: str | None = None) -> dict:
    """The answer is OpenAI's error envelope with this status, naming ``param`` when given."""
    assert response.status_code == status, (response.status_code, response.text)
    assert response.headers["content-type"].startswith("application/json")
    body = response.json()
    assert list(body) == ["error"], body
    error = body["error"]
    assert set(error) == {"message", "type", "param", "code"}, error
    assert isinstance(error["message"], str) and len(error["message"]) > 20, error
    assert error["type"] == "invalid_request_error", error
    if param is not None:
        assert error["param"] == param, error
        assert param.split(".")[-1] in error["message"] or param in error["message"], error
    return error


def everything(client) -> dict[str, int]:
    """How many assistants, threads' messages and files exist: a cheap fingerprint of the store."""
    return {
        "assistants": len(list(client.beta.assistants.list(limit=100))),
        "files": len(list(client.files.list())),
    }


# -- bad input ---------------------------------------------------------------------------------


MALFORMED = {
    "truncated object": b'{"model": ',
    "not JSON": b"{bad",
    "a list": b"[1, 2]",
    "a string": b'"assistant"',
    "null": b"null",
    "a number": b"42",
    "trailing garbage": b'{"model": "m"} and more',
    "invalid UTF-8": b'{"model": "\xff\xfe"}',
    "NaN": b'{"model": "m", "temperature": NaN}',
    "100,000 open brackets": b"[" * 100_000,
    "object nested 65 deep": b'{"model": "m", "metadata": ' + b'{"a": ' * 65 + b"1" + b"}" * 66,
    "unpaired surrogate": b'{"model": "m", "name": "\\ud800"}',
    "huge integer": b'{"model": "m", "temperature": 1' + b"0" * 5000 + b"}",
}


def test_malformed_json_bodies_are_400(client, http, tutor, fault_report):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "keep me"}])
    message = client.beta.threads.messages.list(thread_id=thread.id).data[0]
    targets = ["/assistants", f"/assistants/{tutor.id}", "/threads", f"/threads/{thread.id}",
               f"/threads/{thread.id}/messages", f"/threads/{thread.id}/messages/{message.id}",
               f"/threads/{thread.id}/runs", "/threads/runs"]
    before = everything(client)
    for name, body in MALFORMED.items():
        for path in targets:
            response = http.post(path, content=body, headers={"content-type": "application/json"})
            error = assert_openai_error(response, 400)
            assert any(word in error["message"] for word in ("JSON", "Unicode", "Invalid value")), (name, error)
    assert everything(client) == before
    assert client.beta.assistants.retrieve(tutor.id) == tutor
    assert client.beta.threads.messages.list(thread_id=thread.id).data == [message]
    fault_report("malformed JSON bodies", trials=len(MALFORMED) * len(targets),
                 outcome=f"400 invalid_request_error for each of: {', '.join(MALFORMED)}; "
                         f"on {len(targets)} POST endpoints",
                 nothing_lost="no object created or changed (counts and existing objects compared)")


def test_wrong_types_and_missing_fields_name_the_field(client, http, tutor, plain, fault_report):
    thread = client.beta.threads.create()
    cases = [
        ("/assistants", {"model": 5}, "model"),
        ("/assistants", {}, "model"),
        ("/assistants", {"model": "m", "tools": [{"type": "browser"}]}, "tools.0.type"),
        ("/assistants", {"model": "m", "metadata": {"a": 1}}, "metadata.a"),
        ("/assistants", {"model": "m", "temperature": "hot"}, "temperature"),
        ("/assistants", {"model": "m", "temperature": 3}, "temperature"),
        ("/assistants", {"model": "m", "name": "n" * 300}, "name"),
        ("/assistants", {"model": "m", "metadata": {f"k{i}": "v" for i in range(17)}}, "metadata"),
        (f"/assistants/{tutor.id}", {"top_p": [1]}, "top_p"),
        ("/threads", {"messages": [{"role": "user"}]}, "messages.0.content"),
        ("/threads", {"messages": [{"role": "robot", "content": "hi"}]}, "messages.0.role"),
        ("/threads", {"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {"url": ""}}]}]},
         "messages.0.content.0.image_url.url"),
        (f"/threads/{thread.id}", {"metadata": "x"}, "metadata"),
        (f"/threads/{thread.id}/messages", {"role": "user"}, "content"),
        (f"/threads/{thread.id}/messages", {"content": "hi"}, "role"),
        (f"/threads/{thread.id}/runs", {}, "assistant_id"),
        (f"/threads/{thread.id}/runs", {"assistant_id": 7}, "assistant_id"),
        (f"/threads/{thread.id}/runs", {"assistant_id": plain.id, "stream": "yes"}, "stream"),
        (f"/threads/{thread.id}/runs", {"assistant_id": plain.id, "max_completion_tokens": 5}, "max_completion_tokens"),
        ("/threads/runs", {"assistant_id": plain.id, "thread": {"messages": [{"role": "user", "content": 5}]}},
         "thread.messages.0.content"),
    ]
    before = everything(client)
    for path, body, param in cases:
        assert_openai_error(http.post(path, json=body), 400, param)
    queries = [("/assistants?limit=0", "limit"), ("/assistants?limit=abc", "limit"), ("/assistants?limit=101", "limit"),
               (f"/threads/{thread.id}/messages?order=sideways", "order")]
    for path, param in queries:
        assert_openai_error(http.get(path), 400, param)
    uploads = [({"purpose": "assistants"}, None, "file"), ({}, {"file": ("a.txt", b"a")}, "purpose"),
               ({"purpose": "nonsense"}, {"file": ("a.txt", b"a")}, "purpose")]
    for form, files, param in uploads:
        assert_openai_error(http.post("/files", data=form, files=files or {"x": ("x", b"")}), 400, param)
    # the SDK turns these answers into its own exception, carrying the field
    with pytest.raises(openai.BadRequestError) as caught:
        client.beta.assistants.create(model=5)  # type: ignore[arg-type]
    assert caught.value.param == "model" and caught.value.status_code == 400
    assert everything(client) == before
    assert client.beta.threads.messages.list(thread_id=thread.id).data == []
    assert client.beta.threads.runs.list(thread_id=thread.id).data == []
    fault_report("wrong types, missing fields, out-of-range values",
                 trials=len(cases) + len(queries) + len(uploads) + 1,
                 outcome="400 whose 'param' and message name the field (e.g. 'messages.0.content'); "
                         "the SDK raises BadRequestError with .param",
                 nothing_lost="no object created; the thread has no messages or runs")


def test_oversized_bodies_are_413_and_not_buffered(client, http, fault_report):
    limit = LIMIT_MB * 1024 * 1024
    before = everything(client)
    # declared length over the limit
    big = json.dumps({"model": "m", "instructions": "x" * (limit + 10)}).encode()
    assert_openai_error(http.post("/assistants", content=big, headers={"content-type": "application/json"}), 413)
    # chunked, with no length declared: counted as it streams in
    chunk = b" " * 65536
    response = http.post("/assistants", content=iter([b'{"model": "m", "instructions": "', *[chunk] * 40]),
                         headers={"content-type": "application/json"})
    assert "content-length" not in response.request.headers
    assert_openai_error(response, 413)
    # a multipart upload over the limit, through the SDK, chunked too
    with pytest.raises(openai.APIStatusError) as caught:
        client.files.create(file=("big.bin", b"\0" * (limit + 1)), purpose="assistants")
    assert caught.value.status_code == 413 and caught.value.code == "request_too_large"
    boundary = "tutor-nb-boundary"

    def multipart():
        yield (f'--{boundary}\r\nContent-Disposition: form-data; name="purpose"\r\n\r\nassistants\r\n--{boundary}\r\n'
               'Content-Disposition: form-data; name="file"; filename="big.bin"\r\n'
               'Content-Type: application/octet-stream\r\n\r\n').encode()
        yield from [b"\0" * 65536] * 40
        yield f"\r\n--{boundary}--\r\n".encode()

    chunked_upload = http.post("/files", content=multipart(),
                               headers={"content-type": f"multipart/form-data; boundary={boundary}"})
    assert "content-length" not in chunked_upload.request.headers
    assert_openai_error(chunked_upload, 413)
    assert everything(client) == before
    # a body under the limit is fine, and its bytes come back intact
    payload = bytes(range(256)) * (limit // 512)
    small = client.files.create(file=("half.bin", payload), purpose="assistants")
    assert client.files.content(small.id).read() == payload
    client.files.delete(small.id)
    fault_report("oversized bodies (limit set to 1 MB here)", trials=4,
                 outcome="413 request_too_large for a declared length, a chunked JSON body with no length, "
                         "an SDK upload and a chunked multipart upload",
                 nothing_lost="no object created; a half-limit upload afterwards round-trips byte for byte")


def peak_memory(pid: int) -> int:
    """The process's peak resident memory (VmHWM), in bytes."""
    status = Path(f"/proc/{pid}/status")
    if not status.exists():
        pytest.skip("needs Linux's /proc to read peak memory")
    kb = next(line.split()[1] for line in status.read_text().splitlines() if line.startswith("VmHWM:"))
    return int(kb) * 1024


@pytest.mark.slow
def test_chunked_flood_does_not_grow_server_memory(tmp_path, fault_report):
    """256 MB sent chunked to a default runtime (64 MB limit): it answers 413 and never holds the lot."""
    import psutil

    from reliability import CliServer

    server = CliServer(tmp_path / "data")
    try:
        process = psutil.Process(server.proc.pid)
        before = peak_memory(process.pid)
        chunk, count = b"x" * (1 << 20), 256

        def flood():
            yield b'{"model": "m", "instructions": "'
            yield from [chunk] * count

        with httpx.Client(base_url=server.base_url, timeout=120,
                          headers={"authorization": f"Bearer {server.api_key}"}) as session:
            response = session.post("/assistants", content=flood(), headers={"content-type": "application/json"})
            assert_openai_error(response, 413)
            grown = peak_memory(process.pid) - before
            assert grown < 160 * (1 << 20), f"server peak memory grew by {grown / (1 << 20):.0f} MB"
            assert session.get("/assistants").json()["data"] == []
    finally:
        server.stop()
    fault_report("chunked 256 MB body to a runtime with the default 64 MB limit", trials=1,
                 outcome=f"413 after the limit; the server's peak memory grew {grown / (1 << 20):.0f} MB "
                         "(the body up to the limit), the rest was read and discarded",
                 nothing_lost="no object created; the server kept answering")


def test_unknown_ids_are_404(client, http, tutor, fault_report):
    thread = client.beta.threads.create(messages=[{"role": "user", "content": "hi"}])
    other = client.beta.threads.create(messages=[{"role": "user", "content": "elsewhere"}])
    foreign = client.beta.threads.messages.list(thread_id=other.id).data[0]
    beta, t = client.beta, thread.id
    calls = [
        lambda: beta.assistants.retrieve("asst_nope"),
        lambda: beta.assistants.update("asst_nope", name="x"),
        lambda: beta.assistants.delete("asst_nope"),
        lambda: beta.threads.retrieve("thread_nope"),
        lambda: beta.threads.update("thread_nope", metadata={}),
        lambda: beta.threads.delete("thread_nope"),
        lambda: beta.threads.messages.create(thread_id="thread_nope", role="user", content="x"),
        lambda: beta.threads.messages.list(thread_id="thread_nope"),
        lambda: beta.threads.messages.retrieve("msg_nope", thread_id=t),
        lambda: beta.threads.messages.retrieve(foreign.id, thread_id=t),  # exists, but in another thread
        lambda: beta.threads.messages.update("msg_nope", thread_id=t, metadata={}),
        lambda: beta.threads.messages.delete(foreign.id, thread_id=t),
        lambda: beta.threads.runs.create(thread_id=t, assistant_id="asst_nope"),
        lambda: beta.threads.runs.create(thread_id="thread_nope", assistant_id=tutor.id),
        lambda: beta.threads.runs.retrieve("run_nope", thread_id=t),
        lambda: beta.threads.runs.update("run_nope", thread_id=t, metadata={}),
        lambda: beta.threads.runs.cancel("run_nope", thread_id=t),
        lambda: beta.threads.runs.list(thread_id="thread_nope"),
        lambda: beta.threads.runs.submit_tool_outputs("run_nope", thread_id=t, tool_outputs=[]),
        lambda: beta.threads.runs.steps.list("run_nope", thread_id=t),
        lambda: beta.threads.runs.steps.retrieve("step_nope", thread_id=t, run_id="run_nope"),
        lambda: beta.threads.create_and_run(assistant_id="asst_nope"),
        lambda: beta.threads.create(messages=[{"role": "user", "content": "x",
                                               "attachments": [{"file_id": "file-nope"}]}]),
        lambda: client.files.retrieve("file-nope"),
        lambda: client.files.delete("file-nope"),
        lambda: client.files.content("file-nope"),
    ]
    before = everything(client)
    for number, call in enumerate(calls):
        with pytest.raises(openai.NotFoundError) as caught:
            call()
        assert caught.value.code == "not_found", (number, caught.value.body)
        assert isinstance(caught.value.body, dict) and caught.value.body["type"] == "invalid_request_error"
    assert everything(client) == before
    assert [m.content[0].text.value for m in beta.threads.messages.list(thread_id=other.id)] == ["elsewhere"]
    assert_openai_error(http.get("/threads/%00"), 404)
    fault_report("unknown ids and ids of another thread", trials=len(calls) + 1,
                 outcome="404 not_found for every kind (assistant, thread, message, run, step, file) "
                         "and every verb; the SDK raises NotFoundError",
                 nothing_lost="counts unchanged; the other thread's message is still there")


def test_unknown_routes_and_methods(http, fault_report):
    routes = [("GET", "/nothing"), ("GET", "/fine_tuning/jobs"), ("POST", "/chat/completions"),
              ("GET", "/threads/thread_x/runs/run_x/steps/step_x/more"), ("GET", "/../../etc/passwd")]
    methods = [("PUT", "/assistants"), ("PATCH", "/threads/thread_x"), ("DELETE", "/assistants"),
               ("DELETE", "/threads/thread_x/runs/run_x")]
    for method, path in routes:
        error = assert_openai_error(http.request(method, path), 404)
        assert error["code"] == "unknown_url"
    for method, path in methods:
        error = assert_openai_error(http.request(method, path), 405)
        assert error["code"] == "method_not_allowed"
    outside = httpx.get(str(http.base_url).replace("/v1/", "/v2/assistants"), headers=http.headers)
    assert_openai_error(outside, 404)
    fault_report("unknown routes and methods", trials=len(routes) + len(methods) + 1,
                 outcome="404 unknown_url / 405 method_not_allowed, in OpenAI's envelope",
                 nothing_lost="nothing to lose: no route ran")


# -- races -------------------------------------------------------------------------------------


def test_two_runs_raced_on_one_thread(runtime, client, plain, fault_report):
    """Runs started at the same moment on one thread: exactly one wins, the rest get OpenAI's 400."""
    rounds = [2] * 8 + [5] * 2

    async def race(aclient, contenders: int):
        thread = await aclient.beta.threads.create(messages=[{"role": "user", "content": WEATHER}])
        results = await asyncio.gather(
            *(aclient.beta.threads.runs.create(thread_id=thread.id, assistant_id=plain.id) for _ in range(contenders)),
            return_exceptions=True)
        return thread, results

    async def main():
        aclient = runtime.async_client(max_retries=0)
        async with aclient:
            return [await race(aclient, n) for n in rounds]

    for thread, results in asyncio.run(main()):
        winners = [r for r in results if not isinstance(r, BaseException)]
        losers = [r for r in results if isinstance(r, BaseException)]
        assert len(winners) == 1, results
        for loser in losers:
            assert isinstance(loser, openai.BadRequestError), loser
            assert "active run" in loser.message and winners[0].id in loser.message
        run = client.beta.threads.runs.poll(winners[0].id, thread_id=thread.id, poll_interval_ms=20)
        assert run.status == "requires_action", run
        assert [r.id for r in client.beta.threads.runs.list(thread_id=thread.id)] == [run.id]
        cancelled = client.beta.threads.runs.cancel(run.id, thread_id=thread.id)
        assert cancelled.status in ("cancelling", "cancelled")
        assert client.beta.threads.runs.poll(run.id, thread_id=thread.id, poll_interval_ms=20).status == "cancelled"
    fault_report("runs raced on one thread", trials=len(rounds),
                 outcome="exactly one run created per race (8 races of 2 clients, 2 of 5); the others got 400 "
                         "naming the active run; the winner reached requires_action and was cancelled",
                 nothing_lost="each thread holds exactly the winning run")


def _consistent(client, thread_id: str, run) -> None:
    """A finished run's steps and messages agree with its status."""
    steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread_id, order="asc").data
    messages = [m for m in client.beta.threads.messages.list(thread_id=thread_id).data if m.run_id == run.id]
    assert all(s.status != "in_progress" for s in steps), steps
    assert all(m.status != "in_progress" for m in messages), messages
    if run.status == "completed":
        assert run.completed_at is not None and run.cancelled_at is None
        assert steps and all(s.status == "completed" for s in steps)
        assert steps[-1].type == "message_creation"
        made = steps[-1].step_details.message_creation.message_id
        assert any(m.id == made and m.status == "completed" for m in messages)
    else:
        assert run.status == "cancelled" and run.cancelled_at is not None and run.completed_at is None
        assert all(s.status in ("cancelled", "completed") for s in steps)
        assert all(m.status == "completed" or m.incomplete_details.reason == "run_cancelled" for m in messages)


def test_cancel_raced_with_completion(client, plain, tutor, fault_report):
    rng = random.Random(6)
    outcomes: dict[str, int] = {}

    def trial(thread_id: str, assistant_id: str, delay: float) -> str:
        run = client.beta.threads.runs.create(thread_id=thread_id, assistant_id=assistant_id)
        time.sleep(delay)
        try:
            answer = client.beta.threads.runs.cancel(run.id, thread_id=thread_id)
            assert answer.status in ("cancelling", "cancelled", "completed"), answer
            cancel = "accepted"
        except openai.BadRequestError as exc:
            assert "already ended" in exc.message
            cancel = "too late"
        final = client.beta.threads.runs.poll(run.id, thread_id=thread_id, poll_interval_ms=20)
        assert final.status in ("completed", "cancelled"), final
        if cancel == "too late":
            assert final.status == "completed"
        _consistent(client, thread_id, final)
        return f"{final.status} (cancel {cancel})"

    text_trials = 30
    for _ in range(text_trials):
        thread = client.beta.threads.create(messages=[{"role": "user", "content": HELLO}])
        outcome = trial(thread.id, plain.id, rng.uniform(0, 0.012))
        outcomes[outcome] = outcomes.get(outcome, 0) + 1
        # the thread is free again: a new run starts and completes
        client.beta.threads.messages.create(thread_id=thread.id, role="user", content=HELLO)
        after = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=plain.id,
                                                         poll_interval_ms=20)
        assert after.status == "completed", after.last_error
    code_trials = 6
    thread = client.beta.threads.create()
    for _ in range(code_trials):
        client.beta.threads.messages.create(thread_id=thread.id, role="user", content=CODE)
        outcome = trial(thread.id, tutor.id, rng.uniform(0, 0.15))
        outcomes["code: " + outcome] = outcomes.get("code: " + outcome, 0) + 1
    cancels = {k.rsplit("(cancel ", 1)[1] for k in outcomes}
    assert cancels == {"accepted)", "too late)"}, f"the race never went both ways: {outcomes}"
    summary = ", ".join(f"{n}× {k}" for k, n in sorted(outcomes.items()))
    fault_report("cancel raced with completion", trials=text_trials + code_trials,
                 outcome=f"no 5xx; every run ended completed or cancelled: {summary}",
                 nothing_lost="steps and messages agree with the final status; the thread takes new runs")


def test_concurrent_messages_on_one_thread(runtime, client, fault_report):
    thread = client.beta.threads.create()
    count = 50
    barrier = threading.Barrier(count)

    def post(i: int) -> str:
        own = runtime.client(max_retries=0)
        barrier.wait(30)
        return own.beta.threads.messages.create(thread_id=thread.id, role="user", content=f"message {i}").id

    with ThreadPoolExecutor(count) as pool:
        ids = list(pool.map(post, range(count)))
    stored = list(client.beta.threads.messages.list(thread_id=thread.id, order="asc", limit=20))
    assert len(ids) == len(set(ids)) == count
    assert sorted(m.id for m in stored) == sorted(ids)
    assert sorted(m.content[0].text.value for m in stored) == sorted(f"message {i}" for i in range(count))
    assert [m.created_at for m in stored] == sorted(m.created_at for m in stored)
    fault_report("50 clients posting to one thread at once", trials=count,
                 outcome="all 50 answered 200 with distinct ids",
                 nothing_lost="all 50 messages listed (paged 20 at a time) with their text, in creation order")


# -- load --------------------------------------------------------------------------------------


@pytest.mark.slow
def test_fifty_concurrent_clients_full_runs(runtime, plain, tutor, fault_report):
    """50 learners at once, each with its own client and thread: message, run, poll, read the answer."""
    count, with_code = 50, 4
    barrier = threading.Barrier(count)

    def learner(i: int) -> tuple[str, str, list[str], float]:
        own = runtime.client(max_retries=0, timeout=180)
        prompt, assistant = (CODE, tutor) if i < with_code else (HELLO, plain)
        barrier.wait(60)
        began = time.monotonic()
        thread = own.beta.threads.create(messages=[{"role": "user", "content": prompt}])
        run = own.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=assistant.id, poll_interval_ms=50)
        answer = own.beta.threads.messages.list(thread_id=thread.id).data[0]
        steps = own.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
        took = time.monotonic() - began
        text = answer.content[0].text.value if answer.role == "assistant" else ""
        return run.status, text, [s.type for s in steps], took

    began = time.monotonic()
    with ThreadPoolExecutor(count) as pool:
        results = list(pool.map(learner, range(count)))
    wall = time.monotonic() - began
    assert [r[0] for r in results] == ["completed"] * count, results
    assert [r[1] for r in results] == ["x is 21."] * with_code + ["Hello!"] * (count - with_code)
    expected_steps = [["tool_calls", "message_creation"]] * with_code + [["message_creation"]] * (count - with_code)
    assert [r[2] for r in results] == expected_steps
    slowest = max(r[3] for r in results)
    fault_report("50 concurrent clients doing full runs", trials=count,
                 outcome=f"all {count} runs completed ({with_code} ran code in their own kernel), no 5xx, no "
                         f"connection errors; {wall:.1f} s wall, slowest learner {slowest:.1f} s",
                 nothing_lost="every learner read back its own answer and steps")


@pytest.mark.slow
def test_code_that_never_ends_is_timed_out_inside_a_run(tmp_path, fault_report):
    """The execution timeout through a whole run: the run still answers, and the thread goes on."""
    from tutor_nb.runtime import start

    rt = start(backend="replay", data_dir=tmp_path / "data", cassettes=[data_path("cassettes")], exec_timeout=1.5)
    try:
        client = rt.client(max_retries=0)
        tutor = client.beta.assistants.create(model="gpt-4o", tools=[{"type": "code_interpreter"}])
        thread = client.beta.threads.create(messages=[{"role": "user", "content": "Sleep for a while"}])
        began = time.monotonic()
        run = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=tutor.id, poll_interval_ms=50)
        took = time.monotonic() - began
        assert run.status == "completed", run.last_error
        steps = client.beta.threads.runs.steps.list(run.id, thread_id=thread.id, order="asc").data
        logs = steps[0].step_details.tool_calls[0].code_interpreter.outputs[-1].logs
        assert "timed out after 1.5 s" in logs and took < 30, (logs, took)
        client.beta.threads.messages.create(thread_id=thread.id, role="user", content=CODE)
        after = client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=tutor.id,
                                                         poll_interval_ms=20)
        assert after.status == "completed", after.last_error
        answer = client.beta.threads.messages.list(thread_id=thread.id).data[0].content[0].text.value
        assert answer == "x is 21."
    finally:
        rt.stop()
    fault_report("model code that never ends (time.sleep(60) with a 1.5 s execution timeout), through a run",
                 trials=1, outcome=f"interrupted after 1.5 s, the logs say so, the run still completed in {took:.1f} s",
                 nothing_lost="the same thread ran the next run's code and answered")
