"""A stand-in Chat Completions server for tests: real HTTP on 127.0.0.1, real wire format.

Only the model is fake. It answers ``POST /v1/chat/completions`` (plain JSON, or SSE
``chat.completion.chunk`` events ending in ``data: [DONE]``) and ``GET /v1/models``, with
replies decided by a script::

    with FakeModel(math_tutor_script) as fake:
        client = OpenAI(base_url=fake.base_url, api_key="x")
        ...
        fake.requests  # the JSON bodies it received

A script is ``callable(request_json) -> reply``, the reply being
``{"content": str | None, "tool_calls": [{"name", "arguments"}], "usage": {...}}`` or an
error ``{"status": 500, "message": "...", "code": optional}``.
"""

from __future__ import annotations

import json
import math
import re
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Callable

Script = Callable[[dict[str, Any]], dict[str, Any]]

_CHUNK = re.compile(r"\s*\S{1,5}|\s+")


def _text(message: dict[str, Any]) -> str:
    content = message.get("content")
    if isinstance(content, list):
        return "\n".join(p.get("text", "") for p in content if isinstance(p, dict))
    return content or ""


def _tokens(text: str) -> int:
    return max(1, math.ceil(len(text) / 4))


# --------------------------------------------------------------------------- default script


def code_for(question: str) -> str:
    """The code a diligent math tutor would write for ``question``, by a few simple rules."""
    q = question.lower()
    numbers = [int(n) for n in re.findall(r"\d+", q)]
    count = numbers[0] if numbers else 10
    if "fibonacci" in q or "피보나치" in q:
        return (
            f"# the first {count} Fibonacci numbers\n"
            "fib = [0, 1]\n"
            f"while len(fib) < {count}:\n"
            "    fib.append(fib[-1] + fib[-2])\n"
            f"fib[:{count}]"
        )
    if "prime" in q or "소수" in q:
        return (
            f"# the first {count} primes\n"
            "primes = []\n"
            "n = 2\n"
            f"while len(primes) < {count}:\n"
            "    if all(n % p for p in primes):\n"
            "        primes.append(n)\n"
            "    n += 1\n"
            "primes"
        )
    if any(word in q for word in ("plot", "graph", "chart", "그래프", "그려")):
        return (
            "import matplotlib.pyplot as plt\n"
            "xs = list(range(-10, 11))\n"
            "plt.plot(xs, [x * x for x in xs])\n"
            "plt.title('y = x^2')\n"
            "plt.show()"
        )
    if "error" in q or "오류" in q:
        return "1 / 0"
    expression = re.search(r"[\d\s.()+\-*/%]*\d[\d\s.()+\-*/%]*", question)
    if expression and any(op in expression.group() for op in "+-*/%"):
        return expression.group().strip()
    return f"print({question!r})"


def math_tutor_script(request: dict[str, Any]) -> dict[str, Any]:
    """Answer any question by running code first, then by quoting the tool's output.

    Turn 0 (no tool result after the last user message): call ``code_interpreter`` with
    :func:`code_for`. After a tool result: reply in text that includes that output.
    """
    messages = request.get("messages", [])
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    question = _text(messages[last_user]) if last_user >= 0 else ""
    prompt_tokens = _tokens(json.dumps(messages, ensure_ascii=False))
    tool_results = [_text(m) for m in messages[last_user + 1 :] if m.get("role") == "tool"]
    if tool_results:
        korean = bool(re.search(r"[\uac00-\ud7a3]", question))
        lead = "코드를 실행한 결과는 다음과 같습니다:" if korean else "Running the code gives:"
        content = f"{lead}\n\n{tool_results[-1]}"
        return {
            "content": content,
            "tool_calls": [],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": _tokens(content)},
        }
    arguments = json.dumps({"code": code_for(question)})
    return {
        "content": None,
        "tool_calls": [{"name": "code_interpreter", "arguments": arguments}],
        "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": _tokens(arguments)},
    }


_MARKER = re.compile(r"【(\d+)†([^】]+)】[^\n]*\n([^\n]*)")


