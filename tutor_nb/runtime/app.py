"""The HTTP face of the runtime: OpenAI's Assistants endpoints under ``/v1``.

Request bodies are checked against the ``openai`` SDK's own parameter types and answers are
the SDK's own response types, so the official client parses everything it gets. Errors use
OpenAI's envelope and the status codes the SDK maps to its exception classes.
"""

from __future__ import annotations

import asyncio
import json
import logging
import re
import secrets
from contextlib import asynccontextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any, AsyncIterator, Iterator

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, Response, StreamingResponse
from openai.types import FileObject
from openai.types.beta import Assistant, Thread, assistant_create_params, assistant_update_params
from openai.types.beta import thread_create_and_run_params, thread_create_params, thread_update_params
from openai.types.beta.threads import Message, Run, message_create_params, message_update_params
from openai.types.beta.threads import run_create_params, run_submit_tool_outputs_params, run_update_params
from openai.types.beta.threads.runs import RunStep
from pydantic import BaseModel, TypeAdapter, ValidationError
from starlette.datastructures import Headers, UploadFile

from .config import Settings
from .engine import ACTIVE, Engine, RunFailure
from .events import RunEvents
from .store import KINDS, Store
from .wire import message_content, new_id, now

log = logging.getLogger("tutor_nb.runtime")

RUN_TTL = 600  # seconds until an active run would expire, as OpenAI reported it


class APIError(Exception):
    """An error answer in OpenAI's envelope."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    def response(self) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status)


class _Guard:
    """Refuses requests without the token, and bodies over the size limit, before any route runs.

    Plain ASGI rather than ``@app.middleware``: the limit must also hold for chunked bodies that
    declare no length, so it is counted as the body streams in and nothing larger is buffered.
    """

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app, self.settings = app, settings
        self.limit = settings.max_body_mb * 1024 * 1024

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        token = self.settings.token
        if token:
            supplied = headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not secrets.compare_digest(supplied.encode(), token.encode()):
                error = APIError(401, "Missing or wrong token. This runtime is served beyond this machine and needs "
                                 "its token as the client's api_key.", code="invalid_api_key")
                return await error.response()(scope, receive, send)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            return await self._too_large().response()(scope, receive, send)
        seen = 0

        async def capped() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise self._too_large()  # answered by the APIError handler of the route reading the body
            return message

        await self.app(scope, capped, send)

    def _too_large(self) -> APIError:
        # uvicorn reads and discards the rest of the body, so the client is sure to get this answer
        return APIError(413, f"The request body is larger than {self.settings.max_body_mb} MB. Send a smaller "
                        "file, or start the runtime with a larger max_body_mb.", code="request_too_large")


# -- request parsing ---------------------------------------------------------------------------


@lru_cache(maxsize=None)
def _adapter(params: type) -> TypeAdapter:
    return TypeAdapter(params)


def _materialize(value: Any, path: tuple = ()) -> Any:
    """Force pydantic's lazily validated iterables, so every item is checked now."""
    if isinstance(value, dict):
        return {k: _materialize(v, (*path, k)) for k, v in value.items()}
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return value
    items = []
    try:
        for v in value:
            items.append(_materialize(v, (*path, len(items))))
    except ValidationError as exc:
        raise _invalid(exc, path) from None
    return items


def _invalid(exc: ValidationError, prefix: tuple = ()) -> APIError:
    """A 400 naming the offending field the way the request spelled it."""
    first = exc.errors()[0]
    loc = [str(p) for p in (*prefix, *first["loc"]) if not _union_member(p)]
    field = ".".join(loc)
    got = first.get("input")
    hint = f" (got {json.dumps(got, default=str)[:80]})" if first["type"] != "missing" and not isinstance(got, dict) else ""
    message = f"Invalid value for '{field}': {first['msg']}{hint}." if field else f"Invalid request body: {first['msg']}."
    return APIError(400, message, param=field or None, code="invalid_value")


