"""A thread's history as Chat Completions messages, kept converted between model calls."""

from __future__ import annotations

import json
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from openai.types.beta.threads import Run

from ..agent import CODE_TOOL_NAME
from ..search.tool import SEARCH_TOOL_NAME, Source, model_text
from ..store import Store
from ..wire import message_text

#: how much of a tool's logs is sent back to the model (the client always gets all of it)
MODEL_LOG_CHARS = 20_000
MAX_HISTORIES = 256  # threads whose settled history is kept converted


@dataclass
class _History:
    """A thread's conversation up to row ``seq``, as Chat Completions messages."""

    seq: int = 0
    deletions: int = 0  # the thread's deletion count when this was read
    messages: list[dict[str, Any]] = field(default_factory=list)


class ThreadHistories:
    """Converts threads' messages and run steps to the messages a model call sends."""

    def __init__(self, store: Store) -> None:
        self.store = store
        self._histories: OrderedDict[str, _History] = OrderedDict()  # thread id -> its settled history

    def messages(self, run: Run) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """The thread's history as Chat Completions messages: what came before the run, and the run's own.

        What came before this run belongs to finished runs and no longer changes, so it is converted
        once and kept; only the run's own rows are read each call. A deleted message sends the thread back
        to a full read.
        """
        boundary = self.store.seq(run.id) or 0
        deletions = self.store.deletions(run.thread_id)
        kept = self._histories.pop(run.thread_id, None)
        if kept is None or kept.seq > boundary or kept.deletions != deletions:
            kept = _History(deletions=deletions)
        rows = self.store.thread_history(run.thread_id, after=kept.seq)
        settled = [row for row in rows if row[0] < boundary]
        if settled:
            kept = _History(settled[-1][0], deletions, kept.messages + _chat_messages(settled))
        self._histories[run.thread_id] = kept
        while len(self._histories) > MAX_HISTORIES:
            self._histories.popitem(last=False)
        return kept.messages, _chat_messages([row for row in rows if row[0] >= boundary])


def _chat_messages(rows: list[tuple[int, str, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Messages and steps (whole runs: a message_creation step and its message go together)."""
    out: list[dict[str, Any]] = []
    by_id = {obj["id"]: obj for _, kind, obj in rows if kind == "message"}
    shown: dict[str, int] = {}  # run id -> passages its searches have numbered so far
    for _, kind, obj in rows:
        if kind == "message" and (obj["role"] == "user" or obj.get("run_id") is None):
            out.append({"role": obj["role"], "content": message_text(obj)})
        elif kind == "run step" and obj["step_details"]["type"] == "message_creation":
            message = by_id.get(obj["step_details"]["message_creation"]["message_id"])
            if message is not None and message_text(message):
                out.append({"role": "assistant", "content": message_text(message)})
        elif kind == "run step" and obj["step_details"]["type"] == "tool_calls":
            out += _tool_messages(obj, shown)
    return out


def _json_list(text: str) -> list[str]:
    try:
        value = json.loads(text)
    except ValueError:  # cut at 512 characters
        return []
    return [v for v in value if isinstance(v, str)] if isinstance(value, list) else []


def _tool_messages(step: dict[str, Any], shown: dict[str, int]) -> list[dict[str, Any]]:
    """A tool_calls step (its wire dict) as the assistant's tool calls and the tools' answers."""
    calls, results = [], []
    for call in step["step_details"]["tool_calls"]:
        if call["type"] == "code_interpreter":
            interpreter = call["code_interpreter"]
            arguments = json.dumps({"code": interpreter["input"]}, ensure_ascii=False)
            parts = []
            for output in interpreter["outputs"]:
                if output["type"] == "logs":
                    parts.append(output["logs"][-MODEL_LOG_CHARS:])
                else:
                    parts.append(f"[image {output['image']['file_id']} shown to the user]")
            result = "\n".join(parts) or ("(no output)" if step["status"] == "completed" else f"(execution {step['status']})")
            calls.append({"id": call["id"], "type": "function", "function": {"name": CODE_TOOL_NAME, "arguments": arguments}})
        elif call["type"] == "function":
            function = call["function"]
            calls.append({"id": call["id"], "type": "function", "function": {"name": function["name"], "arguments": function["arguments"]}})
            result = function.get("output") or f"(no output: step {step['status']})"
        elif call["type"] == "file_search":
            queries = (step.get("metadata") or {}).get("file_search_queries") or "[]"
            arguments = json.dumps({"queries": _json_list(queries)}, ensure_ascii=False)
            calls.append({"id": call["id"], "type": "function", "function": {"name": SEARCH_TOOL_NAME, "arguments": arguments}})
            start = shown.get(step["run_id"], 0)
            found = call["file_search"].get("results") or []
            shown[step["run_id"]] = start + len(found)
            result = model_text([Source(start + i, r["file_id"], r["file_name"], r["score"],
                                        "".join(c.get("text") or "" for c in r.get("content") or []))
                                 for i, r in enumerate(found)])
        else:
            continue
        results.append({"role": "tool", "tool_call_id": call["id"], "content": result})
    return [{"role": "assistant", "content": None, "tool_calls": calls}, *results] if calls else []
