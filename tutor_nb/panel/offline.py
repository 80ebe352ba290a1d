"""What the panel can offer offline: the recorded questions a replay runtime answers.

A cassette lists the questions that work on their own in a fresh panel thread under
``"suggestions"`` (a follow-up that needs an earlier answer's variables, or a question that
needs an attached file, is left out). The panel offers them only when its client talks to a
runtime this process serves with the replay backend: anywhere else a real model answers.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Iterable

#: The start of the replay backend's error for a question it has no recording of.
UNMATCHED_PREFIX = "No recorded turn exists"
UNMATCHED_LINE = "No recorded answer for this question offline: try one of the suggestions, or connect a model."


def suggested_questions(files: Iterable[Path]) -> list[str]:
    """The ``suggestions`` of these cassette files, in order, each once, if recorded there."""
    found: dict[str, None] = {}
    for path in files:
        try:
            data = json.loads(Path(path).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # the runtime reports unreadable cassettes itself
        recorded = {turn.get("user") for turn in data.get("turns", []) if turn.get("turn", 0) == 0}
        for question in data.get("suggestions", []):
            if question in recorded:
                found.setdefault(question, None)
    return list(found)


def replay_questions(client: Any) -> list[str]:
    """The suggestions of the replay runtime behind ``client``; [] for any other server."""
    base_url = getattr(client, "base_url", None)
    if base_url is None:
        return []
    from ..runtime import local_runtime
    from ..runtime.backends.replay import BUILTIN_CASSETTES, cassette_files

    runtime = local_runtime(str(base_url))
    if runtime is None or runtime.backend != "replay":
        return []
    try:
        files = cassette_files([BUILTIN_CASSETTES, *runtime.settings.cassettes])
    except Exception:  # a missing cassette path: the runtime says so on its own
        return []
    return suggested_questions(files)


def is_unmatched(error: str | None) -> bool:
    """Whether a failed run's error is replay's "no recording of this question"."""
    return bool(error) and UNMATCHED_PREFIX in error  # type: ignore[operator]