def _union_member(part: Any) -> bool:
    """The names pydantic gives union members ("CodeInterpreterToolParam", "str", "literal[...]") are not fields."""
    return isinstance(part, str) and (part[:1].isupper() or part in _TYPE_TAGS or "[" in part)


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "is-instance"}


def _check(raw: Any, params: type) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise APIError(400, "The request body must be a JSON object.")
    try:
        checked = _materialize(_adapter(params).validate_python(raw))
    except ValidationError as exc:
        raise _invalid(exc) from None
    stream = raw.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise APIError(400, "Invalid value for 'stream': expected true or false.", param="stream", code="invalid_value")
    if stream is not None:
        checked["stream"] = stream
    _bounded(checked)
    return checked


#: OpenAI's documented bounds, which the SDK's parameter types do not carry: lengths of strings, lists
#: and maps, values of numbers. Checked at the top of a body and in the thread and messages it nests.
_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "name": (None, 256), "description": (None, 512), "instructions": (None, 256_000),
    "temperature": (0, 2), "top_p": (0, 1), "tools": (None, 128),
    "tools.*.file_search.max_num_results": (1, 50),
    "tools.*.file_search.ranking_options.score_threshold": (0, 1),
    "tool_resources.code_interpreter.file_ids": (None, 20),
    "tool_resources.file_search.vector_store_ids": (None, 1),
    "max_prompt_tokens": (256, None), "max_completion_tokens": (256, None),
    "truncation_strategy.last_messages": (1, None),
    "metadata": (None, 16), "metadata.*": (None, 512),
}
_SCOPES = ("", "thread.", "messages.*.", "thread.messages.*.", "additional_messages.*.")
_URL = re.compile(r"https?://(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+\Z")


def _bounded(body: dict[str, Any]) -> None:
    """A 400 naming the first field outside OpenAI's bounds."""
    for scope in _SCOPES:
        for path, (low, high) in _BOUNDS.items():
            for field, value in _find(body, (scope + path).split(".")):
                size = len(value) if isinstance(value, (str, list, dict)) else value
                if isinstance(size, bool) or not isinstance(size, (int, float)):
                    continue
                if (low is None or size >= low) and (high is None or size <= high):
                    continue
                unit = {str: " characters", list: " items", dict: " keys"}.get(type(value), "")
                limit = (f"between {low:g} and {high:g}" if low is not None and high is not None
                         else f"at most {high:g}{unit}" if high is not None else f"at least {low:g}")
                raise APIError(400, f"Invalid value for '{field}': it must be {limit}.", param=field,
                               code="invalid_value")
        for field, metadata in _find(body, (scope + "metadata").split(".")):
            long = next((k for k in metadata if len(k) > 64), None)
            if long is not None:
                raise APIError(400, f"Invalid key in '{field}': {long[:70]!r}... is longer than 64 characters.",
                               param=field, code="invalid_value")
        for field, url in _find(body, (scope + "content.*.image_url.url").split(".")):
            if not (isinstance(url, str) and _URL.match(url)):
                raise APIError(400, f"Invalid value for '{field}': use an absolute http(s) URL of the image.",
                               param=field, code="invalid_value")


