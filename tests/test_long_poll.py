"""The long poll behind the SDK's ``create_and_poll``: one request a run, not one a second.

Through the official SDK over real HTTP (chat backend in front of a stand-in model that takes its
time, real kernels): a polling client's retrieve is held until the run can stop being polled, but
never past half the client's own read timeout, so a client with a short timeout is not made to
time out and retry.
"""

from __future__ import annotations

import time

import openai
import pytest

from conftest import FIB_PROMPT, TUTOR_INSTRUCTIONS
from tests.fakemodel import FakeModel

MODEL_SECONDS = 0.8  # each model call; a run with code makes two


@pytest.fixture(scope="module")
def slow_model_runtime(tmp_path_factory):
    from tutor_nb.runtime import start

    with FakeModel(respond_after=MODEL_SECONDS) as fake:
        rt = start(backend="chat", model_base_url=fake.base_url, model="stand-in", model_api_key="x",
                   data_dir=tmp_path_factory.mktemp("long-poll"))
        try:
            yield rt
        finally:
            rt.stop()


def polling_client(rt, **options):
    """An SDK client and the (seconds, path) of every GET of a run it sends."""
    gets: list[tuple[float, str]] = []
    started: dict[int, float] = {}

    def request(req):
        started[id(req)] = time.monotonic()

    def response(resp):
        if resp.request.method == "GET" and "/runs/" in resp.request.url.path:
            gets.append((time.monotonic() - started.pop(id(resp.request)), resp.request.url.path))

    http = openai.DefaultHttpxClient(event_hooks={"request": [request], "response": [response]})
    return rt.client(max_retries=0, http_client=http, **options), gets


def a_run(client):
    tutor = client.beta.assistants.create(instructions=TUTOR_INSTRUCTIONS, model="stand-in",
                                          tools=[{"type": "code_interpreter"}])
    thread = client.beta.threads.create()
    client.beta.threads.messages.create(thread_id=thread.id, role="user", content=FIB_PROMPT)
    return client.beta.threads.runs.create_and_poll(thread_id=thread.id, assistant_id=tutor.id)


def test_a_polling_client_waits_for_its_run_in_one_request(slow_model_runtime):
    client, gets = polling_client(slow_model_runtime)
    started = time.monotonic()
    run = a_run(client)
    assert run.status == "completed"
    assert time.monotonic() - started > 2 * MODEL_SECONDS  # long enough that a 1 s poll would have come back
    assert len(gets) == 1, f"the run was polled {len(gets)} times: {gets}"


def test_the_hold_stays_under_half_the_clients_read_timeout(slow_model_runtime):
    client, gets = polling_client(slow_model_runtime, timeout=1.0)  # a run takes longer than that
    run = a_run(client)  # with no retries, one held past the timeout would raise APITimeoutError
    assert run.status == "completed"
    assert len(gets) >= 2 and max(seconds for seconds, _ in gets) < 0.9, gets