def librarian_script(request: dict[str, Any]) -> dict[str, Any]:
    """Answer from the user's files: search first (the question as the query), then cite the best passage.

    Turn 0: call ``file_search`` with the last user message as the query. After its result:
    answer with the first passage's first line and its marker, as the instructions ask.
    """
    messages = request.get("messages", [])
    last_user = max((i for i, m in enumerate(messages) if m.get("role") == "user"), default=-1)
    question = _text(messages[last_user]) if last_user >= 0 else ""
    prompt_tokens = _tokens(json.dumps(messages, ensure_ascii=False))
    results = [_text(m) for m in messages[last_user + 1:] if m.get("role") == "tool"]
    offered = {t["function"]["name"] for t in request.get("tools") or []}
    if not results and "file_search" in offered:
        arguments = json.dumps({"queries": [question]}, ensure_ascii=False)
        return {"content": None, "tool_calls": [{"name": "file_search", "arguments": arguments}],
                "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": _tokens(arguments)}}
    found = _MARKER.search(results[-1]) if results else None
    if found is None:
        content = "The files do not say."
    else:
        content = f"The notes say: {found.group(3).strip()} 【{found.group(1)}†{found.group(2)}】"
    return {"content": content, "tool_calls": [],
            "usage": {"prompt_tokens": prompt_tokens, "completion_tokens": _tokens(content)}}


# --------------------------------------------------------------------------- wire format


def _completion(reply: dict[str, Any], model: str) -> dict[str, Any]:
    calls = [
        {"id": f"call_{uuid.uuid4().hex[:24]}", "type": "function",
         "function": {"name": c["name"], "arguments": c["arguments"]}}
        for c in reply.get("tool_calls") or []
    ]
    message: dict[str, Any] = {"role": "assistant", "content": reply.get("content")}
    if calls:
        message["tool_calls"] = calls
    return {
        "id": f"chatcmpl-{uuid.uuid4().hex[:24]}",
        "object": "chat.completion",
        "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "message": message, "finish_reason": "tool_calls" if calls else "stop",
                     "logprobs": None}],
        "usage": _usage(reply),
    }


def _usage(reply: dict[str, Any]) -> dict[str, int]:
    usage = reply.get("usage") or {"prompt_tokens": 1, "completion_tokens": 1}
    return {
        "prompt_tokens": usage["prompt_tokens"],
        "completion_tokens": usage["completion_tokens"],
        "total_tokens": usage["prompt_tokens"] + usage["completion_tokens"],
    }


