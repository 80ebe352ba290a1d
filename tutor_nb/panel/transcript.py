"""The conversation as plain data, built from the Assistants stream events.

Nothing here touches widgets or the network: the stream worker applies events under a lock
and the view layer later reads the result. Every change bumps the changed item's
``version`` so the view re-renders only what moved (and only the item being written).
"""

from __future__ import annotations

import re
import time
from dataclasses import dataclass, field
from typing import Any, Union

#: Seconds without a new piece of code after which a step whose server sent no "running"
#: signal is taken to be running.
QUIET_AFTER_CODE = 1.0

#: A file the model points to in its text (``sandbox:/mnt/data/table.csv``).
SANDBOX_LINK = re.compile(r"sandbox:/mnt/data/[^\s)\]\"'<>]+")

#: Run states after which nothing more will arrive.
TERMINAL = {"completed", "failed", "cancelled", "expired", "incomplete", "error"}


@dataclass
class Step:
    """One code-interpreter call: the code as written so far, then its outputs."""

    key: str
    code: str = ""
    #: output index -> ("logs", text) or ("image", file_id), as the stream numbers them
    outputs: dict[int, tuple[str, str]] = field(default_factory=dict)
    status: str = "in_progress"
    started: float = field(default_factory=time.monotonic)
    #: when the code began to run (None while it is still being written)
    running_since: float | None = None
    #: when the last piece of code arrived
    written: float = field(default_factory=time.monotonic)
    #: take a pause after the code for "running" (servers that never say so, such as OpenAI's);
    #: None once the server said the code started
    guess_running: bool | None = True
    finished: float | None = None
    version: int = 0

    def phase(self, now: float) -> str:
        """``writing``, ``running`` or the step's final status."""
        if self.status != "in_progress":
            return self.status
        if self.guess_running and self.running_since is None and self.code and now - self.written >= QUIET_AFTER_CODE:
            # servers that send no "running" signal (OpenAI's): a pause after the code means it runs
            self.running_since = self.written
        return "running" if self.running_since is not None else "writing"

    def ran_for(self, now: float) -> float:
        return (self.finished or now) - (self.running_since or self.started)

    @property
    def logs(self) -> str:
        return "".join(value for kind, value in self._ordered() if kind == "logs")

    @property
    def image_file_ids(self) -> list[str]:
        return [value for kind, value in self._ordered() if kind == "image"]

    def _ordered(self) -> list[tuple[str, str]]:
        return [self.outputs[i] for i in sorted(self.outputs)]

    def to_dict(self) -> dict[str, Any]:
        return {"code": self.code, "logs": self.logs, "image_file_ids": self.image_file_ids, "status": self.status}


@dataclass
class Annotation:
    """A ``file_path`` annotation: characters start..end of the text stand for a file."""

    start: int
    end: int
    file_id: str
    text: str
    container_id: str | None = None  # a Responses API container file (fetched from the container)

    @property
    def filename(self) -> str:
        return self.text.rsplit("/", 1)[-1] or self.file_id


@dataclass
class TextPart:
    text: str = ""
    annotations: list[Annotation] = field(default_factory=list)


@dataclass
class ImagePart:
    file_id: str


@dataclass
class Answer:
    """One assistant message: text and image parts in the order the model sent them."""

    key: str
    parts: dict[int, Union[TextPart, ImagePart]] = field(default_factory=dict)
    version: int = 0

    @property
    def text(self) -> str:
        return "".join(p.text for _, p in sorted(self.parts.items()) if isinstance(p, TextPart))

    @property
    def image_file_ids(self) -> list[str]:
        return [p.file_id for _, p in sorted(self.parts.items()) if isinstance(p, ImagePart)]


@dataclass
class Notice:
    """A line the panel adds itself: a failed run's error, a cancelled run."""

    key: str
    text: str
    error: bool = True
    version: int = 0


Item = Union[Step, Answer, Notice]


