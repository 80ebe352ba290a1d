"""Test data shaped like the walkthrough's run (math tutor, first 20 Fibonacci numbers),
built through the openai SDK's own types so it cannot drift from what clients receive.

Also: a tiny OpenAI-shaped HTTP server on 127.0.0.1 for tests that go through a real
``openai.OpenAI`` client, and a real IPython ``InteractiveShell`` fixture.
"""

from __future__ import annotations

import base64
import copy
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Iterator

import pytest
from openai.pagination import SyncCursorPage
from openai.types.beta.threads import Run
from openai.types.beta.threads.runs import RunStep
from openai.types.responses import Response

FIB_CODE = (
    "# the first 20 Fibonacci numbers\n"
    "def fibonacci(count):\n"
    "    numbers = [0, 1]\n"
    "    while len(numbers) < count:\n"
    "        numbers.append(numbers[-1] + numbers[-2])\n"
    "    return numbers\n"
    "\n"
    "fibonacci(20)"
)
FIB_19_CODE = FIB_CODE.replace("fibonacci(20)", "fibonacci(19)")


def fib(count: int) -> list[int]:
    numbers = [0, 1]
    while len(numbers) < count:
        numbers.append(numbers[-1] + numbers[-2])
    return numbers


# The sandbox's logs print the list one item per line, as the walkthrough shows.
FIB_LOGS = "[" + ",\n ".join(str(n) for n in fib(20)) + "]"

IDS = {
    "assistant": "asst_tutor0001",
    "thread": "thread_tutor0001",
    "run": "run_tutor0001",
    "code_step": "step_code0001",
    "message_step": "step_msg0001",
    "call": "call_code0001",
    "message": "msg_answer0001",
}
INSTRUCTIONS = "You are a math tutor. Answer math questions by writing and running code."
KOREAN_QUESTION = "코드를 써서 피보나치 수 20개를 구해 줘"

RUN_JSON: dict[str, Any] = {
    "id": IDS["run"], "assistant_id": IDS["assistant"], "cancelled_at": None,
    "completed_at": 1716197343, "created_at": 1716197337, "expires_at": None, "failed_at": None,
    "incomplete_details": None, "instructions": INSTRUCTIONS, "last_error": None,
    "max_completion_tokens": None, "max_prompt_tokens": None, "metadata": {}, "model": "gpt-4o",
    "object": "thread.run", "parallel_tool_calls": True, "required_action": None,
    "response_format": "auto", "started_at": 1716197337, "status": "completed",
    "thread_id": IDS["thread"], "tool_choice": "auto", "tools": [{"type": "code_interpreter"}],
    "truncation_strategy": {"type": "auto", "last_messages": None},
    "usage": {"completion_tokens": 239, "prompt_tokens": 486, "total_tokens": 725},
    "temperature": 1.0, "top_p": 1.0,
}


def _step(step_id: str, details: dict, created: int, completed: int) -> dict:
    return {
        "id": step_id, "assistant_id": IDS["assistant"], "cancelled_at": None,
        "completed_at": completed, "created_at": created, "expired_at": None, "failed_at": None,
        "last_error": None, "metadata": None, "object": "thread.run.step", "run_id": IDS["run"],
        "status": "completed", "step_details": details, "thread_id": IDS["thread"],
        "type": details["type"],
        "usage": {"completion_tokens": 107, "prompt_tokens": 154, "total_tokens": 261},
    }


CODE_STEP_JSON = _step(IDS["code_step"], {
    "type": "tool_calls",
    "tool_calls": [{
        "id": IDS["call"], "type": "code_interpreter",
        "code_interpreter": {"input": FIB_CODE, "outputs": [{"type": "logs", "logs": FIB_LOGS}]},
    }],
}, 1716197338, 1716197341)
MESSAGE_STEP_JSON = _step(IDS["message_step"], {
    "type": "message_creation", "message_creation": {"message_id": IDS["message"]},
}, 1716197341, 1716197343)

STEPS_PAGE_JSON: dict[str, Any] = {
    "data": [CODE_STEP_JSON, MESSAGE_STEP_JSON], "object": "list",
    "first_id": IDS["code_step"], "last_id": IDS["message_step"], "has_more": False,
}