def _chunks(reply: dict[str, Any], model: str, include_usage: bool) -> list[dict[str, Any]]:
    ident, created = f"chatcmpl-{uuid.uuid4().hex[:24]}", int(time.time())

    def chunk(delta: dict[str, Any], finish: str | None = None) -> dict[str, Any]:
        return {"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                "choices": [{"index": 0, "delta": delta, "finish_reason": finish, "logprobs": None}]}

    out = [chunk({"role": "assistant", "content": ""})]
    out += [chunk({"content": piece}) for piece in _CHUNK.findall(reply.get("content") or "")]
    calls = reply.get("tool_calls") or []
    for index, call in enumerate(calls):
        out.append(chunk({"tool_calls": [{"index": index, "id": f"call_{uuid.uuid4().hex[:24]}",
                                          "type": "function",
                                          "function": {"name": call["name"], "arguments": ""}}]}))
        out += [chunk({"tool_calls": [{"index": index, "function": {"arguments": piece}}]})
                for piece in _CHUNK.findall(call["arguments"])]
    out.append(chunk({}, "tool_calls" if calls else "stop"))
    if include_usage:
        out.append({"id": ident, "object": "chat.completion.chunk", "created": created, "model": model,
                    "choices": [], "usage": _usage(reply)})
    return out


def _error_body(status: int, message: str, code: str | None = None) -> dict[str, Any]:
    kind = {400: "invalid_request_error", 401: "invalid_request_error", 404: "invalid_request_error",
            429: "requests"}.get(status, "server_error")
    return {"error": {"message": message, "type": kind, "param": None, "code": code}}


# --------------------------------------------------------------------------- server


class FakeModel:
    """A scriptable Chat Completions server on 127.0.0.1 (a free port), run in a thread.

    ``delay``: seconds before each streamed chunk. ``respond_after``: seconds before any
    answer at all (to provoke timeouts). ``refuse_stream_options``: answer 400 to requests
    carrying ``stream_options``, as some older servers do. ``api_key``: when set, requests
    without ``Authorization: Bearer <api_key>`` get OpenAI's 401. ``models``: when set,
    other model names get a 404 ``model_not_found``. ``include_usage``: set False to act like
    a server that never reports usage.
    """

    def __init__(
        self,
        script: Script | None = None,
        *,
        delay: float = 0.0,
        respond_after: float = 0.0,
        refuse_stream_options: bool = False,
        api_key: str | None = None,
        models: list[str] | None = None,
        include_usage: bool = True,
    ) -> None:
        self.script = script or math_tutor_script
        self.delay = delay
        self.respond_after = respond_after
        self.refuse_stream_options = refuse_stream_options
        self.api_key = api_key
        self.models = models
        self.include_usage = include_usage
        self.requests: list[dict[str, Any]] = []
        #: request headers, names lower-cased
        self.headers: list[dict[str, str]] = []
        self._server: ThreadingHTTPServer | None = None
        self._port: int | None = None
        self._thread: threading.Thread | None = None

    # lifecycle -------------------------------------------------------------

    def start(self) -> "FakeModel":
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler_for(self))
        self._server.daemon_threads = True
        self._port = self._server.server_address[1]
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-model", daemon=True
        )
        self._thread.start()
        return self

    def close(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "FakeModel":
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def port(self) -> int:
        """The port it listens on (kept after close, so tests can still name the address)."""
        assert self._port is not None, "start the FakeModel first (use it in a with block)"
        return self._port

    @property
    def base_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    def __repr__(self) -> str:
        where = self.base_url if self._server else "not running"
        return f"FakeModel({where}, {len(self.requests)} requests)"

    # answering -------------------------------------------------------------

    def answer(self, body: dict[str, Any], authorization: str | None) -> tuple[int, Any]:
        """(status, JSON body) for a non-streaming answer, or (200, list of chunks) for streaming."""
        if self.api_key is not None and authorization != f"Bearer {self.api_key}":
            shown = (authorization or "")[7:]
            masked = f"{shown[:3]}***{shown[-2:]}" if len(shown) > 5 else "***"
            return 401, _error_body(401, f"Incorrect API key provided: {masked}. You can find your "
                                         "API key at your account page.", "invalid_api_key")
        if self.refuse_stream_options and "stream_options" in body:
            return 400, _error_body(400, "Unrecognized request argument supplied: stream_options")
        model = body.get("model", "")
        if self.models is not None and model not in self.models:
            return 404, _error_body(404, f"The model `{model}` does not exist or you do not have "
                                         "access to it.", "model_not_found")
        reply = self.script(body)
        if "status" in reply:
            return reply["status"], _error_body(reply["status"], reply.get("message", "error"),
                                                reply.get("code"))
        if body.get("stream"):
            wants_usage = bool((body.get("stream_options") or {}).get("include_usage"))
            return 200, _chunks(reply, model, wants_usage and self.include_usage)
        completion = _completion(reply, model)
        if not self.include_usage:
            completion.pop("usage")
        return 200, completion


def _handler_for(fake: FakeModel) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        disable_nagle_algorithm = True  # each SSE chunk leaves at once, as from a real model server

        def log_message(self, format: str, *args: Any) -> None:  # keep test output quiet
            pass

        def do_GET(self) -> None:
            if self.path.rstrip("/") != "/v1/models":
                return self._json(404, _error_body(404, f"Unknown path {self.path}"))
            names = fake.models or ["fake-tutor"]
            self._json(200, {"object": "list", "data": [
                {"id": n, "object": "model", "created": 0, "owned_by": "tutor-nb-tests"} for n in names]})

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length)
            if self.path.rstrip("/") != "/v1/chat/completions":
                return self._json(404, _error_body(404, f"Unknown path {self.path}"))
            try:
                body = json.loads(raw)
            except json.JSONDecodeError:
                return self._json(400, _error_body(400, "The request body is not valid JSON."))
            fake.requests.append(body)
            fake.headers.append({k.lower(): v for k, v in self.headers.items()})
            time.sleep(fake.respond_after)
            status, answer = fake.answer(body, self.headers.get("Authorization"))
            if isinstance(answer, list):
                return self._sse(answer)
            self._json(status, answer)

        def _json(self, status: int, payload: Any) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _sse(self, chunks: list[dict[str, Any]]) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            try:
                for item in chunks:
                    time.sleep(fake.delay)
                    self._send_chunk(f"data: {json.dumps(item)}\n\n".encode())
                self._send_chunk(b"data: [DONE]\n\n")
                self._send_chunk(b"")
            except (BrokenPipeError, ConnectionResetError):
                self.close_connection = True

        def _send_chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

    return Handler