@dataclass
class Turn:
    """One learner message, or the assistant's whole reply to it (one run)."""

    role: str
    text: str = ""  # the learner's message; for the assistant, see :attr:`answer_text`
    items: list[Item] = field(default_factory=list)
    status: str = "queued"
    run_id: str | None = None
    usage: dict[str, int] | None = None
    error: str | None = None
    started: float = field(default_factory=time.monotonic)
    ended: float | None = None
    version: int = 0

    @property
    def answer_text(self) -> str:
        return "\n\n".join(item.text for item in self.items if isinstance(item, Answer) and item.text)

    @property
    def steps(self) -> list[Step]:
        return [item for item in self.items if isinstance(item, Step)]

    @property
    def done(self) -> bool:
        return self.status in TERMINAL

    def find(self, key: str) -> Item | None:
        for item in self.items:
            if item.key == key:
                return item
        return None

    def to_dict(self) -> dict[str, Any]:
        if self.role == "user":
            return {"role": "user", "text": self.text, "steps": [], "status": "sent"}
        images = [fid for item in self.items if isinstance(item, Answer) for fid in item.image_file_ids]
        return {
            "role": "assistant",
            "text": self.answer_text,
            "steps": [step.to_dict() for step in self.steps],
            "image_file_ids": images,
            "status": self.status,
            "error": self.error,
            "usage": self.usage,
            "run_id": self.run_id,
        }

    def phase(self, now: float | None = None) -> str:
        """One line for the status bar: what the run is doing right now."""
        now = time.monotonic() if now is None else now
        if self.status == "queued":
            return "queued…"
        if self.status == "completed":
            seconds = (self.ended or now) - self.started
            tokens = f", {self.usage['total_tokens']} tokens" if self.usage else ""
            return f"done in {seconds:.1f} s{tokens}"
        if self.status in TERMINAL:
            return {"cancelled": "stopped", "expired": "expired"}.get(self.status, self.status)
        if self.status == "cancelling":
            return "stopping…"
        if self.status == "requires_action":
            return "waiting for a function result"
        # an answer with no text yet is the model still reading what came before it
        shown = [item for item in self.items if not isinstance(item, Notice) and not (isinstance(item, Answer) and not item.text)]
        last = shown[-1] if shown else None
        if isinstance(last, Step):
            phase = last.phase(now)
            if phase == "writing":
                return "writing code…"
            if phase == "running":
                return f"running code ({last.ran_for(now):.0f} s)"
            return "reading output…"
        if isinstance(last, Answer) and last.text:
            return "writing the answer…"
        return "thinking…"


def _bump(item: Any) -> None:
    item.version += 1


