"""The Assistants run engine: runs recorded as steps and messages, on the shared agent loop."""

from ..agent import RunFailure
from .engine import ACTIVE, TERMINAL, Engine, RunTiming
from .recorder import SEARCH_CONTENT, without_search_content

__all__ = ["ACTIVE", "SEARCH_CONTENT", "TERMINAL", "Engine", "RunFailure", "RunTiming", "without_search_content"]
