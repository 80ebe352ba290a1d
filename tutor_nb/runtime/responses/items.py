"""Responses items: a request's ``input`` as stored items, and items as the model's Chat Completions messages."""

from __future__ import annotations

import json
from typing import Any, Iterable

from ..agent import CODE_TOOL_NAME
from ..http.errors import APIError
from ..search.tool import SEARCH_TOOL_NAME, Source, model_text
from ..wire import new_id

#: how much of an execution's logs goes back to the model (the client always gets all of it)
MODEL_LOG_CHARS = 20_000
_ROLES = {"developer": "system"}


def input_items(raw: str | Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """The request's input as items with ids and full content parts, as ``input_items`` lists them."""
    if isinstance(raw, str):
        raw = [{"type": "message", "role": "user", "content": raw}]
    items = []
    for given in raw:
        item = dict(given)
        kind = item.setdefault("type", "message")
        if kind == "message":
            content = item.get("content")
            if isinstance(content, str):
                part = "output_text" if item.get("role") == "assistant" else "input_text"
                content = [{"type": part, "text": content, **({"annotations": []} if part == "output_text" else {})}]
            item = {"id": item.get("id") or new_id("message"), "type": "message", "role": item.get("role", "user"),
                    "content": list(content or []), "status": item.get("status") or "completed"}
        elif kind == "function_call_output":
            missing = [name for name in ("call_id", "output") if name not in item]
            if missing:
                raise APIError(400, f"A function_call_output item needs '{missing[0]}': the call_id of the "
                               "function_call it answers, and the function's output.", param=missing[0],
                               code="missing_required_parameter")
            item = {"id": item.get("id") or new_id("item"), "type": kind, "call_id": item["call_id"],
                    "output": item["output"], "status": item.get("status") or "completed"}
        else:
            item.setdefault("id", new_id("item"))
        items.append(item)
    return items


def text_of(content: Any) -> str:
    """The text of a message's content (a string, or parts of input_text / output_text)."""
    if isinstance(content, str):
        return content
    parts = []
    for part in content or []:
        if isinstance(part, dict) and part.get("type") in ("input_text", "output_text", "text") and part.get("text"):
            parts.append(part["text"])
        elif isinstance(part, dict) and part.get("type") == "refusal":
            parts.append(part.get("refusal") or "")
    return "\n".join(parts)


def chat_messages(items: Iterable[dict[str, Any]]) -> list[dict[str, Any]]:
    """Items as Chat Completions messages: consecutive tool calls become one assistant message."""
    out: list[dict[str, Any]] = []
    calls: list[dict[str, Any]] = []
    results: list[dict[str, Any]] = []
    shown = 0  # passages numbered so far: file search numbers them along the whole history

    def flush() -> None:
        if calls:
            out.append({"role": "assistant", "content": None, "tool_calls": list(calls)})
            out.extend(results)
        calls.clear()
        results.clear()

    for item in items:
        kind = item.get("type", "message")
        if kind == "function_call":
            calls.append({"id": item["call_id"], "type": "function",
                          "function": {"name": item["name"], "arguments": item.get("arguments") or "{}"}})
        elif kind == "code_interpreter_call":
            arguments = json.dumps({"code": item.get("code") or ""}, ensure_ascii=False)
            calls.append({"id": item["id"], "type": "function", "function": {"name": CODE_TOOL_NAME, "arguments": arguments}})
            results.append({"role": "tool", "tool_call_id": item["id"], "content": _execution_text(item)})
        elif kind == "file_search_call":
            arguments = json.dumps({"queries": item.get("queries") or []}, ensure_ascii=False)
            calls.append({"id": item["id"], "type": "function", "function": {"name": SEARCH_TOOL_NAME, "arguments": arguments}})
            sources = search_sources([item], start=shown)
            shown += len(sources)
            results.append({"role": "tool", "tool_call_id": item["id"], "content": model_text(sources)})
        else:
            flush()
            if kind == "function_call_output":
                output = item.get("output")
                text = output if isinstance(output, str) else text_of(output)
                out.append({"role": "tool", "tool_call_id": item["call_id"], "content": text})
            elif kind == "message":
                text = text_of(item.get("content"))
                if text:
                    out.append({"role": _ROLES.get(item.get("role", "user"), item.get("role", "user")), "content": text})
    flush()
    return out


def search_sources(items: Iterable[dict[str, Any]], start: int = 0) -> list[Source]:
    """The passages of file_search_call items, numbered as the model was shown them."""
    found = [r for item in items if item.get("type") == "file_search_call" for r in item.get("results") or []]
    return [Source(start + i, r.get("file_id") or "", r.get("filename") or "", r.get("score") or 0.0,
                   r.get("text") or "", r.get("attributes") or {}) for i, r in enumerate(found)]


def _execution_text(item: dict[str, Any]) -> str:
    parts = []
    for output in item.get("outputs") or []:
        if output.get("type") == "logs":
            parts.append(output["logs"][-MODEL_LOG_CHARS:])
        else:
            parts.append("[image shown to the user]")
    if parts:
        return "\n".join(parts)
    return "(no output)" if item.get("status") == "completed" else f"(execution {item.get('status')})"