class TurnBuilder:
    """Applies ``runs.stream`` events to the assistant :class:`Turn` of one run."""

    def __init__(self, turn: Turn, server: dict[str, bool] | None = None) -> None:
        self.turn = turn
        #: what this panel learned about its server: {"announces_running": True} once it has seen
        #: a step announced in_progress again when its code started (tutor_nb's runtime does)
        self.server = server if server is not None else {}
        #: file ids whose bytes the view needs (images, download links), not yet fetched
        self.wanted_files: list[str] = []
        #: sandbox links with no annotation: (text part, annotation to fill with a file id)
        self.unresolved: list[tuple[TextPart, Annotation]] = []

    def apply(self, event: Any) -> None:
        name = getattr(event, "event", "")
        data = getattr(event, "data", None)
        turn = self.turn
        if name.startswith("thread.run.step."):
            self._step(name, data)
        elif name.startswith("thread.message."):
            self._message(name, data)
        elif name.startswith("thread.run."):
            self._run(data)
        elif name == "error":
            turn.status = "error"
            turn.error = getattr(data, "message", None) or str(data)
            self._notice("error", turn.error)
        _bump(turn)

    # -- runs ---------------------------------------------------------------
    def _run(self, run: Any) -> None:
        turn = self.turn
        turn.run_id = run.id
        status = run.status
        if status == "requires_action":
            # Function tools need the caller's own code; the panel only runs code_interpreter.
            self._notice("requires_action", "The assistant asked for a function tool; the panel only supports code_interpreter.")
        turn.status = status
        if status in TERMINAL:
            turn.ended = time.monotonic()
            for step in turn.steps:
                if step.status == "in_progress":
                    step.status = status
                    step.finished = turn.ended
                    _bump(step)
        if status == "completed" and run.usage is not None:
            turn.usage = {
                "prompt_tokens": run.usage.prompt_tokens,
                "completion_tokens": run.usage.completion_tokens,
                "total_tokens": run.usage.total_tokens,
            }
        elif status == "failed":
            error = run.last_error
            turn.error = f"{error.code}: {error.message}" if error else "the run failed"
            self._notice("failed", f"Run failed: {turn.error}")
        elif status == "incomplete":
            reason = getattr(run.incomplete_details, "reason", None)
            self._notice("incomplete", f"The answer is incomplete ({reason or 'no reason given'}).")
        elif status == "expired":
            self._notice("expired", "The run expired before it finished.")
        elif status == "cancelled":
            self._notice("cancelled", "Stopped.", error=False)

    def _notice(self, key: str, text: str, error: bool = True) -> None:
        if self.turn.find(f"notice-{key}") is None:
            self.turn.items.append(Notice(f"notice-{key}", text, error))

    # -- code-interpreter steps ---------------------------------------------
    def _step_item(self, step_id: str, index: int) -> Step:
        key = f"{step_id}:{index}"
        item = self.turn.find(key)
        if item is None:
            item = Step(key, guess_running=not self.server.get("announces_running"))
            self.turn.items.append(item)
        assert isinstance(item, Step)
        return item

    def _step(self, name: str, data: Any) -> None:
        if name == "thread.run.step.delta":
            details = getattr(data.delta, "step_details", None)
            for call in getattr(details, "tool_calls", None) or []:
                if call.type != "code_interpreter" or call.code_interpreter is None:
                    continue
                step = self._step_item(data.id, call.index)
                if call.code_interpreter.input:
                    step.code += call.code_interpreter.input
                    step.written = time.monotonic()
                outputs = call.code_interpreter.outputs
                if outputs is not None and step.running_since is None and step.code:
                    step.running_since = time.monotonic()  # the first output (or live log) delta
                for out in outputs or []:
                    self._output(step, out.index, out)
                _bump(step)
            return
        if data.type != "tool_calls":
            return
        for index, call in enumerate(data.step_details.tool_calls):
            if call.type == "file_search" and name == "thread.run.step.completed":
                self._searched(f"search-{data.id}:{index}", data)
            if call.type != "code_interpreter":
                continue
            step = self._step_item(data.id, index)
            if name in ("thread.run.step.created", "thread.run.step.in_progress"):
                if name.endswith("in_progress") and call.code_interpreter.input and step.guess_running is not None:
                    # tutor_nb's runtime repeats in_progress, with the code, when it starts running it:
                    # the moment it really began (a guess made from a pause is replaced)
                    step.code = call.code_interpreter.input
                    step.running_since, step.guess_running = time.monotonic(), None
                    self.server["announces_running"] = True  # no more guessing from pauses
                    _bump(step)
                continue
            # A finished step carries the full code and outputs: trust it over the deltas, except
            # that a stopped step which carries no outputs keeps what it printed live.
            step.code = call.code_interpreter.input or step.code
            finals = call.code_interpreter.outputs or []
            if finals or data.status == "completed":
                step.outputs = {}
                for out_index, out in enumerate(finals):
                    self._output(step, out_index, out)
            step.status = data.status
            step.finished = time.monotonic()
            self.wanted_files.extend(step.image_file_ids)
            _bump(step)

    def _searched(self, key: str, step: Any) -> None:
        """A file search step: one line with its queries and best hits."""
        from ..searches import search_calls

        if self.turn.find(key) is None:
            for call in search_calls(step)[:1]:
                self.turn.items.append(Notice(key, call.summary(), error=False))

    @staticmethod
    def _output(step: Step, index: int, out: Any) -> None:
        if out.type == "logs":
            previous = step.outputs.get(index, ("logs", ""))[1]
            step.outputs[index] = ("logs", previous + (out.logs or ""))
        elif out.type == "image" and out.image is not None and out.image.file_id:
            step.outputs[index] = ("image", out.image.file_id)

    # -- assistant messages --------------------------------------------------
    def _unannotated(self, part: TextPart) -> None:
        """Sandbox links the server left without a file annotation (a file of an earlier run)."""
        taken = [(note.start, note.end) for note in part.annotations]
        for match in SANDBOX_LINK.finditer(part.text):
            if any(start < match.end() and match.start() < end for start, end in taken):
                continue
            note = Annotation(match.start(), match.end(), "", match.group(0))
            self.unresolved.append((part, note))

    def _answer(self, message_id: str) -> Answer:
        item = self.turn.find(message_id)
        if item is None:
            item = Answer(message_id)
            self.turn.items.append(item)
        assert isinstance(item, Answer)
        return item

    def _message(self, name: str, data: Any) -> None:
        if name == "thread.message.delta":
            answer = self._answer(data.id)
            for block in data.delta.content or []:
                if block.type == "text" and block.text is not None:
                    part = answer.parts.setdefault(block.index, TextPart())
                    if isinstance(part, TextPart):
                        part.text += block.text.value or ""
                elif block.type == "image_file" and block.image_file is not None and block.image_file.file_id:
                    answer.parts[block.index] = ImagePart(block.image_file.file_id)
                    self.wanted_files.append(block.image_file.file_id)
            _bump(answer)
            return
        if getattr(data, "role", "assistant") != "assistant":
            return
        answer = self._answer(data.id)
        if name == "thread.message.completed":
            answer.parts = {}
            for index, block in enumerate(data.content):
                if block.type == "text":
                    notes = [
                        Annotation(a.start_index, a.end_index, a.file_path.file_id, a.text)
                        for a in block.text.annotations
                        if a.type == "file_path"
                    ]
                    part = answer.parts[index] = TextPart(block.text.value, notes)
                    self.wanted_files.extend(a.file_id for a in notes)
                    self._unannotated(part)
                elif block.type == "image_file":
                    answer.parts[index] = ImagePart(block.image_file.file_id)
                    self.wanted_files.append(block.image_file.file_id)
        _bump(answer)
