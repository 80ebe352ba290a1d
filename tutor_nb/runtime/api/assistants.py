"""/v1/assistants: create, list, retrieve, modify, delete."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from openai.types.beta import Assistant, assistant_create_params, assistant_update_params

from ..http import APIError, body, ok, paging
from ..wire import new_id, now
from .common import check_files, core, tool_resources, tools_as_sent, updated

router = APIRouter()


@router.post("/v1/assistants")
async def create_assistant(request: Request) -> Response:
    rt = core(request)
    p = await body(request, assistant_create_params.AssistantCreateParams)
    if "model" not in p:
        raise APIError(400, "Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
    assistant = Assistant.model_validate({
        "id": new_id("assistant"), "object": "assistant", "created_at": now(), "model": p["model"],
        "name": p.get("name"), "description": p.get("description"), "instructions": p.get("instructions"),
        "tools": tools_as_sent(p.get("tools")), "metadata": p.get("metadata") or {},
        "tool_resources": tool_resources(rt, p.get("tool_resources"), p.get("tools")),
        "temperature": p.get("temperature", 1.0), "top_p": p.get("top_p", 1.0),
        "response_format": p.get("response_format") or "auto",
    })
    check_files(rt, assistant.tool_resources)
    rt.store.add(assistant)
    return ok(assistant)


@router.get("/v1/assistants")
async def list_assistants(request: Request) -> Response:
    return ok(core(request).store.page(Assistant, None, **paging(request)).to_wire())


@router.get("/v1/assistants/{assistant_id}")
async def get_assistant(assistant_id: str, request: Request) -> Response:
    return ok(core(request).need(Assistant, assistant_id))


@router.post("/v1/assistants/{assistant_id}")
async def update_assistant(assistant_id: str, request: Request) -> Response:
    rt = core(request)
    assistant = rt.need(Assistant, assistant_id)
    return ok(updated(rt, assistant, await body(request, assistant_update_params.AssistantUpdateParams)))


@router.delete("/v1/assistants/{assistant_id}")
async def delete_assistant(assistant_id: str, request: Request) -> Response:
    rt = core(request)
    rt.need(Assistant, assistant_id)
    rt.store.delete(assistant_id)
    return ok({"id": assistant_id, "object": "assistant.deleted", "deleted": True})
