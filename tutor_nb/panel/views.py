"""One widget per transcript item, each updated in place.

A view remembers the ``version`` it last showed and what it last sent, so a flush touches
only the item being written, and only the trait that changed (ipywidgets sends one comm
message per changed trait). Core widgets only: HTML, HTMLMath, Image, Button, Accordion.
"""

from __future__ import annotations

import time
import uuid
from typing import Callable, Mapping, Optional

import ipywidgets as W

from . import offline, render
from .transcript import Answer, ImagePart, Notice, Step, TextPart, Turn

FileBytes = Mapping[str, Optional[bytes]]


def image_widget(data: bytes) -> W.Image:
    return W.Image(value=data, format=render.image_kind(data), layout=W.Layout(max_width="min(100%, 420px)", height="auto"))


def _set(widget: W.Widget, value: str) -> None:
    if widget.value != value:
        widget.value = value


class StepView:
    """A collapsible code block: highlighted code, logs, images, "Run here", "Copy to cell"."""

    def __init__(self, step: Step, on_run_here: Callable[[Step, "StepView"], None], on_copy: Callable[[Step, "StepView"], None]) -> None:
        self.step = step
        self.version = -1
        self.code = W.HTML()
        self.logs = W.HTML()
        self.images = W.VBox()
        self.result = W.HTML()
        #: where "Copy to cell" puts the script that asks the page for a new cell
        self.output = W.Output(layout=W.Layout(display="none"))
        #: where that script types what it did (see tutor_nb.panel.frontend)
        self.report = W.Text(layout=W.Layout(display="none"))
        self.report.add_class("tnb-report")
        #: catches what "Run here" prints or displays (lost in a callback otherwise)
        self.run_output = W.Output()
        #: what the last "Copy to cell" did: inserted, unverified, copied, failed (None: not told yet)
        self.copied: str | None = None
        self.reporting = False
        self.token = f"tnb-step-{uuid.uuid4().hex[:12]}"
        self._image_ids: list[str] = []
        self.run_here = W.Button(description="Run here", icon="play", tooltip="Run this code in this notebook's kernel and compare")
        self.copy = W.Button(description="Copy to cell", icon="copy", tooltip="Put this code in a new cell below the panel")
        self.run_here.on_click(lambda _: on_run_here(self.step, self))
        self.copy.on_click(lambda _: on_copy(self.step, self))
        body = W.VBox([self.code, self.logs, self.images, W.HBox([self.run_here, self.copy]), self.result,
                       self.run_output, self.output, self.report])
        body.add_class(self.token)
        self.widget = W.Accordion(children=[body], selected_index=0)
        self._title = ""

    def update(self, step: Step, files: FileBytes) -> None:
        self.step = step
        self.version = step.version
        _set(self.code, render.code_html(step.code))
        _set(self.logs, render.logs_html(step.logs))
        ready = [fid for fid in step.image_file_ids if files.get(fid)]
        if ready != self._image_ids:
            self._image_ids = ready
            self.images.children = [image_widget(files[fid]) for fid in ready]  # type: ignore[arg-type]
        self._set_title(step)

    def tick(self) -> None:
        if self.step.status == "in_progress":
            self._set_title(self.step)

    def _set_title(self, step: Step) -> None:
        title = step_title(step, time.monotonic())
        if title != self._title:
            self._title = title
            self.widget.set_title(0, title)


def step_title(step: Step, now: float) -> str:
    """The code block's title, following the step: writing, running, ran (or how it ended)."""
    phase = step.phase(now)
    if phase == "writing":
        return "Code · writing…"
    if phase == "running":
        return f"Code · running ({step.ran_for(now):.0f} s)…"
    if phase == "completed":
        return f"Code · ran in {step.ran_for(now):.1f} s"
    return f"Code · {phase}"


