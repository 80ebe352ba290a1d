"""Writing answers: objects as OpenAI sent them, and server-sent event streams."""

from __future__ import annotations

import json
from typing import Any, AsyncIterator

from fastapi.responses import Response, StreamingResponse
from pydantic import BaseModel


def ok(obj: BaseModel | dict, headers: dict[str, str] | None = None) -> Response:
    data = public(obj.model_dump(mode="json", by_alias=True) if isinstance(obj, BaseModel) else obj)
    return Response(json.dumps(data), media_type="application/json", headers=headers)


#: fields OpenAI left out rather than sending null; the SDK reads a missing field as None
_UNSENT_WHEN_NULL = {"file": ("expires_at", "status_details"), "vector_store": ("expires_after",),
                     "response": ("user", "prompt_cache_options", "usage"), "container": ("network_policy",)}


def public(data: dict[str, Any]) -> dict[str, Any]:
    """An object (or a list of them) as OpenAI sent it: its own fields always present, null when empty;
    unset options inside them left out (``tool_resources: {}``, not ``{"code_interpreter": null}``)."""
    if data.get("object") == "list":
        return {**data, "data": [public(item) for item in data["data"]]}
    unsent = _UNSENT_WHEN_NULL.get(data.get("object"), ())
    return {k: _pruned(v) for k, v in data.items() if v is not None or k not in unsent}


#: nested fields OpenAI sent as null: a function call's output (until it was submitted), a code
#: interpreter call's outputs (unless include asked for them; a client sending the item back needs the key)
_NULL_SENT = {"output", "outputs"}


def _pruned(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _pruned(v) for k, v in value.items() if v is not None or k in _NULL_SENT}
    if isinstance(value, list):
        return [_pruned(v) for v in value]
    return value


def sse(events: AsyncIterator[bytes], prefix: list[tuple[str, BaseModel]] | tuple = ()) -> StreamingResponse:
    async def body() -> AsyncIterator[bytes]:
        for name, obj in prefix:
            yield f"event: {name}\ndata: {obj.model_dump_json(by_alias=True)}\n\n".encode()
        async for chunk in events:
            yield chunk

    return StreamingResponse(body(), media_type="text/event-stream", headers={"cache-control": "no-cache"})
