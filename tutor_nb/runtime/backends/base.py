"""The seam between the run engine and a model.

A backend turns one model request (a Chat Completions conversation) into a stream of
small events. The engine never sees HTTP or cassettes; a backend never sees runs,
steps or the sandbox. New backends only implement :class:`ModelBackend`.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Protocol, Union, runtime_checkable

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
    """One call to the model: what the engine asks, in Chat Completions terms."""

    model: str
    #: Chat Completions message dicts: system, user, assistant (maybe with tool_calls), tool.
    messages: list[dict[str, Any]]
    #: Chat Completions tool definitions (CODE_TOOL plus the assistant's function tools).
    tools: list[dict[str, Any]] = field(default_factory=list)
    temperature: float | None = None
    top_p: float | None = None
    max_tokens: int | None = None


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
    """Rough token counts (about four characters per token) for models that report none."""
    prompt_chars = len(json.dumps(request.messages, ensure_ascii=False)) + len(
        json.dumps(request.tools, ensure_ascii=False)
    )
    return Usage(prompt_tokens=max(1, prompt_chars // 4), completion_tokens=max(1, len(produced) // 4))


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