def _find(value: Any, parts: list[str], trail: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """(dotted path, value) for each place in a body that a path with ``*`` wildcards names."""
    if not parts:
        yield ".".join(trail), value
        return
    head, rest = parts[0], parts[1:]
    if head == "*":
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            yield from _find(item, rest, (*trail, str(key)))
    elif isinstance(value, dict) and value.get(head) is not None:
        yield from _find(value[head], rest, (*trail, head))


async def _body(request: Request, params: type, **path: str) -> dict[str, Any]:
    """The JSON body checked against the SDK's parameter type (path parameters count as given)."""
    data = await request.body()
    if not data.strip():
        raw: Any = {}
    else:
        deep = False
        try:
            raw = json.loads(data, parse_constant=_not_json)
        except ValueError as exc:
            raise APIError(400, f"The request body is not valid JSON ({exc}). Send a JSON object.") from None
        except RecursionError:
            deep = True
        if deep or _too_deep(raw):
            raise APIError(400, f"The request body nests more than {MAX_DEPTH} levels deep. "
                           "Send a flatter JSON object.")
        if _SURROGATE_ESCAPE.search(data) and _has_lone_surrogate(raw):
            raise APIError(400, "The request body holds an unpaired UTF-16 surrogate escape (like \\ud800), "
                           "which is not text. Send valid Unicode strings.")
    if isinstance(raw, dict):
        raw = {**raw, **path}
    checked = _check(raw, params)
    for name in path:
        checked.pop(name, None)
    return checked


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


#: deepest nesting of lists and objects a body may have (function parameter schemas nest a few levels)
MAX_DEPTH = 64


def _too_deep(value: Any) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not a JSON number")


def _has_lone_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def _paging(request: Request) -> dict[str, Any]:
    q = request.query_params
    try:
        limit = int(q.get("limit", 20))
    except ValueError:
        raise APIError(400, "'limit' must be an integer between 1 and 100.", param="limit") from None
    if not 1 <= limit <= 100:
        raise APIError(400, f"'limit' must be between 1 and 100, got {limit}.", param="limit")
    order = q.get("order", "desc")
    if order not in ("asc", "desc"):
        raise APIError(400, f"'order' must be 'asc' or 'desc', got {order!r}.", param="order")
    return {"limit": limit, "order": order, "after": q.get("after"), "before": q.get("before")}


def _ok(obj: BaseModel | dict, headers: dict[str, str] | None = None) -> Response:
    data = _public(obj.model_dump(mode="json") if isinstance(obj, BaseModel) else obj)
    return Response(json.dumps(data), media_type="application/json", headers=headers)


#: fields OpenAI left out rather than sending null; the SDK reads a missing field as None
_UNSENT_WHEN_NULL = {"file": ("expires_at", "status_details")}


def _public(data: dict[str, Any]) -> dict[str, Any]:
    """An object (or a list of them) as OpenAI sent it: its own fields always present, null when empty;
    unset options inside them left out (``tool_resources: {}``, not ``{"code_interpreter": null}``)."""
    if data.get("object") == "list":
        return {**data, "data": [_public(item) for item in data["data"]]}
    unsent = _UNSENT_WHEN_NULL.get(data.get("object"), ())
    return {k: _pruned(v) for k, v in data.items() if v is not None or k not in unsent}


def _pruned(value: Any) -> Any:
    if isinstance(value, dict):
        # a function call's output is the one nested field OpenAI sent as null (until it was submitted)
        return {k: _pruned(v) for k, v in value.items() if v is not None or k == "output"}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


# -- the application ---------------------------------------------------------------------------


class RuntimeCore:
    """Everything one server holds: settings, store, sandbox, model backend and engine."""

    def __init__(self, settings: Settings) -> None:
        from .backends import make_backend
        from .sandbox import Sandbox

        self.settings = settings
        self.store = Store(settings.data_dir)
        self.events = RunEvents()
        self.sandbox = Sandbox(
            settings.data_dir / "sandbox", timeout=settings.exec_timeout, idle_timeout=settings.idle_timeout,
            pool_size=settings.pool_size, memory_limit_mb=settings.memory_limit_mb,
        )
        self.backend = make_backend(
            settings.backend, model_base_url=settings.model_base_url, model_api_key=settings.model_api_key,
            model=settings.model, cassettes=settings.cassettes or None, record=settings.record,
            replay_delay=settings.replay_delay,
        )
        self.engine = Engine(self.store, self.sandbox, self.backend, self.events, exec_timeout=settings.exec_timeout)

    async def start(self) -> None:
        ended = self.engine.recover()
        if ended:
            log.warning("marked %d run(s) interrupted by the last shutdown as failed", len(ended))
        await self.sandbox.start()

    async def stop(self) -> None:
        await self.engine.close()
        await self.sandbox.close()
        await self.backend.aclose()
        self.store.close()

    def need(self, cls: type, id: str, param: str | None = None) -> Any:
        obj = self.engine.get_run(id) if cls is Run else self.store.get(cls, id)
        if obj is None:
            noun = KINDS[cls]
            raise APIError(404, f"No {noun} found with id '{id}'. Check the id, or list {noun}s to see what exists.",
                           param=param, code="not_found")
        return obj


def create_app(settings: Settings) -> FastAPI:
    rt = RuntimeCore(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await rt.start()
        try:
            yield
        finally:
            await rt.stop()

    app = FastAPI(title="tutor_nb runtime", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runtime = rt

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(404)
    async def _no_route(request: Request, exc: Exception) -> JSONResponse:
        return APIError(404, f"Unknown endpoint {request.method} {request.url.path}. tutor_nb serves OpenAI's "
                        "Assistants endpoints (assistants, threads, messages, runs, run steps, files) under /v1.",
                        code="unknown_url").response()

    @app.exception_handler(405)
    async def _bad_method(request: Request, exc: Exception) -> JSONResponse:
        return APIError(405, f"{request.method} is not allowed on {request.url.path}.", code="method_not_allowed").response()

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("error serving %s %s", request.method, request.url.path)
        return APIError(500, f"The tutor_nb runtime failed on this request ({type(exc).__name__}). "
                        "Nothing was changed; please report it if it repeats.", type="server_error").response()

    app.add_middleware(_Guard, settings=settings)

    @app.get("/v1")
    async def about() -> dict[str, Any]:
        return {"object": "tutor_nb.runtime", "backend": rt.backend.name, "data_dir": str(settings.data_dir)}

    # -- assistants ----------------------------------------------------------------------------

    @app.post("/v1/assistants")
    async def create_assistant(request: Request) -> Response:
        p = await _body(request, assistant_create_params.AssistantCreateParams)
        if "model" not in p:
            raise APIError(400, "Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
        assistant = Assistant.model_validate({
            "id": new_id("assistant"), "object": "assistant", "created_at": now(), "model": p["model"],
            "name": p.get("name"), "description": p.get("description"), "instructions": p.get("instructions"),
            "tools": p.get("tools") or [], "metadata": p.get("metadata") or {},
            "tool_resources": _tool_resources(p.get("tool_resources"), p.get("tools")),
            "temperature": p.get("temperature", 1.0), "top_p": p.get("top_p", 1.0),
            "response_format": p.get("response_format") or "auto",
        })
        _check_files(rt, assistant.tool_resources)
        rt.store.add(assistant)
        return _ok(assistant)

    @app.get("/v1/assistants")
    async def list_assistants(request: Request) -> Response:
        return _ok(rt.store.page(Assistant, None, **_paging(request)).to_wire())

    @app.get("/v1/assistants/{assistant_id}")
    async def get_assistant(assistant_id: str) -> Response:
        return _ok(rt.need(Assistant, assistant_id))

    @app.post("/v1/assistants/{assistant_id}")
    async def update_assistant(assistant_id: str, request: Request) -> Response:
        assistant = rt.need(Assistant, assistant_id)
        return _ok(_updated(rt, assistant, await _body(request, assistant_update_params.AssistantUpdateParams)))

    @app.delete("/v1/assistants/{assistant_id}")
    async def delete_assistant(assistant_id: str) -> Response:
        rt.need(Assistant, assistant_id)
        rt.store.delete(assistant_id)
        return _ok({"id": assistant_id, "object": "assistant.deleted", "deleted": True})

    # -- threads -------------------------------------------------------------------------------

    def new_thread(p: dict[str, Any]) -> Thread:
        thread = Thread.model_validate({
            "id": new_id("thread"), "object": "thread", "created_at": now(),
            "metadata": p.get("metadata") or {}, "tool_resources": _tool_resources(p.get("tool_resources")),
        })
        _check_files(rt, thread.tool_resources)
        messages = [new_message(thread.id, m) for m in p.get("messages") or []]
        rt.store.add(thread)
        for message in messages:
            rt.store.add(message, parent=thread.id)
        return thread

    def new_message(thread_id: str, p: dict[str, Any], run_id: str | None = None) -> Message:
        if p.get("role") not in ("user", "assistant"):
            raise APIError(400, "Each message needs a 'role' of 'user' or 'assistant'.", param="role")
        if "content" not in p:
            raise APIError(400, "Each message needs 'content' (a string or a list of content parts).", param="content")
        for attachment in p.get("attachments") or []:
            rt.need(FileObject, attachment.get("file_id", ""), param="attachments.file_id")
        return Message.model_validate({
            "id": new_id("message"), "object": "thread.message", "created_at": now(), "thread_id": thread_id,
            "role": p["role"], "content": message_content(p["content"]), "attachments": p.get("attachments") or [],
            "metadata": p.get("metadata") or {}, "status": "completed", "completed_at": now(),
            "assistant_id": None, "run_id": run_id,
        })

    # registered before /v1/threads/{thread_id} so "runs" is not taken for a thread id
    @app.post("/v1/threads/runs")
    async def create_thread_and_run(request: Request) -> Response:
        p = await _body(request, thread_create_and_run_params.ThreadCreateAndRunParamsBase)
        rt.need(Assistant, p.get("assistant_id") or "", param="assistant_id")
        thread = new_thread(p.get("thread") or {})
        run = new_run(thread.id, p)
        return start(run, bool(p.get("stream")), [("thread.created", thread)])

    @app.post("/v1/threads")
    async def create_thread(request: Request) -> Response:
        return _ok(new_thread(await _body(request, thread_create_params.ThreadCreateParams)))

    @app.get("/v1/threads/{thread_id}")
    async def get_thread(thread_id: str) -> Response:
        return _ok(rt.need(Thread, thread_id))

    @app.post("/v1/threads/{thread_id}")
    async def update_thread(thread_id: str, request: Request) -> Response:
        thread = rt.need(Thread, thread_id)
        return _ok(_updated(rt, thread, await _body(request, thread_update_params.ThreadUpdateParams)))

    @app.delete("/v1/threads/{thread_id}")
    async def delete_thread(thread_id: str) -> Response:
        rt.need(Thread, thread_id)
        active = rt.engine.active_run(thread_id)
        if active is not None:
            await rt.engine.cancel(rt.engine.get_run(active.id))
        rt.store.delete(thread_id)
        await rt.sandbox.discard(thread_id)
        return _ok({"id": thread_id, "object": "thread.deleted", "deleted": True})

    # -- messages ------------------------------------------------------------------------------

    @app.post("/v1/threads/{thread_id}/messages")
    async def create_message(thread_id: str, request: Request) -> Response:
        rt.need(Thread, thread_id)
        message = new_message(thread_id, await _body(request, message_create_params.MessageCreateParams, thread_id=thread_id))
        rt.store.add(message, parent=thread_id)
        return _ok(message)

    @app.get("/v1/threads/{thread_id}/messages")
    async def list_messages(thread_id: str, request: Request) -> Response:
        rt.need(Thread, thread_id)
        run_id = request.query_params.get("run_id")
        where = {"run_id": run_id} if run_id else None
        return _ok(rt.store.page(Message, thread_id, where=where, **_paging(request)).to_wire())

    @app.get("/v1/threads/{thread_id}/messages/{message_id}")
    async def get_message(thread_id: str, message_id: str) -> Response:
        return _ok(_in_thread(rt.need(Message, message_id), thread_id))

    @app.post("/v1/threads/{thread_id}/messages/{message_id}")
    async def update_message(thread_id: str, message_id: str, request: Request) -> Response:
        message = _in_thread(rt.need(Message, message_id), thread_id)
        return _ok(_updated(rt, message, await _body(request, message_update_params.MessageUpdateParams, thread_id=thread_id)))

    @app.delete("/v1/threads/{thread_id}/messages/{message_id}")
    async def delete_message(thread_id: str, message_id: str) -> Response:
        _in_thread(rt.need(Message, message_id), thread_id)
        rt.store.delete(message_id)
        return _ok({"id": message_id, "object": "thread.message.deleted", "deleted": True})

    # -- runs ----------------------------------------------------------------------------------

    def new_run(thread_id: str, p: dict[str, Any]) -> Run:
        assistant_id = p.get("assistant_id")
        if not assistant_id:
            raise APIError(400, "Missing required parameter: 'assistant_id'.", param="assistant_id",
                           code="missing_required_parameter")
        assistant = rt.need(Assistant, assistant_id, param="assistant_id")
        active = rt.engine.active_run(thread_id)
        if active is not None:
            raise APIError(400, f"Thread {thread_id} already has an active run {active.id} ({active.status}). "
                           "Wait for it to finish (runs.poll) or cancel it (runs.cancel) before starting another.")
        instructions = p.get("instructions") or assistant.instructions or ""
        if p.get("additional_instructions"):
            instructions = (instructions + "\n\n" + p["additional_instructions"]).strip()
        for extra in p.get("additional_messages") or []:
            rt.store.add(new_message(thread_id, extra), parent=thread_id)
        created = now()
        run = Run.model_validate({
            "id": new_id("run"), "object": "thread.run", "created_at": created, "thread_id": thread_id,
            "assistant_id": assistant.id, "status": "queued", "expires_at": created + RUN_TTL,
            "model": p.get("model") or assistant.model, "instructions": instructions,
            "tools": p["tools"] if p.get("tools") is not None else [t.model_dump() for t in assistant.tools],
            "metadata": p.get("metadata") or {},
            "temperature": p.get("temperature") if p.get("temperature") is not None else assistant.temperature,
            "top_p": p.get("top_p") if p.get("top_p") is not None else assistant.top_p,
            "max_completion_tokens": p.get("max_completion_tokens"), "max_prompt_tokens": p.get("max_prompt_tokens"),
            "tool_choice": p.get("tool_choice") or "auto", "parallel_tool_calls": p.get("parallel_tool_calls", True),
            "response_format": p.get("response_format") or assistant.response_format or "auto",
            "truncation_strategy": p.get("truncation_strategy") or {"type": "auto", "last_messages": None},
            "tool_resources": {},
        })
        rt.store.add(run, parent=thread_id)
        return run

    def start(run: Run, stream: bool, prefix: list[tuple[str, BaseModel]] = ()) -> Response:  # type: ignore[assignment]
        if not stream:
            rt.engine.launch(run)
            return _ok(run)
        events = rt.events.subscribe(run.id)
        rt.engine.launch(run)
        return _sse(events, prefix)

    @app.post("/v1/threads/{thread_id}/runs")
    async def create_run(thread_id: str, request: Request) -> Response:
        rt.need(Thread, thread_id)
        p = await _body(request, run_create_params.RunCreateParamsBase, thread_id=thread_id)
        run = new_run(thread_id, p)
        return start(run, bool(p.get("stream")))

    @app.get("/v1/threads/{thread_id}/runs")
    async def list_runs(thread_id: str, request: Request) -> Response:
        rt.need(Thread, thread_id)
        page = rt.store.page(Run, thread_id, **_paging(request))
        page.data = [rt.engine.get_run(r.id) or r for r in page.data]
        return _ok(page.to_wire())

    @app.get("/v1/threads/{thread_id}/runs/{run_id}")
    async def get_run(thread_id: str, run_id: str, request: Request) -> Response:
        run = _in_thread(rt.need(Run, run_id), thread_id)
        if run.status in ACTIVE and run.status != "requires_action" and request.headers.get("x-stainless-poll-helper"):
            # a polling client: answer as soon as the status moves instead of making it sleep
            await rt.events.wait_changed(run_id, timeout=1.0)
            run = rt.need(Run, run_id)
        headers = {"openai-poll-after-ms": str(settings.poll_after_ms)}
        timing = rt.engine.timing(run_id)
        server_timing = timing.server_timing() if timing is not None else None
        if server_timing:
            headers["server-timing"] = server_timing
        return _ok(run, headers=headers)

    @app.post("/v1/threads/{thread_id}/runs/{run_id}")
    async def update_run(thread_id: str, run_id: str, request: Request) -> Response:
        run = _in_thread(rt.need(Run, run_id), thread_id)
        p = await _body(request, run_update_params.RunUpdateParams, thread_id=thread_id)
        if p.get("metadata") is not None:
            run.metadata = p["metadata"]
        rt.store.save(run)
        return _ok(run)

    @app.post("/v1/threads/{thread_id}/runs/{run_id}/cancel")
    async def cancel_run(thread_id: str, run_id: str) -> Response:
        run = _in_thread(rt.need(Run, run_id), thread_id)
        if run.status not in ("queued", "in_progress", "requires_action", "cancelling"):
            raise APIError(400, f"Cannot cancel run with status '{run.status}': it has already ended.", param="run_id")
        return _ok(await rt.engine.cancel(run))

    @app.post("/v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs")
    async def submit_tool_outputs(thread_id: str, run_id: str, request: Request) -> Response:
        run = _in_thread(rt.need(Run, run_id), thread_id)
        p = await _body(request, run_submit_tool_outputs_params.RunSubmitToolOutputsParamsBase, thread_id=thread_id)
        if run.status != "requires_action":
            raise APIError(400, f"Run {run_id} is '{run.status}', not waiting for tool outputs (requires_action).",
                           param="run_id")
        stream = bool(p.get("stream"))
        events = rt.events.subscribe(run.id) if stream else None
        try:
            rt.engine.submit_tool_outputs(run, p.get("tool_outputs") or [])
        except RunFailure as exc:
            raise APIError(400, exc.message) from None
        return _sse(events) if events is not None else _ok(run)

    # -- run steps -----------------------------------------------------------------------------

    @app.get("/v1/threads/{thread_id}/runs/{run_id}/steps")
    async def list_steps(thread_id: str, run_id: str, request: Request) -> Response:
        _in_thread(rt.need(Run, run_id), thread_id)
        return _ok(rt.store.page(RunStep, run_id, **_paging(request)).to_wire())

    @app.get("/v1/threads/{thread_id}/runs/{run_id}/steps/{step_id}")
    async def get_step(thread_id: str, run_id: str, step_id: str) -> Response:
        step = _in_thread(rt.need(RunStep, step_id), thread_id)
        if step.run_id != run_id:
            raise APIError(404, f"Run step {step_id} does not belong to run {run_id}.", code="not_found")
        return _ok(step)

    # -- files ---------------------------------------------------------------------------------

    @app.post("/v1/files")
    async def upload_file(request: Request) -> Response:
        try:
            form = await request.form(max_part_size=settings.max_body_mb * 1024 * 1024)
        except APIError:
            raise
        except Exception as exc:
            raise APIError(400, f"Could not read the upload ({exc}). Send multipart/form-data with 'file' and "
                           "'purpose' fields, as client.files.create(file=..., purpose='assistants') does.") from None
        upload, purpose = form.get("file"), form.get("purpose")
        if not isinstance(upload, UploadFile):
            raise APIError(400, "Missing the 'file' part of the upload.", param="file", code="missing_required_parameter")
        if not isinstance(purpose, str) or not purpose:
            raise APIError(400, "Missing 'purpose'; use 'assistants' for code interpreter files.", param="purpose",
                           code="missing_required_parameter")
        data = await upload.read()
        meta = FileObject.model_validate({
            "id": new_id("file"), "object": "file", "bytes": len(data), "created_at": now(),
            "filename": _safe_name(upload.filename), "purpose": purpose, "status": "processed",
        }) if purpose in FileObject.model_fields["purpose"].annotation.__args__ else None  # type: ignore[union-attr]
        if meta is None:
            raise APIError(400, f"Unknown purpose {purpose!r}; use 'assistants'.", param="purpose", code="invalid_value")
        rt.store.write_blob(meta.id, data)
        rt.store.add(meta)
        return _ok(meta)

    @app.get("/v1/files")
    async def list_files(request: Request) -> Response:
        purpose = request.query_params.get("purpose")
        page = rt.store.page(FileObject, None, where={"purpose": purpose} if purpose else None, **_paging(request))
        return _ok(page.to_wire())

    @app.get("/v1/files/{file_id}")
    async def get_file(file_id: str) -> Response:
        return _ok(rt.need(FileObject, file_id))

    @app.delete("/v1/files/{file_id}")
    async def delete_file(file_id: str) -> Response:
        rt.need(FileObject, file_id)
        rt.store.delete(file_id)
        rt.store.delete_blob(file_id)
        return _ok({"id": file_id, "object": "file", "deleted": True})

    @app.get("/v1/files/{file_id}/content")
    async def file_content(file_id: str) -> Response:
        meta = rt.need(FileObject, file_id)
        data = await asyncio.to_thread(rt.store.read_blob, meta.id)
        media = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "application/octet-stream"
        disposition = f"attachment; filename*=UTF-8''{_quote(meta.filename)}"
        return Response(data, media_type=media, headers={"content-disposition": disposition})

    return app


# -- helpers -----------------------------------------------------------------------------------


def _sse(events: AsyncIterator[bytes], prefix: list[tuple[str, BaseModel]] | tuple = ()) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        for name, obj in prefix:
            yield f"event: {name}\ndata: {obj.model_dump_json()}\n\n".encode()
        async for chunk in events:
            yield chunk

    return StreamingResponse(body(), media_type="text/event-stream", headers={"cache-control": "no-cache"})


def _in_thread(obj: Any, thread_id: str) -> Any:
    if getattr(obj, "thread_id", thread_id) != thread_id:
        raise APIError(404, f"{obj.id} does not belong to thread {thread_id}.", code="not_found")
    return obj


def _tool_resources(resources: dict[str, Any] | None, tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Stored tool resources; an assistant with the code interpreter always shows its file list."""
    resources = dict(resources or {})
    if any(t.get("type") == "code_interpreter" for t in tools or []):
        resources.setdefault("code_interpreter", {"file_ids": []})
    ci = resources.get("code_interpreter")
    if ci is not None:
        resources["code_interpreter"] = {"file_ids": list(ci.get("file_ids") or [])}
    resources.pop("file_search", None)
    return resources


def _updated(rt: RuntimeCore, obj: BaseModel, changes: dict[str, Any]) -> BaseModel:
    """Apply a modify request's fields to a stored object and save it."""
    if "tool_resources" in changes:
        changes["tool_resources"] = _tool_resources(changes["tool_resources"])
    obj = type(obj).model_validate({**obj.model_dump(), **changes})
    _check_files(rt, getattr(obj, "tool_resources", None))
    rt.store.save(obj)
    return obj


def _check_files(rt: RuntimeCore, resources: Any) -> None:
    ci = getattr(resources, "code_interpreter", None) if resources else None
    for file_id in getattr(ci, "file_ids", None) or []:
        rt.need(FileObject, file_id, param="tool_resources.code_interpreter.file_ids")


def _safe_name(name: str | None) -> str:
    """A file's own name without any folder part, so it can never point outside a folder."""
    base = Path((name or "").replace("\\", "/")).name
    return base if base not in ("", ".", "..") else "upload"


def _quote(name: str) -> str:
    from urllib.parse import quote

    return quote(name, safe="")
