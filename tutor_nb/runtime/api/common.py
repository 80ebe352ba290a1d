"""What several routers share: the runtime core of a request, ownership checks, modify requests."""

from __future__ import annotations

from typing import Any, Callable, Iterable, TypeVar

from fastapi import Request
from openai.types import FileObject
from openai.types.beta import Thread
from openai.types.beta.threads import Message
from pydantic import BaseModel

from ..core import RuntimeCore
from ..http import APIError
from ..search.stores import VectorStoreError

T = TypeVar("T")
#: how long a store made for a thread's attachments lives unused, as OpenAI set it
THREAD_STORE_DAYS = 7


def core(request: Request) -> RuntimeCore:
    return request.app.state.runtime


def in_thread(obj: Any, thread_id: str) -> Any:
    if getattr(obj, "thread_id", thread_id) != thread_id:
        raise APIError(404, f"{obj.id} does not belong to thread {thread_id}.", code="not_found")
    return obj


def answer(fn: Callable[..., T], *args: Any) -> T:
    """Call into the vector stores, their refusals answered as API errors."""
    try:
        return fn(*args)
    except VectorStoreError as exc:
        raise APIError(exc.status, exc.message, param=exc.param, code=exc.code) from None


def tool_resources(rt: RuntimeCore, resources: dict[str, Any] | None,
                   tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Stored tool resources; an assistant with a tool always shows that tool's list of files or stores.

    ``file_search.vector_stores`` (a helper that makes a store from file ids) becomes the store it made.
    """
    resources = with_tool_lists(resources, tools)
    ci = resources.get("code_interpreter")
    if ci is not None:
        resources["code_interpreter"] = {"file_ids": list(ci.get("file_ids") or [])}
    search = resources.get("file_search")
    if search is not None:
        resources["file_search"] = {"vector_store_ids": _search_stores(rt, search)}
    return resources


def with_tool_lists(resources: dict[str, Any] | None, tools: list[dict[str, Any]] | None) -> dict[str, Any]:
    """Resources with an empty list for each of ``tools`` that has none yet, as OpenAI showed them."""
    resources = {kind: value for kind, value in (resources or {}).items() if value is not None}
    kinds = {t.get("type") for t in tools or []}
    if "code_interpreter" in kinds:
        resources.setdefault("code_interpreter", {"file_ids": []})
    if "file_search" in kinds:
        resources.setdefault("file_search", {"vector_store_ids": []})
    return resources


def tools_as_sent(tools: list[dict[str, Any]] | None) -> list[dict[str, Any]]:
    """Tools as OpenAI echoed them: a function's ``strict`` is false unless it was set."""
    return [{**tool, "function": {**tool["function"], "strict": bool(tool["function"].get("strict"))}}
            if tool.get("type") == "function" and isinstance(tool.get("function"), dict) else tool
            for tool in tools or []]


def _search_stores(rt: RuntimeCore, search: dict[str, Any]) -> list[str]:
    ids = list(search.get("vector_store_ids") or [])
    helpers = list(search.get("vector_stores") or [])
    param = "tool_resources.file_search"
    if ids and helpers:
        raise APIError(400, f"Give '{param}.vector_store_ids' or '{param}.vector_stores', not both.",
                       param=f"{param}.vector_stores", code="invalid_value")
    if len(helpers) > 1:
        raise APIError(400, f"Invalid value for '{param}.vector_stores': at most 1 vector store.",
                       param=f"{param}.vector_stores", code="invalid_value")
    for vs_id in ids:
        answer(rt.vector_stores.get, vs_id)
    return ids + [answer(rt.vector_stores.create, helper).id for helper in helpers]


def index_attachments(rt: RuntimeCore, thread: Thread, messages: Iterable[Message]) -> None:
    """Files attached for ``file_search`` go into the thread's own vector store, made when first needed."""
    file_ids = [a.file_id for m in messages for a in m.attachments or []
                if a.file_id and any(t.type == "file_search" for t in a.tools or [])]
    if not file_ids:
        return
    resources = thread.tool_resources.model_dump(exclude_none=True) if thread.tool_resources else {}
    stores = (resources.get("file_search") or {}).get("vector_store_ids") or []
    if stores:
        vs_id = stores[0]
    else:
        vs_id = answer(rt.vector_stores.create, {"name": f"files of {thread.id}", "expires_after": {
            "anchor": "last_active_at", "days": THREAD_STORE_DAYS}}).id
        resources["file_search"] = {"vector_store_ids": [vs_id]}
        thread.tool_resources = type(thread).model_validate({**thread.model_dump(), "tool_resources": resources}).tool_resources
        rt.store.save(thread)
    for file_id in dict.fromkeys(file_ids):
        if rt.vector_stores.files.get(vs_id, file_id) is None:
            answer(rt.vector_stores.attach, vs_id, {"file_id": file_id})


def updated(rt: RuntimeCore, obj: BaseModel, changes: dict[str, Any]) -> BaseModel:
    """Apply a modify request's fields to a stored object and save it.

    New tools show their resources' lists as creating with them would (the code interpreter's files).
    """
    current = obj.model_dump(by_alias=True)
    if "tools" in changes:
        changes["tools"] = tools_as_sent(changes["tools"])
    tools = changes.get("tools", current.get("tools"))
    if "tool_resources" in changes:
        changes["tool_resources"] = tool_resources(rt, changes["tool_resources"], tools)
    elif "tools" in changes:
        changes["tool_resources"] = with_tool_lists(current.get("tool_resources"), tools)
    obj = type(obj).model_validate({**current, **changes})
    check_files(rt, getattr(obj, "tool_resources", None))
    rt.store.save(obj)
    return obj


def check_files(rt: RuntimeCore, resources: Any) -> None:
    ci = getattr(resources, "code_interpreter", None) if resources else None
    for file_id in getattr(ci, "file_ids", None) or []:
        rt.need(FileObject, file_id, param="tool_resources.code_interpreter.file_ids")
