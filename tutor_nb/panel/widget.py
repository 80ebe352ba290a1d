"""ChatPanel: chat with an assistant, watch its code run, re-run any step in the notebook.

Layout, top to bottom: the transcript, a status line, the input, the buttons.

* The transcript is a Box laid out ``column-reverse`` with ``overflow: auto`` around one
  inner VBox. In a reversed flex container the browser measures scrolling from the bottom,
  so it stays pinned to the newest line while text streams in, and a learner who scrolled
  up keeps their place (the browser's scroll anchoring; both checked in Chromium by the
  browser test). Pure CSS through core ``Layout`` traits: no script, no custom widget.
* The input is a multi-line Textarea and only the Send button sends. There is no Enter
  shortcut: the Enter that confirms a Korean or Japanese syllable in an IME must not send,
  and core widgets give no way to tell the two Enters apart.
"""

from __future__ import annotations

import base64
import sys
import threading
from typing import Any, Iterable, Literal

import ipywidgets as W

from ..errors import PanelTimeoutError
from . import export, render
from .conversation import Conversation
from .stream import Coalescer, Pump
from .transcript import Step, Turn
from .views import StepView, TurnView

Updates = Literal["auto", "thread", "blocking"]


def _default_updates() -> str:
    return "blocking" if "google.colab" in sys.modules else "thread"


