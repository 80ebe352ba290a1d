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
import uuid
from typing import Any, Iterable, Literal

import ipywidgets as W

from ..errors import PanelTimeoutError
from . import export, frontend, offline, render
from .conversation import Conversation
from .stream import Coalescer, Pump
from .transcript import Step, Turn
from .views import StepView, TurnView

Updates = Literal["auto", "thread", "blocking"]
#: How many suggested questions show at once ("other questions" shows the next ones).
CHIPS_SHOWN = 4


def _default_updates() -> str:
    return "blocking" if "google.colab" in sys.modules else "thread"


class ChatPanel:
    """A chat with an Assistants-API assistant that streams code, outputs and answers.

    ``client`` defaults to :func:`tutor_nb.connect`; ``assistant`` is an id, an Assistant, or a
    dict of ``assistants.create`` parameters (default: a math tutor with code_interpreter);
    ``thread`` is an id or a Thread (default: a new one on the first message). ``updates``
    picks how streamed changes reach the page (see :mod:`tutor_nb.panel.stream`).
    ``suggestions`` are questions offered as buttons under the input; ``"auto"`` offers the
    recorded questions when the client talks to a local replay runtime (none otherwise).
    ``api="responses"`` runs the same panel on the Responses API: ``assistant`` is then a dict
    with ``model`` and ``instructions``, and ``thread`` a conversation id or a response id to
    continue from (default: a chain of ``previous_response_id`` from the first message).
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
        suggestions: Iterable[str] | Literal["auto"] | None = "auto",
        api: Literal["assistants", "responses"] = "assistants",
    ) -> None:
        self.updates = _default_updates() if updates == "auto" else updates
        self._conversation = Conversation(client, assistant, thread, model=model, on_change=self._changed, api=api)
        self._coalescer = Coalescer(self._render, interval=interval)
        self._pump = Pump(self._coalescer, busy=lambda: self._conversation.running)
        self._views: list[TurnView] = []
        self._shown: list[Turn] = []
        self._suggestions = None if suggestions == "auto" else list(suggestions or [])
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
        #: where the panel puts scripts for the page (scrolling to a new turn)
        self._script = W.Output(layout=W.Layout(display="none"))
        self.token = f"tnb-panel-{uuid.uuid4().hex[:12]}"
        self.widget = W.VBox([self._scroller, self._status, self._input, self._build_chips(), buttons, self._script],
                             layout=W.Layout(width="100%"))
        self.widget.add_class("tnb-chat-panel")
        self.widget.add_class(self.token)
        self._show_chips()

    def _build_chips(self) -> W.Box:
        """The row of suggested questions under the input (filled by :meth:`_show_chips`)."""
        self._chips = W.Box(layout=W.Layout(display="flex", flex_flow="row wrap", width="100%"))
        self._chips.add_class("tnb-suggestions")
        self._more = W.Button(description="other questions", icon="refresh", layout=W.Layout(width="auto"),
                              tooltip="Show other recorded questions")
        self._more.on_click(lambda _: self._show_chips(self._chip_start + CHIPS_SHOWN))
        self._chip_start = 0
        return self._chips

    # -- scripting API -------------------------------------------------------------
    def send(self, text: str) -> None:
        """Post ``text`` as the learner and start a run; returns at once (see :meth:`wait`)."""
        self._start(text, None, pump_in_background=True)

    def play(self, text: str, events: Iterable[Any]) -> None:
        """Show recorded ``runs.stream`` events as the reply to ``text``, as if live."""
        self._start(text, events, pump_in_background=True)

    def _start(self, text: str, events: Iterable[Any] | None, pump_in_background: bool) -> None:
        self._conversation.start(text, events=events)
        self._script.outputs = (frontend.scroll_to_newest_output(self.token),)
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
        self._export_links.value = ""
        self._coalescer.flush()

    @property
    def status(self) -> str:
        """The status line's text: ``writing code…``, ``running code (3 s)``, ``done in 2.1 s, 310 tokens``…"""
        with self._conversation.lock:
            turns = self._conversation.turns
            return turns[-1].phase() if turns and turns[-1].role == "assistant" else "ready"

    @property
    def suggestions(self) -> list[str]:
        """The questions offered as buttons under the input (offline: the recorded ones)."""
        if self._suggestions is None:
            self._suggestions = offline.replay_questions(self.client)
        return list(self._suggestions)

    @property
    def transcript(self) -> list[dict[str, Any]]:
        """The conversation as plain dicts: role, text, steps (code, logs, image ids), status."""
        with self._conversation.lock:
            return [turn.to_dict() for turn in self._conversation.turns]

    def export(self, fmt: Literal["markdown", "json"] = "markdown", *, images: str | None = None) -> str:
        """The transcript as Markdown (readable) or JSON (complete).

        Markdown embeds charts as data URIs; with ``images="some/folder"`` it writes them there
        as PNG files instead and links them by relative path.
        """
        with self._conversation.lock:
            files, names = dict(self._conversation.files), dict(self._conversation.names)
        return export.export(self.transcript, fmt, files=files, images=images, names=names)

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
    def _on_send(self, text: str | None = None) -> None:
        text = (self._input.value if text is None else text).strip()
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
            links.append(render.download_link(name, f"data:{mime};charset=utf-8;base64,{data}"))
        self._export_links.value = " · ".join(links)

    def _on_run_here(self, step: Step, view: StepView) -> None:
        from .. import CodeCall, compare, rerun

        view.result.value = render.note_html("running in this notebook's kernel…")
        outputs = [{"type": "logs", "logs": step.logs}] + [{"type": "image", "file_id": f} for f in step.image_file_ids]
        call = CodeCall(code=step.code, outputs=outputs, status=step.status)
        try:
            view.run_output.clear_output()
            with view.run_output:
                result = rerun(call)
            view.result.value = _html_of(compare(call, result))
        except Exception as exc:
            view.result.value = render.error_html(f"Run here failed: {type(exc).__name__}: {exc}")

    def _on_copy(self, step: Step, view: StepView) -> None:
        """Ask the page for a new cell below the panel's (or the clipboard); it reports back."""
        view.copied = None
        view.result.value = render.note_html(frontend.ASKED)
        if not view.reporting:
            view.reporting = True
            view.report.observe(lambda change: self._on_copy_report(view, change["new"]), names="value")
        view.output.outputs = (frontend.copy_to_cell_output(view.token, step.code),)

    def _on_copy_report(self, view: StepView, report: str) -> None:
        outcome = frontend.outcome_of(report)
        if outcome is None:
            return
        view.copied = outcome
        view.output.outputs = ()  # the script must not run again (a re-rendered notebook)
        text = frontend.OUTCOMES[outcome]
        view.result.value = render.error_html(text) if outcome == "failed" else render.note_html(text)

    # -- suggestions -------------------------------------------------------------------
    def _show_chips(self, start: int = 0) -> None:
        questions = self.suggestions
        if not questions:
            self._chips.children = ()
            return
        self._chip_start = start if start < len(questions) else 0
        shown = (questions * 2)[self._chip_start : self._chip_start + min(CHIPS_SHOWN, len(questions))]
        chips = []
        for question in shown:
            chip = W.Button(description=question, tooltip=question, layout=W.Layout(width="auto", max_width="100%"))
            chip.add_class("tnb-chip")
            chip.on_click(lambda _, q=question: self._on_send(q))
            chips.append(chip)
        label = W.HTML(render.note_html("Offline, try:"))
        self._chips.children = [label, *chips] + ([self._more] if len(questions) > CHIPS_SHOWN else [])
        busy = self._conversation.running
        for chip in chips:
            chip.disabled = busy

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
            if self._views:
                self._views[-1].tick()  # elapsed seconds in the titles of running steps
            busy = conv.running
            phase = self.status
        if added or len(self._messages.children) != len(self._views):
            self._messages.children = [view.widget for view in self._views]
        if busy and self.updates == "blocking":
            phase += " · interrupt the kernel to stop"
        _set_value(self._status, render.status_html(phase, busy))
        _set_value(self._stop_button, not busy, "disabled")
        _set_value(self._send_button, busy, "disabled")
        _set_value(self._new_button, busy, "disabled")
        for chip in self._chips.children:
            if isinstance(chip, W.Button):
                _set_value(chip, busy, "disabled")

    def _resend_last_turn(self) -> None:
        if self._views:
            for widget in self._views[-1].widgets():
                # not an Output's msg_id: only a capture sets it, and managers that track captures by it
                # (nbclient's) fail on an empty one for an Output that never captured
                widget.send_state(key=[key for key in widget.keys if key != "msg_id"])
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
