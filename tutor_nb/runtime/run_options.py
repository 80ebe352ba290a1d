"""OpenAI's run options as one model call takes them, for both APIs.

The Assistants API (``tool_choice``, ``response_format``, ``parallel_tool_calls``) and the Responses API
(``tool_choice``, ``text.format``, ``parallel_tool_calls``) spell the same wishes differently; a model
backend takes them in Chat Completions terms (:class:`~.backends.base.ModelRequest`). These functions
translate, and apply them as OpenAI did: a forced tool on the first model call only (then the model
chooses again, so a run cannot loop calling it), the completion budget spread over the whole run.
"""

from __future__ import annotations

from typing import Any, Iterable

from .backends.base import CODE_TOOL_NAME, forced_tool

#: built-in tools, offered to chat models as functions of the same name
BUILT_IN_TOOLS = ("code_interpreter", "file_search")


def _plain(value: Any) -> Any:
    """SDK models as the JSON the client sent (aliases such as ``schema`` kept), everything else as is."""
    dump = getattr(value, "model_dump", None)
    return dump(mode="json", by_alias=True, exclude_none=True) if dump is not None else value


def chat_tool_choice(choice: Any, *, first_call: bool) -> str | dict[str, Any] | None:
    """``tool_choice`` for one model call: ``"required"``, a forced function, or None (the model decides).

    ``"none"`` also gives None: the caller sends no tools at all then, which every server understands.
    Takes the Assistants shape (``{"type": "function", "function": {"name": ...}}``, ``{"type":
    "code_interpreter"}``) and the Responses shape (``{"type": "function", "name": ...}``).
    """
    choice = _plain(choice)
    if not first_call or choice in (None, "auto", "none"):
        return None
    if choice == "required":
        return "required"
    if isinstance(choice, dict):
        kind = choice.get("type")
        if kind == "function":
            return forced_tool((choice.get("function") or {}).get("name") or choice.get("name") or "")
        if kind in BUILT_IN_TOOLS:
            return forced_tool(CODE_TOOL_NAME if kind == "code_interpreter" else kind)
        if kind == "allowed_tools" and choice.get("mode") == "required":
            return "required"
    return None


def tools_off(choice: Any) -> bool:
    """Whether ``tool_choice`` forbids tools (then no tool is offered to the model at all)."""
    return _plain(choice) == "none"


def forced_tool_missing(choice: Any, tools: Iterable[Any]) -> str | None:
    """The name of the tool ``tool_choice`` forces when the run has no such tool, else None."""
    choice = _plain(choice)
    if not isinstance(choice, dict):
        return None
    offered = {_tool_name(_plain(tool)) for tool in tools}
    kind = choice.get("type")
    wanted = (choice.get("function") or {}).get("name") or choice.get("name") if kind == "function" else kind
    if kind in ("function", *BUILT_IN_TOOLS) and wanted not in offered:
        return wanted or kind
    return None


def _tool_name(tool: dict[str, Any]) -> str | None:
    if tool.get("type") == "function":
        return (tool.get("function") or {}).get("name") or tool.get("name")
    return tool.get("type")


def chat_response_format(fmt: Any) -> dict[str, Any] | None:
    """``response_format`` (Assistants) or ``text.format`` (Responses) as Chat Completions takes it.

    ``"auto"`` and plain text give None (the server's default); JSON Schema formats keep the schema under
    ``json_schema.schema``, the Responses API's flat form nested as Chat Completions wants it.
    """
    fmt = _plain(fmt)
    if not isinstance(fmt, dict) or fmt.get("type") in (None, "text"):
        return None
    if fmt["type"] == "json_object":
        return {"type": "json_object"}
    if fmt["type"] == "json_schema":
        inner = fmt.get("json_schema") or {k: v for k, v in fmt.items() if k != "type"}
        return {"type": "json_schema", "json_schema": {k: inner[k] for k in ("name", "description", "schema", "strict")
                                                       if inner.get(k) is not None}}
    return None


def completion_budget(limit: int | None, used: int) -> int | None:
    """What one model call may still produce of the run's ``max_completion_tokens`` (None: no limit)."""
    return None if limit is None else max(1, limit - used)