class ChatPanel:
    """A chat with an Assistants-API assistant that streams code, outputs and answers.

    ``client`` defaults to :func:`tutor_nb.connect`; ``assistant`` is an id, an Assistant, or a
    dict of ``assistants.create`` parameters (default: a math tutor with code_interpreter);
    ``thread`` is an id or a Thread (default: a new one on the first message). ``updates``
    picks how streamed changes reach the page (see :mod:`tutor_nb.panel.stream`).
    """

    def __init__(
        self,
        client: Any = None,
        assistant: Any = None,
        thread: Any = None,
        *,
        model: str = "gpt-4o",
        updates: Updates = "auto",
        height: str = "420px",
        interval: float = 0.05,
    ) -> None:
        self.updates = _default_updates() if updates == "auto" else updates
        self._conversation = Conversation(client, assistant, thread, model=model, on_change=self._changed)
        self._coalescer = Coalescer(self._render, interval=interval)
        self._pump = Pump(self._coalescer, busy=lambda: self._conversation.running)
        self._views: list[TurnView] = []
        self._shown: list[Turn] = []
        self._build(height)

    # -- layout ----------------------------------------------------------------
    def _build(self, height: str) -> None:
        self._messages = W.VBox(layout=W.Layout(flex="0 0 auto", width="100%"))
        self._scroller = W.Box(
            [self._messages],
            layout=W.Layout(
                display="flex",
                flex_flow="column-reverse",
                overflow="auto",
                height=height,
                border="1px solid #ddd",
                padding="6px",
            ),
        )
        self._scroller.add_class("tnb-transcript")
        self._status = W.HTML(render.status_html("ready", busy=False))
        self._input = W.Textarea(
            placeholder="Ask the tutor… (Enter adds a line; press Send to send)",
            rows=3,
            layout=W.Layout(width="100%"),
        )
        self._send_button = W.Button(description="Send", button_style="primary", icon="paper-plane")
        self._stop_button = W.Button(description="Stop", button_style="warning", icon="stop", disabled=True)
        self._new_button = W.Button(description="New thread", icon="plus")
        self._export_button = W.Button(description="Export", icon="download")
        self._export_links = W.HTML()
        self._send_button.on_click(lambda _: self._on_send())
        self._stop_button.on_click(lambda _: self.stop())
        self._new_button.on_click(lambda _: self._on_new_thread())
        self._export_button.on_click(lambda _: self._on_export())
        buttons = W.HBox([self._send_button, self._stop_button, self._new_button, self._export_button, self._export_links])
        self.widget = W.VBox([self._scroller, self._status, self._input, buttons], layout=W.Layout(width="100%"))
        self.widget.add_class("tnb-chat-panel")

    # -- scripting API -------------------------------------------------------------
    def send(self, text: str) -> None:
        """Post ``text`` as the learner and start a run; returns at once (see :meth:`wait`)."""
        self._start(text, None, pump_in_background=True)

    def play(self, text: str, events: Iterable[Any]) -> None:
        """Show recorded ``runs.stream`` events as the reply to ``text``, as if live."""
        self._start(text, events, pump_in_background=True)

    def _start(self, text: str, events: Iterable[Any] | None, pump_in_background: bool) -> None:
        self._conversation.start(text, events=events)
        if pump_in_background:
            threading.Thread(target=self._pump.run, name="tutor_nb-flush", daemon=True).start()

    def wait(self, timeout: float | None = None) -> dict[str, Any]:
        """Block until the current run ends and return its transcript entry.

        The caller's thread applies the updates meanwhile (what Colab needs); the notebook's
        interrupt stops the run. Raises :class:`PanelTimeoutError` if ``timeout`` passes first.
        """
        if not self._pump.run(timeout=timeout, on_interrupt=self.stop):
            raise PanelTimeoutError(
                f"The run did not end within {timeout} s; it goes on. Call panel.wait() again or panel.stop()."
            )
        if self.updates == "blocking":
            self._resend_last_turn()
        return self.transcript[-1] if self.transcript else {}

    def stop(self) -> None:
        """Cancel the run in progress (``runs.cancel``; the server interrupts the code)."""
        self._conversation.stop()

    def new_thread(self) -> None:
        """Start over: a new thread on the next message, and an empty transcript."""
        self._conversation.new_thread()
        self._coalescer.flush()

    @property
    def transcript(self) -> list[dict[str, Any]]:
        """The conversation as plain dicts: role, text, steps (code, logs, image ids), status."""
        with self._conversation.lock:
            return [turn.to_dict() for turn in self._conversation.turns]

    def export(self, fmt: Literal["markdown", "json"] = "markdown") -> str:
        """The transcript as Markdown (readable) or JSON (complete)."""
        return export.export(self.transcript, fmt)

    @property
    def client(self) -> Any:
        return self._conversation.client

    @property
    def thread_id(self) -> str | None:
        return self._conversation.thread_id

    @property
    def assistant_id(self) -> str | None:
        return self._conversation.assistant_id

    @property
    def flushes(self) -> int:
        """How many times changes were applied to the widgets (for tests and benchmarks)."""
        return self._coalescer.flushes

    # -- callbacks -------------------------------------------------------------------
    def _on_send(self) -> None:
        text = self._input.value.strip()
        if not text or self._conversation.running:
            return
        self._input.value = ""
        if self.updates == "blocking":
            # every update from this request's own thread, while the request runs (Colab)
            self._start(text, None, pump_in_background=False)
            self.wait()
        else:
            self.send(text)

    def _on_new_thread(self) -> None:
        if not self._conversation.running:
            self.new_thread()

    def _on_export(self) -> None:
        links = []
        for fmt, name, mime in (("markdown", "transcript.md", "text/markdown"), ("json", "transcript.json", "application/json")):
            data = base64.b64encode(self.export(fmt).encode()).decode()
            links.append(f'<a download="{name}" href="data:{mime};charset=utf-8;base64,{data}">{name}</a>')
        self._export_links.value = " · ".join(links)

    def _on_run_here(self, step: Step, view: StepView) -> None:
        from .. import CodeCall, compare, rerun

        view.result.value = render.note_html("running in this notebook's kernel…")
        outputs = [{"type": "logs", "logs": step.logs}] + [{"type": "image", "file_id": f} for f in step.image_file_ids]
        call = CodeCall(code=step.code, outputs=outputs, status=step.status)
        try:
            view.output.clear_output()
            with view.output:
                result = rerun(call)
            view.result.value = _html_of(compare(call, result))
        except Exception as exc:
            view.result.value = render.error_html(f"Run here failed: {type(exc).__name__}: {exc}")

    def _on_copy(self, step: Step, view: StepView) -> None:
        from .. import to_cell

        try:
            view.output.clear_output()
            with view.output:
                to_cell(step.code)
            view.result.value = render.note_html("copied: a new cell below holds the code (or copy it from here)")
        except Exception as exc:
            view.result.value = render.error_html(f"Copy to cell failed: {type(exc).__name__}: {exc}")

    # -- rendering -------------------------------------------------------------------
    def _changed(self) -> None:
        self._coalescer.mark()

    def _render(self) -> None:
        conv = self._conversation
        with conv.lock:
            turns = list(conv.turns)
            if [id(t) for t in turns[: len(self._shown)]] != [id(t) for t in self._shown]:
                self._views, self._shown = [], []  # new thread: start the transcript over
            added = False
            for turn in turns[len(self._shown) :]:
                self._views.append(TurnView(turn, self._on_run_here, self._on_copy))
                self._shown.append(turn)
                added = True
            for turn, view in zip(turns, self._views):
                if view.version != turn.version:
                    view.update(turn, conv.files)
            busy = conv.running
            phase = turns[-1].phase() if turns and turns[-1].role == "assistant" else "ready"
        if added or len(self._messages.children) != len(self._views):
            self._messages.children = [view.widget for view in self._views]
        if busy and self.updates == "blocking":
            phase += " · interrupt the kernel to stop"
        _set_value(self._status, render.status_html(phase, busy))
        _set_value(self._stop_button, not busy, "disabled")
        _set_value(self._send_button, busy, "disabled")
        _set_value(self._new_button, busy, "disabled")

    def _resend_last_turn(self) -> None:
        if self._views:
            for widget in self._views[-1].widgets():
                widget.send_state()
        self._status.send_state()

    # -- display -----------------------------------------------------------------------
    def _repr_mimebundle_(self, **kwargs: Any) -> dict[str, Any]:
        widget_bundle = getattr(self.widget, "_repr_mimebundle_", None)  # ipywidgets 8
        if widget_bundle is not None:
            bundle = dict(widget_bundle(**kwargs) or {})
        else:  # ipywidgets 7 shows widgets through _ipython_display_ with this same view
            view = {"version_major": 2, "version_minor": 0, "model_id": self.widget.model_id}
            bundle = {"application/vnd.jupyter.widget-view+json": view}
        bundle["text/plain"] = repr(self)
        return bundle

    def _ipython_display_(self) -> None:
        from IPython.display import display

        display(self.widget)

    def __repr__(self) -> str:
        turns = self._conversation.turns
        state = "running" if self._conversation.running else "idle"
        return f"<ChatPanel thread={self.thread_id or 'new'} messages={len(turns)} {state}>"


def _set_value(widget: W.Widget, value: Any, trait: str = "value") -> None:
    if getattr(widget, trait) != value:
        setattr(widget, trait, value)


def _html_of(obj: Any) -> str:
    html_repr = getattr(obj, "_repr_html_", None)
    if callable(html_repr):
        return html_repr() or ""
    import html

    return f"<pre>{html.escape(repr(obj))}</pre>"