# 1x1 transparent PNG
PNG_BYTES = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)
PNG_DATA_URL = "data:image/png;base64," + base64.b64encode(PNG_BYTES).decode()

RESPONSE_JSON: dict[str, Any] = {
    "id": "resp_tutor0001", "object": "response", "created_at": 1716197337, "model": "gpt-4o",
    "status": "completed", "parallel_tool_calls": True, "tool_choice": "auto",
    "tools": [{"type": "code_interpreter", "container": {"type": "auto"}}],
    "output": [
        {"type": "code_interpreter_call", "id": "ci_tutor0001", "container_id": "cntr_tutor0001",
         "status": "completed", "code": FIB_CODE, "outputs": [{"type": "logs", "logs": FIB_LOGS}]},
        {"type": "code_interpreter_call", "id": "ci_tutor0002", "container_id": "cntr_tutor0001",
         "status": "completed", "code": "import matplotlib.pyplot as plt\nplt.plot(fibonacci(20))",
         "outputs": [{"type": "image", "url": PNG_DATA_URL}]},
        {"type": "message", "id": "msg_tutor0001", "role": "assistant", "status": "completed",
         "content": [{"type": "output_text", "annotations": [],
                      "text": "처음 20개의 피보나치 수는 0, 1, 1, 2, ... 4181 입니다."}]},
    ],
}


def run() -> Run:
    return Run.model_validate(copy.deepcopy(RUN_JSON))


def code_step() -> RunStep:
    return RunStep.model_validate(copy.deepcopy(CODE_STEP_JSON))


def steps_page() -> SyncCursorPage[RunStep]:
    return SyncCursorPage[RunStep].model_validate(copy.deepcopy(STEPS_PAGE_JSON))


def response() -> Response:
    return Response.model_validate(copy.deepcopy(RESPONSE_JSON))


class FakeAPI:
    """An OpenAI-shaped HTTP server on 127.0.0.1: fixed routes, records request headers (names lower-cased)."""

    def __init__(self, routes: dict[str, tuple[str, bytes]]) -> None:
        self.routes = routes
        self.requests: list[tuple[str, dict[str, str]]] = []
        api = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server naming)
                path = self.path.split("?")[0]
                api.requests.append((path, {k.lower(): v for k, v in self.headers.items()}))
                content_type, body = api.routes.get(path, ("application/json", b'{"error": {}}'))
                self.send_response(200 if path in api.routes else 404)
                self.send_header("Content-Type", content_type)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.base_url = f"http://127.0.0.1:{self.server.server_address[1]}/v1"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)

    def __enter__(self) -> "FakeAPI":
        self.thread.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self.server.shutdown()
        self.server.server_close()


def json_route(data: Any) -> tuple[str, bytes]:
    return "application/json", json.dumps(data).encode()


@pytest.fixture
def fake_api() -> Iterator[FakeAPI]:
    routes = {
        f"/v1/threads/{IDS['thread']}/runs/{IDS['run']}/steps": json_route(STEPS_PAGE_JSON),
        "/v1/models": json_route({"object": "list", "data": []}),
        "/v1/files/file-plot0001/content": ("image/png", PNG_BYTES),
    }
    with FakeAPI(routes) as api:
        yield api


@pytest.fixture
def ipython_shell() -> Iterator[Any]:
    """The process's real IPython shell, its display publisher swapped for a capturing one."""
    from IPython.core.displaypub import CapturingDisplayPublisher
    from IPython.core.interactiveshell import InteractiveShell
    from traitlets.config import Config

    config = Config()
    config.HistoryManager.hist_file = ":memory:"
    shell = InteractiveShell.instance(config=config)
    original = shell.display_pub
    shell.display_pub = CapturingDisplayPublisher()
    shell.display_pub.outputs = []
    try:
        yield shell
    finally:
        shell.display_pub = original


@pytest.fixture
def no_ipython(monkeypatch: pytest.MonkeyPatch) -> None:
    """Plain Python: no IPython shell is running (hides the process's shell, if any)."""
    from IPython.core.interactiveshell import InteractiveShell

    monkeypatch.setattr(InteractiveShell, "_instance", None, raising=False)
