"""The seam between the run engine and a model.

A backend turns one model request (a Chat Completions conversation) into a stream of
small events. The engine never sees HTTP or cassettes; a backend never sees runs,
steps or the sandbox. New backends only implement :class:`ModelBackend`.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol, Union, runtime_checkable

from ..truncation import count_tokens, text_tokens

#: The name under which the code interpreter is offered to a chat model as a function tool.
CODE_TOOL_NAME = "code_interpreter"

#: The function-tool definition sent to chat models for the code interpreter.
CODE_TOOL = {
    "type": "function",
    "function": {
        "name": CODE_TOOL_NAME,
        "description": (
            "Run Python code in a stateful Jupyter kernel and get back stdout, stderr, the value "
            "of the last expression and any plots. Files live in /mnt/data. Variables persist "
            "between calls in the same conversation."
        ),
        "parameters": {
            "type": "object",
            "properties": {"code": {"type": "string", "description": "Python source to execute."}},
            "required": ["code"],
        },
    },
}


@dataclass
class ModelRequest:
    """One call to the model: what the engine asks, in Chat Completions terms.

    Every option left ``None`` is left to the model server's default, so servers that know fewer
    options (Ollama, llama.cpp) still get requests they accept.
    """

    model: str
    #: Chat Completions message dicts: system, user, assistant (maybe with tool_calls), tool.
    messages: list[dict[str, Any]]
    #: Chat Completions tool definitions (CODE_TOOL plus the assistant's function tools).
    tools: list[dict[str, Any]] = field(default_factory=list)
    #: ``"required"`` or ``{"type": "function", "function": {"name": ...}}`` (a forced code interpreter is
    #: the function named :data:`CODE_TOOL_NAME`); ``None`` lets the model choose.
    tool_choice: str | dict[str, Any] | None = None
    #: ``{"type": "json_object"}`` or ``{"type": "json_schema", "json_schema": {"name", "schema", ...}}``.
    response_format: dict[str, Any] | None = None
    #: ``False`` asks for at most one tool call per answer.
    parallel_tool_calls: bool | None = None
    temperature: float | None = None
    top_p: float | None = None
    #: the most tokens this one answer may use
    max_completion_tokens: int | None = None

    def options(self) -> dict[str, Any]:
        """The optional Chat Completions fields this request sets, as the API spells them."""
        names = ("temperature", "top_p", "max_completion_tokens", "response_format")
        options = {name: getattr(self, name) for name in names if getattr(self, name) is not None}
        if self.tools:  # both are refused on a request without tools
            options.update({name: getattr(self, name) for name in ("tool_choice", "parallel_tool_calls")
                            if getattr(self, name) is not None})
        return options


def forced_tool(name: str) -> dict[str, Any]:
    """The Chat Completions ``tool_choice`` that makes the model call the function tool ``name``."""
    return {"type": "function", "function": {"name": name}}


@dataclass
class TextDelta:
    """A piece of the assistant's visible answer."""

    text: str


@dataclass
class ToolCallDelta:
    """A piece of a tool call. ``id`` and ``name`` come with the first piece of each index."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


@dataclass
class Usage:
    """Token counts for the request, sent once, usually last."""

    prompt_tokens: int
    completion_tokens: int


ModelEvent = Union[TextDelta, ToolCallDelta, Usage]


def estimate_usage(request: ModelRequest, produced: str) -> Usage:
    """Estimated token counts, for models that report none (the same estimate that trims prompts)."""
    return Usage(prompt_tokens=count_tokens(request.messages, request.tools),
                 completion_tokens=max(1, text_tokens(produced)))


@runtime_checkable
class ModelBackend(Protocol):
    """Anything that can answer a :class:`ModelRequest` as a stream of :data:`ModelEvent`.

    Raise :class:`tutor_nb.errors.ModelBackendError` with a learner-readable message when
    the model cannot answer; the engine fails the run with that message as ``last_error``.
    """

    #: short name shown to users, e.g. "replay" or "chat"
    name: str

    def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]: ...

    async def aclose(self) -> None: ...
