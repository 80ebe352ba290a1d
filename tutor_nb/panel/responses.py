"""The panel on the Responses API: one streamed response per learner message, the same Turn data.

Each message becomes ``responses.create(stream=True, background=True)`` (background so Stop can
``responses.cancel`` it, as OpenAI allows only for background responses) with the code
interpreter in an ``auto`` container and ``include=["code_interpreter_call.outputs"]`` so the
code's logs and images come with the items. The thread is either a conversation (``conv_...``)
or the chain of ``previous_response_id``. :class:`ResponseTurnBuilder` turns the stream events
into the same :class:`Turn` the Assistants builder makes, so views, export and status are shared.
"""

from __future__ import annotations

import base64
import time
from typing import Any, MutableMapping, Optional

from .transcript import Annotation, Answer, Notice, Step, TextPart, Turn

INCLUDE = ["code_interpreter_call.outputs"]
CODE_TOOL = {"type": "code_interpreter", "container": {"type": "auto"}}


def request_params(text: str, model: str, instructions: str, *, previous: str | None,
                   conversation: str | None) -> dict[str, Any]:
    """The ``responses.create`` parameters for one learner message."""
    params: dict[str, Any] = {"model": model, "input": text, "instructions": instructions, "tools": [CODE_TOOL],
                              "include": INCLUDE, "stream": True, "background": True, "store": True}
    if conversation:
        params["conversation"] = conversation
    elif previous:
        params["previous_response_id"] = previous
    return params


class ResponseTurnBuilder:
    """Applies Responses stream events to the assistant :class:`Turn` of one response."""

    def __init__(self, turn: Turn, files: MutableMapping[str, Optional[bytes]]) -> None:
        self.turn = turn
        self.files = files  # images arrive inline (data URLs): their bytes go straight in here
        #: (container id, file id) of files the answer cites, not yet fetched
        self.wanted_files: list[Any] = []
        self.unresolved: list[Any] = []  # the Assistants builder's; cited files always carry ids here

    def apply(self, event: Any) -> None:
        kind = getattr(event, "type", "")
        handler = getattr(self, "_" + kind.replace("response.", "", 1).replace(".", "_"), None)
        if handler is not None:
            handler(event)
        self.turn.version += 1

    # -- the response ---------------------------------------------------------------------
    def _created(self, event: Any) -> None:
        self.turn.run_id = event.response.id
        self.turn.status = "queued" if event.response.status == "queued" else "in_progress"

    def _queued(self, event: Any) -> None:
        self._created(event)

    def _in_progress(self, event: Any) -> None:
        self._created(event)

    def _completed(self, event: Any) -> None:
        self._end(event.response, "completed")
        usage = event.response.usage
        if usage is not None:
            self.turn.usage = {"prompt_tokens": usage.input_tokens, "completion_tokens": usage.output_tokens,
                               "total_tokens": usage.total_tokens}

    def _failed(self, event: Any) -> None:
        error = event.response.error
        self.turn.error = f"{error.code}: {error.message}" if error else "the response failed"
        self._end(event.response, "failed")
        self._notice("failed", f"Run failed: {self.turn.error}")

    def _incomplete(self, event: Any) -> None:
        reason = getattr(event.response.incomplete_details, "reason", None)
        self._end(event.response, "incomplete")
        self._notice("incomplete", f"The answer is incomplete ({reason or 'no reason given'}).")

    def _error(self, event: Any) -> None:
        self.turn.status, self.turn.error = "error", event.message
        self._notice("error", event.message)

    def _end(self, response: Any, status: str) -> None:
        turn = self.turn
        turn.run_id, turn.status, turn.ended = response.id, status, time.monotonic()
        for step in turn.steps:
            if step.status == "in_progress":
                step.status, step.finished = status, turn.ended
                step.version += 1

    def _notice(self, key: str, text: str) -> None:
        if self.turn.find(f"notice-{key}") is None:
            self.turn.items.append(Notice(f"notice-{key}", text))

    # -- output items -----------------------------------------------------------------------
    def _item(self, key: str, kind: type) -> Any:
        item = self.turn.find(key)
        if item is None:
            item = Step(key, guess_running=False) if kind is Step else Answer(key)  # "interpreting" says it
            self.turn.items.append(item)
        return item

    def _output_item_added(self, event: Any) -> None:
        item = event.item
        if item.type == "code_interpreter_call":
            self._item(item.id, Step)
        elif item.type == "message":
            self._item(item.id, Answer)

    def _code_interpreter_call_code_delta(self, event: Any) -> None:
        step = self._item(event.item_id, Step)
        step.code += event.delta
        step.written = time.monotonic()
        step.version += 1

    def _code_interpreter_call_code_done(self, event: Any) -> None:
        step = self._item(event.item_id, Step)
        step.code = event.code or step.code
        step.version += 1

    def _code_interpreter_call_interpreting(self, event: Any) -> None:
        step = self._item(event.item_id, Step)
        step.running_since = step.running_since or time.monotonic()
        step.version += 1

    def _code_interpreter_call_logs_delta(self, event: Any) -> None:
        """tutor_nb's runtime streams a running call's logs (the SDK parses it as some delta event)."""
        step = self._item(event.item_id, Step)
        previous = step.outputs.get(0, ("logs", ""))[1]
        step.outputs[0] = ("logs", previous + (getattr(event, "delta", "") or ""))
        step.running_since = step.running_since or time.monotonic()
        step.version += 1

    def _output_item_done(self, event: Any) -> None:
        item = event.item
        if item.type == "code_interpreter_call":
            step = self._item(item.id, Step)
            step.code = item.code or step.code
            if item.outputs:
                step.outputs = {}
                for index, out in enumerate(item.outputs):
                    if out.type == "logs":
                        step.outputs[index] = ("logs", out.logs)
                    elif out.type == "image" and out.url:
                        key = f"{item.id}:{index}"
                        self.files[key] = _data_url_bytes(out.url)
                        step.outputs[index] = ("image", key)
            step.status = "completed" if item.status == "completed" else (item.status or "completed")
            step.finished = time.monotonic()
            step.version += 1
        elif item.type == "message":
            answer = self._item(item.id, Answer)
            answer.parts = {}
            for index, part in enumerate(item.content):
                if part.type != "output_text":
                    continue
                notes = [Annotation(a.start_index, a.end_index, a.file_id, a.filename, getattr(a, "container_id", None))
                         for a in part.annotations if a.type == "container_file_citation"]
                answer.parts[index] = TextPart(part.text, notes)
                self.wanted_files.extend(notes)
            answer.version += 1

    def _output_text_delta(self, event: Any) -> None:
        answer = self._item(event.item_id, Answer)
        part = answer.parts.setdefault(event.content_index, TextPart())
        if isinstance(part, TextPart):
            part.text += event.delta
        answer.version += 1


def _data_url_bytes(url: str) -> bytes | None:
    if url.startswith("data:") and "," in url:
        return base64.b64decode(url.split(",", 1)[1])
    return None
