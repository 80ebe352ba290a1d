"""/v1/conversations and their items: create, retrieve, modify, delete; add, list, retrieve, delete items."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from openai.types.conversations import Conversation, conversation_create_params, conversation_update_params
from openai.types.conversations import item_create_params

from ..http import APIError, body, ok, paging
from ..responses.items import input_items
from .common import core

router = APIRouter()


@router.post("/v1/conversations")
async def create_conversation(request: Request) -> Response:
    p = await body(request, conversation_create_params.ConversationCreateParams)
    return ok(core(request).conversations.create(p.get("metadata"), p.get("items") or []))


@router.get("/v1/conversations/{conversation_id}")
async def get_conversation(conversation_id: str, request: Request) -> Response:
    return ok(core(request).need(Conversation, conversation_id))


@router.post("/v1/conversations/{conversation_id}")
async def update_conversation(conversation_id: str, request: Request) -> Response:
    rt = core(request)
    conversation = rt.need(Conversation, conversation_id)
    p = await body(request, conversation_update_params.ConversationUpdateParams)
    return ok(rt.conversations.update(conversation, p.get("metadata") or {}))


@router.delete("/v1/conversations/{conversation_id}")
async def delete_conversation(conversation_id: str, request: Request) -> Response:
    rt = core(request)
    rt.need(Conversation, conversation_id)
    rt.conversations.delete(conversation_id)
    return ok({"id": conversation_id, "object": "conversation.deleted", "deleted": True})


@router.post("/v1/conversations/{conversation_id}/items")
async def create_items(conversation_id: str, request: Request) -> Response:
    rt = core(request)
    rt.need(Conversation, conversation_id)
    p = await body(request, item_create_params.ItemCreateParams)
    added = rt.conversations.add(conversation_id, input_items(p.get("items") or []))
    return ok({"object": "list", "data": added, "first_id": added[0]["id"] if added else None,
               "last_id": added[-1]["id"] if added else None, "has_more": False})


@router.get("/v1/conversations/{conversation_id}/items")
async def list_items(conversation_id: str, request: Request) -> Response:
    rt = core(request)
    rt.need(Conversation, conversation_id)
    return ok(rt.conversations.page(conversation_id, **paging(request)))


@router.get("/v1/conversations/{conversation_id}/items/{item_id}")
async def get_item(conversation_id: str, item_id: str, request: Request) -> Response:
    rt = core(request)
    rt.need(Conversation, conversation_id)
    item = rt.conversations.item(conversation_id, item_id)
    if item is None:
        raise APIError(404, f"No item {item_id} in conversation {conversation_id}.", code="not_found")
    return ok(item)


@router.delete("/v1/conversations/{conversation_id}/items/{item_id}")
async def delete_item(conversation_id: str, item_id: str, request: Request) -> Response:
    rt = core(request)
    conversation = rt.need(Conversation, conversation_id)
    if rt.conversations.item(conversation_id, item_id) is None:
        raise APIError(404, f"No item {item_id} in conversation {conversation_id}.", code="not_found")
    rt.conversations.delete_item(conversation_id, item_id)
    return ok(conversation)
