"""The HTTP layer every API router shares: errors, request parsing, answers and the guard."""

from .answer import ok, public, sse
from .errors import APIError, install_handlers
from .guard import Guard
from .parse import body, check, paging

__all__ = ["APIError", "Guard", "body", "check", "install_handlers", "ok", "paging", "public", "sse"]
