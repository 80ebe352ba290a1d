"""The Assistants run engine: runs recorded as steps and messages, on the shared agent loop."""

from ..agent import RunFailure
from .engine import ACTIVE, TERMINAL, Engine, RunTiming

__all__ = ["ACTIVE", "TERMINAL", "Engine", "RunFailure", "RunTiming"]
