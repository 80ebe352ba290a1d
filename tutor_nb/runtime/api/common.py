"""What several routers share: the runtime core of a request, ownership checks, modify requests."""

from __future__ import annotations

from typing import Any

from fastapi import Request
from openai.types import FileObject
from pydantic import BaseModel

from ..core import RuntimeCore
from ..http import APIError


def core(request: Request) -> RuntimeCore:
    return request.app.state.runtime


def in_thread(obj: Any, thread_id: str) -> Any:
    if getattr(obj, "thread_id", thread_id) != thread_id:
        raise APIError(404, f"{obj.id} does not belong to thread {thread_id}.", code="not_found")
    return obj


def tool_resources(resources: dict[str, Any] | None, tools: list[dict[str, Any]] | None = None) -> dict[str, Any]:
    """Stored tool resources; an assistant with the code interpreter always shows its file list."""
    resources = dict(resources or {})
    if any(t.get("type") == "code_interpreter" for t in tools or []):
        resources.setdefault("code_interpreter", {"file_ids": []})
    ci = resources.get("code_interpreter")
    if ci is not None:
        resources["code_interpreter"] = {"file_ids": list(ci.get("file_ids") or [])}
    resources.pop("file_search", None)
    return resources


def updated(rt: RuntimeCore, obj: BaseModel, changes: dict[str, Any]) -> BaseModel:
    """Apply a modify request's fields to a stored object and save it."""
    if "tool_resources" in changes:
        changes["tool_resources"] = tool_resources(changes["tool_resources"])
    obj = type(obj).model_validate({**obj.model_dump(), **changes})
    check_files(rt, getattr(obj, "tool_resources", None))
    rt.store.save(obj)
    return obj


def check_files(rt: RuntimeCore, resources: Any) -> None:
    ci = getattr(resources, "code_interpreter", None) if resources else None
    for file_id in getattr(ci, "file_ids", None) or []:
        rt.need(FileObject, file_id, param="tool_resources.code_interpreter.file_ids")
