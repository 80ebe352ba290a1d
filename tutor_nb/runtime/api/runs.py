"""/v1/threads/{thread_id}/runs and their steps: create, list, retrieve, modify, cancel, submit tool outputs."""

from __future__ import annotations

import asyncio
import math
from typing import Any, Sequence

from fastapi import APIRouter, Request, Response
from openai.types.beta import Assistant, Thread
from openai.types.beta.threads import Run, run_create_params, run_submit_tool_outputs_params, run_update_params
from openai.types.beta.threads.runs import RunStep
from pydantic import BaseModel

from ..core import RuntimeCore
from ..http import APIError, body, ok, paging, sse
from ..run_options import forced_tool_missing
from ..runs import ACTIVE, SEARCH_CONTENT, RunFailure, without_search_content
from ..wire import new_id, now
from .common import core, in_thread, index_attachments, tools_as_sent
from .messages import new_message

router = APIRouter()

RUN_TTL = 600  # seconds until an active run would expire, as OpenAI reported it
LONG_POLL = 20.0  # seconds a polling client's retrieve is held at most while its run works


def new_run(rt: RuntimeCore, thread_id: str, p: dict[str, Any]) -> Run:
    """A queued run from a request's fields and its assistant's defaults, stored (not yet started)."""
    assistant_id = p.get("assistant_id")
    if not assistant_id:
        raise APIError(400, "Missing required parameter: 'assistant_id'.", param="assistant_id",
                       code="missing_required_parameter")
    assistant = rt.need(Assistant, assistant_id, param="assistant_id")
    active = rt.engine.active_run(thread_id)
    if active is not None:
        raise APIError(400, f"Thread {thread_id} already has an active run {active.id} ({active.status}). "
                       "Wait for it to finish (runs.poll) or cancel it (runs.cancel) before starting another.")
    tools = tools_as_sent(p["tools"] if p.get("tools") is not None else [t.model_dump() for t in assistant.tools])
    _check_tool_choice(p.get("tool_choice"), tools)
    instructions = p.get("instructions") or assistant.instructions or ""
    if p.get("additional_instructions"):
        instructions = (instructions + "\n\n" + p["additional_instructions"]).strip()
    extras = [new_message(rt, thread_id, extra) for extra in p.get("additional_messages") or []]
    for extra in extras:
        rt.store.add(extra, parent=thread_id)
    index_attachments(rt, rt.need(Thread, thread_id), extras)
    created = now()
    run = Run.model_validate({
        "id": new_id("run"), "object": "thread.run", "created_at": created, "thread_id": thread_id,
        "assistant_id": assistant.id, "status": "queued", "expires_at": created + RUN_TTL,
        "model": p.get("model") or assistant.model, "instructions": instructions,
        "tools": tools,
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


def _check_tool_choice(choice: Any, tools: list[dict[str, Any]]) -> None:
    """A 400 for a ``tool_choice`` the run's tools cannot satisfy, before anything is stored."""
    missing = forced_tool_missing(choice, tools)
    if missing is not None:
        raise APIError(400, f"Invalid value for 'tool_choice': it forces the tool {missing!r}, which this run does "
                       "not have. Add it to the assistant's (or the run's) tools, or choose another tool_choice.",
                       param="tool_choice", code="invalid_value")
    if choice == "required" and not tools:
        raise APIError(400, "Invalid value for 'tool_choice': 'required' needs at least one tool, and this run has "
                       "none.", param="tool_choice", code="invalid_value")


def start(rt: RuntimeCore, run: Run, stream: bool, prefix: Sequence[tuple[str, BaseModel]] = ()) -> Response:
    """Hand the run to the engine; answer with the run, or with its event stream."""
    if not stream:
        rt.engine.launch(run)
        return ok(run)
    events = rt.events.subscribe(run.id)
    rt.engine.launch(run)
    return sse(events, prefix)


@router.post("/v1/threads/{thread_id}/runs")
async def create_run(thread_id: str, request: Request) -> Response:
    rt = core(request)
    rt.need(Thread, thread_id)
    p = await body(request, run_create_params.RunCreateParamsBase, thread_id=thread_id)
    with_content = _includes_search_content(request)
    run = new_run(rt, thread_id, p)
    if with_content:
        rt.engine.search_content.add(run.id)
    return start(rt, run, bool(p.get("stream")))


@router.get("/v1/threads/{thread_id}/runs")
async def list_runs(thread_id: str, request: Request) -> Response:
    rt = core(request)
    rt.need(Thread, thread_id)
    page = rt.store.page(Run, thread_id, **paging(request))
    page.data = [rt.engine.get_run(r.id) or r for r in page.data]
    return ok(page.to_wire())


@router.get("/v1/threads/{thread_id}/runs/{run_id}")
async def get_run(thread_id: str, run_id: str, request: Request) -> Response:
    rt = core(request)
    run = in_thread(rt.need(Run, run_id), thread_id)
    if request.headers.get("x-stainless-poll-helper"):
        run = await _when_polled_for(rt, run, request)
    headers = {"openai-poll-after-ms": str(rt.settings.poll_after_ms)}
    timing = rt.engine.timing(run_id)
    server_timing = timing.server_timing() if timing is not None else None
    if server_timing:
        headers["server-timing"] = server_timing
    return ok(run, headers=headers)


async def _when_polled_for(rt: RuntimeCore, run: Run, request: Request) -> Run:
    """The run once it reaches a state the SDK's poll helper stops at (terminal, or requires_action): a
    long poll, held at most LONG_POLL seconds and half the client's read timeout, so that a class of
    polling clients sends one request a turn instead of one every ``poll_after_ms``."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + min(LONG_POLL, _read_timeout(request) / 2)
    while run.status in ACTIVE and run.status != "requires_action" and (left := deadline - loop.time()) > 0:
        await rt.events.wait_changed(run.id, timeout=left)
        run = rt.need(Run, run.id)
    return run


def _read_timeout(request: Request) -> float:
    """The client's read timeout in seconds, as the SDKs send it (Python: read, Node: the whole request)."""
    for name in ("x-stainless-read-timeout", "x-stainless-timeout"):
        try:
            seconds = float(request.headers.get(name, ""))
        except ValueError:
            continue
        if math.isfinite(seconds) and seconds >= 0:
            return seconds
    return math.inf


@router.post("/v1/threads/{thread_id}/runs/{run_id}")
async def update_run(thread_id: str, run_id: str, request: Request) -> Response:
    rt = core(request)
    run = in_thread(rt.need(Run, run_id), thread_id)
    p = await body(request, run_update_params.RunUpdateParams, thread_id=thread_id)
    if p.get("metadata") is not None:
        run.metadata = p["metadata"]
    rt.store.save(run)
    return ok(run)


@router.post("/v1/threads/{thread_id}/runs/{run_id}/cancel")
async def cancel_run(thread_id: str, run_id: str, request: Request) -> Response:
    rt = core(request)
    run = in_thread(rt.need(Run, run_id), thread_id)
    if run.status not in ("queued", "in_progress", "requires_action", "cancelling"):
        raise APIError(400, f"Cannot cancel run with status '{run.status}': it has already ended.", param="run_id")
    return ok(await rt.engine.cancel(run))


@router.post("/v1/threads/{thread_id}/runs/{run_id}/submit_tool_outputs")
async def submit_tool_outputs(thread_id: str, run_id: str, request: Request) -> Response:
    rt = core(request)
    run = in_thread(rt.need(Run, run_id), thread_id)
    p = await body(request, run_submit_tool_outputs_params.RunSubmitToolOutputsParamsBase, thread_id=thread_id)
    if run.status != "requires_action":
        raise APIError(400, f"Run {run_id} is '{run.status}', not waiting for tool outputs (requires_action).",
                       param="run_id")
    stream = bool(p.get("stream"))
    events = rt.events.subscribe(run.id) if stream else None
    try:
        rt.engine.submit_tool_outputs(run, p.get("tool_outputs") or [])
    except RunFailure as exc:
        raise APIError(400, exc.message) from None
    return sse(events) if events is not None else ok(run)


@router.get("/v1/threads/{thread_id}/runs/{run_id}/steps")
async def list_steps(thread_id: str, run_id: str, request: Request) -> Response:
    rt = core(request)
    in_thread(rt.need(Run, run_id), thread_id)
    page = rt.store.page(RunStep, run_id, **paging(request))
    if not _includes_search_content(request):
        page.data = [without_search_content(step) for step in page.data]  # type: ignore[arg-type]
    return ok(page.to_wire())


@router.get("/v1/threads/{thread_id}/runs/{run_id}/steps/{step_id}")
async def get_step(thread_id: str, run_id: str, step_id: str, request: Request) -> Response:
    step = in_thread(core(request).need(RunStep, step_id), thread_id)
    if step.run_id != run_id:
        raise APIError(404, f"Run step {step_id} does not belong to run {run_id}.", code="not_found")
    return ok(step if _includes_search_content(request) else without_search_content(step))


def _includes_search_content(request: Request) -> bool:
    """Whether ``include[]`` asks for the text of file search results (the SDK sends ``include[]=...``)."""
    asked = request.query_params.getlist("include[]") + request.query_params.getlist("include")
    unknown = [value for value in asked if value != SEARCH_CONTENT]
    if unknown:
        raise APIError(400, f"Invalid value for 'include': {unknown[0]!r}; the one value is {SEARCH_CONTENT!r}.",
                       param="include", code="invalid_value")
    return bool(asked)
