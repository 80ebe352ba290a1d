"""tutor_nb: learn how an LLM assistant writes and runs code, in Jupyter and Colab.

Everything heavy (the runtime's server stack, widgets) is imported on first use, so
``import tutor_nb`` stays fast.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

# public name -> module that defines it
_EXPORTS = {
    "show_json": "tutor_nb.display",
    "show_message": "tutor_nb.display",
    "load_api_key": "tutor_nb.keys",
    "mask_key": "tutor_nb.keys",
    "describe_api_key": "tutor_nb.keys",
    "connect": "tutor_nb.client",
    "CodeCall": "tutor_nb.calls",
    "code_calls": "tutor_nb.calls",
    "last_code": "tutor_nb.calls",
    "course_notes": "tutor_nb.lessons",
    "SearchCall": "tutor_nb.searches",
    "search_calls": "tutor_nb.searches",
    "rerun": "tutor_nb.local_run",
    "RerunResult": "tutor_nb.local_run",
    "compare": "tutor_nb.local_run",
    "Comparison": "tutor_nb.local_run",
    "to_cell": "tutor_nb.local_run",
    "ChatPanel": "tutor_nb.panel",
    "MissingAPIKeyError": "tutor_nb.errors",
    "NoCodeCallsError": "tutor_nb.errors",
    "RunNotCompletedError": "tutor_nb.errors",
    "RuntimeStartError": "tutor_nb.errors",
    "TutorNBError": "tutor_nb.errors",
}

__all__ = sorted(_EXPORTS)


def __getattr__(name: str) -> Any:
    module = _EXPORTS.get(name)
    if module is None:
        raise AttributeError(f"module 'tutor_nb' has no attribute {name!r}")
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(list(globals()) + __all__)


if TYPE_CHECKING:  # pragma: no cover
    from .calls import CodeCall, code_calls, last_code
    from .client import connect
    from .lessons import course_notes
    from .searches import SearchCall, search_calls
    from .display import show_json, show_message
    from .errors import MissingAPIKeyError, NoCodeCallsError, RunNotCompletedError, RuntimeStartError, TutorNBError
    from .keys import load_api_key, mask_key
    from .panel import ChatPanel
    from .local_run import Comparison, RerunResult, compare, rerun, to_cell
