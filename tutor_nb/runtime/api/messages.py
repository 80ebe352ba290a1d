"""/v1/threads/{thread_id}/messages: create, list, retrieve, modify, delete."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request, Response
from openai.types import FileObject
from openai.types.beta import Thread
from openai.types.beta.threads import Message, message_create_params, message_update_params

from ..core import RuntimeCore
from ..http import APIError, body, ok, paging
from ..wire import message_content, new_id, now
from .common import core, in_thread, index_attachments, updated

router = APIRouter()


def new_message(rt: RuntimeCore, thread_id: str, p: dict[str, Any], run_id: str | None = None) -> Message:
    """A user's (or a seeded assistant's) message from a request's fields; not yet stored."""
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


@router.post("/v1/threads/{thread_id}/messages")
async def create_message(thread_id: str, request: Request) -> Response:
    rt = core(request)
    thread = rt.need(Thread, thread_id)
    message = new_message(rt, thread_id, await body(request, message_create_params.MessageCreateParams, thread_id=thread_id))
    rt.store.add(message, parent=thread_id)
    index_attachments(rt, thread, [message])
    return ok(message)


@router.get("/v1/threads/{thread_id}/messages")
async def list_messages(thread_id: str, request: Request) -> Response:
    rt = core(request)
    rt.need(Thread, thread_id)
    run_id = request.query_params.get("run_id")
    where = {"run_id": run_id} if run_id else None
    return ok(rt.store.page(Message, thread_id, where=where, **paging(request)).to_wire())


@router.get("/v1/threads/{thread_id}/messages/{message_id}")
async def get_message(thread_id: str, message_id: str, request: Request) -> Response:
    return ok(in_thread(core(request).need(Message, message_id), thread_id))


@router.post("/v1/threads/{thread_id}/messages/{message_id}")
async def update_message(thread_id: str, message_id: str, request: Request) -> Response:
    rt = core(request)
    message = in_thread(rt.need(Message, message_id), thread_id)
    return ok(updated(rt, message, await body(request, message_update_params.MessageUpdateParams, thread_id=thread_id)))


@router.delete("/v1/threads/{thread_id}/messages/{message_id}")
async def delete_message(thread_id: str, message_id: str, request: Request) -> Response:
    rt = core(request)
    in_thread(rt.need(Message, message_id), thread_id)
    rt.store.delete(message_id)
    return ok({"id": message_id, "object": "thread.message.deleted", "deleted": True})
