"""Model backends: where the run engine's model turns come from.

``make_backend("chat", ...)`` talks to an OpenAI-compatible Chat Completions server;
``make_backend("replay", ...)`` plays recorded cassettes offline. Both satisfy
:class:`ModelBackend`, the only thing the engine relies on.
"""

from __future__ import annotations

import os
from typing import Iterable

from ...errors import BackendConfigError
from .base import (
    CODE_TOOL,
    CODE_TOOL_NAME,
    ModelBackend,
    ModelEvent,
    ModelRequest,
    TextDelta,
    ToolCallDelta,
    Usage,
    estimate_usage,
)
from .chat import ChatBackend
from .replay import BUILTIN_CASSETTES, Recorder, ReplayBackend, load_cassette

BACKENDS = ("replay", "chat")

__all__ = [
    "BACKENDS",
    "BUILTIN_CASSETTES",
    "CODE_TOOL",
    "CODE_TOOL_NAME",
    "ChatBackend",
    "ModelBackend",
    "ModelEvent",
    "ModelRequest",
    "Recorder",
    "ReplayBackend",
    "TextDelta",
    "ToolCallDelta",
    "Usage",
    "estimate_usage",
    "load_cassette",
    "make_backend",
]


def make_backend(
    name: str,
    *,
    model_base_url: str | None = None,
    model_api_key: str | None = None,
    model: str | None = None,
    cassettes: str | os.PathLike[str] | Iterable[str | os.PathLike[str]] | None = None,
    record: str | os.PathLike[str] | None = None,
    replay_delay: float = 0.0,
) -> ModelBackend:
    """Build the backend the CLI flags or ``connect(...)`` arguments describe.

    ``model`` overrides the assistant's model on ``chat``; ``record`` wraps ``chat`` in a
    :class:`Recorder` that saves every turn to that cassette file.
    """
    if name == "chat":
        backend: ModelBackend = ChatBackend(base_url=model_base_url, api_key=model_api_key, model=model)
        return Recorder(backend, record) if record else backend
    if name == "replay":
        if record:
            raise BackendConfigError(
                "Recording needs a live model: use --backend chat together with --record FILE "
                "(replay only plays what was recorded)."
            )
        return ReplayBackend(cassettes, delay=replay_delay)
    raise BackendConfigError(f"Unknown model backend {name!r}. Choose one of: {', '.join(BACKENDS)}.")