class AnswerView:
    """An assistant message: Markdown+math parts (HTMLMath) and images, in order."""

    def __init__(self, answer: Answer) -> None:
        self.version = -1
        self.widget = W.VBox()
        self._parts: dict[int, W.Widget] = {}

    def update(self, answer: Answer, files: FileBytes, shown_in_steps: frozenset[str] = frozenset()) -> None:
        """``shown_in_steps``: images already shown under a code step (the Assistants API
        repeats a step's plot in the message), not shown twice."""
        self.version = answer.version
        new = False
        for index, part in sorted(answer.parts.items()):
            widget = self._parts.get(index)
            if isinstance(part, ImagePart) and part.file_id in shown_in_steps:
                continue
            if isinstance(part, TextPart):
                if not isinstance(widget, W.HTMLMath):
                    widget = self._parts[index] = W.HTMLMath()
                    new = True
                _set(widget, self._text_html(part, files))
            elif isinstance(part, ImagePart) and files.get(part.file_id) and not isinstance(widget, W.Image):
                self._parts[index] = image_widget(files[part.file_id])  # type: ignore[arg-type]
                new = True
        if new:
            self.widget.children = [self._parts[i] for i in sorted(self._parts)]

    @staticmethod
    def _text_html(part: TextPart, files: FileBytes) -> str:
        if not part.annotations:
            return render.markdown_html(part.text)
        links = []
        for note in part.annotations:
            data = files.get(note.file_id)
            ok = data is not None and len(data) <= render.MAX_EMBED_BYTES
            links.append(render.FileLink(note.filename, data if ok else None))
        text = render.links_markdown(part.text, [(n.start, n.end) for n in part.annotations])
        return render.markdown_html(text, links)


class NoticeView:
    def __init__(self, notice: Notice) -> None:
        self.version = -1
        self.widget = W.HTML()

    def update(self, notice: Notice, files: FileBytes) -> None:
        self.version = notice.version
        if offline.is_unmatched(notice.text):
            _set(self.widget, render.error_html(offline.UNMATCHED_LINE, details=notice.text))
        else:
            _set(self.widget, render.error_html(notice.text) if notice.error else render.note_html(notice.text))


class TurnView:
    """A learner message, or the assistant's reply made of steps, answers and notices."""

    def __init__(self, turn: Turn, on_run_here: Callable, on_copy: Callable) -> None:
        self.version = -1
        self._items: dict[str, object] = {}
        self._on_run_here, self._on_copy = on_run_here, on_copy
        who = "You" if turn.role == "user" else "Assistant"
        header = W.HTML(render.role_html(who))
        if turn.role == "user":
            self.body = W.VBox([W.HTML(render.user_html(turn.text))])
        else:
            self.body = W.VBox()
        self.widget = W.VBox([header, self.body], layout=W.Layout(margin="0 0 8px 0"))

    def update(self, turn: Turn, files: FileBytes) -> None:
        self.version = turn.version
        if turn.role == "user":
            return
        added = False
        step_images = frozenset(fid for step in turn.steps for fid in step.image_file_ids)
        for item in turn.items:
            view = self._items.get(item.key)
            if view is None:
                if isinstance(item, Step):
                    view = StepView(item, self._on_run_here, self._on_copy)
                elif isinstance(item, Answer):
                    view = AnswerView(item)
                else:
                    view = NoticeView(item)
                self._items[item.key] = view
                added = True
            if view.version != item.version:  # type: ignore[attr-defined]
                if isinstance(view, AnswerView):
                    view.update(item, files, step_images)  # type: ignore[arg-type]
                else:
                    view.update(item, files)  # type: ignore[attr-defined]
        if added:
            self.body.children = [self._items[item.key].widget for item in turn.items]  # type: ignore[attr-defined]

    def tick(self) -> None:
        """Refresh what changes with time alone (a running step's elapsed seconds)."""
        for view in self._items.values():
            if isinstance(view, StepView):
                view.tick()

    def widgets(self) -> list[W.Widget]:
        """Every widget of this turn (to re-send their state in one go, see ChatPanel.wait)."""
        found: list[W.Widget] = []

        def walk(widget: W.Widget) -> None:
            found.append(widget)
            for child in getattr(widget, "children", ()):
                walk(child)

        walk(self.widget)
        return found
