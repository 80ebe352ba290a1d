"""/v1/threads: create (also with a run), retrieve, modify, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from openai.types.beta import Assistant, Thread, thread_create_and_run_params, thread_create_params, thread_update_params

from ..core import RuntimeCore
from ..http import body, ok
from ..wire import new_id, now
from .common import check_files, core, index_attachments, tool_resources, updated
from .messages import new_message
from .runs import new_run, start

router = APIRouter()


def new_thread(rt: RuntimeCore, p: dict[str, Any]) -> Thread:
    """A thread and the messages it was created with, stored."""
    thread = Thread.model_validate({
        "id": new_id("thread"), "object": "thread", "created_at": now(),
        "metadata": p.get("metadata") or {}, "tool_resources": tool_resources(rt, p.get("tool_resources")),
    })
    check_files(rt, thread.tool_resources)
    messages = [new_message(rt, thread.id, m) for m in p.get("messages") or []]
    rt.store.add(thread)
    for message in messages:
        rt.store.add(message, parent=thread.id)
    index_attachments(rt, thread, messages)
    return thread


# registered before /v1/threads/{thread_id} so "runs" is not taken for a thread id
@router.post("/v1/threads/runs")
async def create_thread_and_run(request: Request) -> Response:
    rt = core(request)
    p = await body(request, thread_create_and_run_params.ThreadCreateAndRunParamsBase)
    rt.need(Assistant, p.get("assistant_id") or "", param="assistant_id")
    thread = new_thread(rt, p.get("thread") or {})
    run = new_run(rt, thread.id, p)
    return start(rt, run, bool(p.get("stream")), [("thread.created", thread)])


@router.post("/v1/threads")
async def create_thread(request: Request) -> Response:
    return ok(new_thread(core(request), await body(request, thread_create_params.ThreadCreateParams)))


@router.get("/v1/threads/{thread_id}")
async def get_thread(thread_id: str, request: Request) -> Response:
    return ok(core(request).need(Thread, thread_id))


@router.post("/v1/threads/{thread_id}")
async def update_thread(thread_id: str, request: Request) -> Response:
    rt = core(request)
    thread = rt.need(Thread, thread_id)
    return ok(updated(rt, thread, await body(request, thread_update_params.ThreadUpdateParams)))


@router.delete("/v1/threads/{thread_id}")
async def delete_thread(thread_id: str, request: Request) -> Response:
    rt = core(request)
    rt.need(Thread, thread_id)
    active = rt.engine.active_run(thread_id)
    if active is not None:
        await rt.engine.cancel(rt.engine.get_run(active.id))
    rt.store.delete(thread_id)
    await rt.sandbox.discard(thread_id)
    return ok({"id": thread_id, "object": "thread.deleted", "deleted": True})
