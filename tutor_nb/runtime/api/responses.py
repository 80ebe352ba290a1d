"""/v1/responses: create (plain, streamed, background), retrieve (and resume its stream), delete, cancel, input items."""

from __future__ import annotations

from fastapi import APIRouter, Request, Response
from openai.types.responses import response_create_params

from ..core import RuntimeCore
from ..http import APIError, body, ok, paging, sse
from .common import core

router = APIRouter()


def _include(request: Request) -> list[str]:
    q = request.query_params
    return [*q.getlist("include[]"), *q.getlist("include")]


def _found(rt: RuntimeCore, response_id: str):  # type: ignore[no-untyped-def]
    response = rt.responses.get(response_id)
    if response is None:
        raise APIError(404, f"No response found with id '{response_id}'. It may have been deleted, or created with "
                       "store=false.", code="not_found")
    return response


def _strict_by_default(raw: dict) -> dict:
    """Function tools without ``strict`` are strict, as OpenAI's server took them (the SDK's type requires it)."""
    tools = raw.get("tools")
    if not isinstance(tools, list):
        return raw
    filled = [{**t, "strict": True} if isinstance(t, dict) and t.get("type") == "function" and "strict" not in t else t
              for t in tools]
    return {**raw, "tools": filled}


@router.post("/v1/responses")
async def create_response(request: Request) -> Response:
    rt = core(request)
    p = await body(request, response_create_params.ResponseCreateParamsBase, defaults=_strict_by_default)
    job = rt.responses.start(p)
    if p.get("stream"):
        return sse(rt.responses.events(job.response.id).follow())  # type: ignore[union-attr]
    if p.get("background"):
        return ok(rt.responses.wire(job.response, job.include))
    return ok(rt.responses.wire(await rt.responses.wait(job.response.id), job.include))


@router.get("/v1/responses/{response_id}")
async def get_response(response_id: str, request: Request) -> Response:
    rt = core(request)
    response = _found(rt, response_id)
    include = _include(request)
    if request.query_params.get("stream") in ("true", "True", "1"):
        events = rt.responses.events(response_id)
        if events is None:
            raise APIError(400, f"The stream of response {response_id} is no longer kept (the runtime keeps the "
                           "events of recent responses until it restarts). Retrieve it without stream.",
                           param="stream")
        raw = request.query_params.get("starting_after", "-1")
        try:
            after = int(raw)
        except ValueError:
            raise APIError(400, f"'starting_after' must be an integer, got {raw!r}.", param="starting_after") from None
        return sse(events.follow(after))
    return ok(rt.responses.wire(response, include))


@router.delete("/v1/responses/{response_id}")
async def delete_response(response_id: str, request: Request) -> Response:
    rt = core(request)
    _found(rt, response_id)
    rt.responses.delete(response_id)
    return ok({"id": response_id, "object": "response.deleted", "deleted": True})


@router.post("/v1/responses/{response_id}/cancel")
async def cancel_response(response_id: str, request: Request) -> Response:
    rt = core(request)
    response = _found(rt, response_id)
    if not response.background:
        raise APIError(400, "Only responses created with background=true can be cancelled.", param="response_id")
    return ok(rt.responses.wire(await rt.responses.cancel(response_id), _include(request)))  # type: ignore[arg-type]


@router.get("/v1/responses/{response_id}/input_items")
async def list_input_items(response_id: str, request: Request) -> Response:
    rt = core(request)
    _found(rt, response_id)
    return ok(rt.responses.input_items(response_id, **paging(request)))
