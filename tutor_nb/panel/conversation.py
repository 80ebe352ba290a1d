"""The panel's conversation without any widget: ids, the run worker thread, Stop.

The worker thread talks HTTP (``runs.stream``), applies events to the :class:`Turn` under a
lock and fetches image and download bytes. It never touches a widget, so it is the same
code in every front end; see :mod:`tutor_nb.panel.stream` for how changes reach the page.
"""

from __future__ import annotations

import threading
import time
from typing import Any, Callable, Iterable

from ..errors import PanelBusyError
from .transcript import Answer, Notice, Step, Turn, TurnBuilder

#: file search results come with their text, so a search step shows passages, not only file names
SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"

#: What the panel's default assistant is told (a math tutor that computes rather than guesses).
TUTOR_INSTRUCTIONS = (
    "You tutor students in mathematics. When a question needs computation, write Python and run it "
    "with the code interpreter instead of calculating in your head, then explain the result briefly. "
    "Write math in LaTeX."
)


def default_assistant(model: str) -> dict[str, Any]:
    return {"name": "Math tutor", "instructions": TUTOR_INSTRUCTIONS, "tools": [{"type": "code_interpreter"}], "model": model}


def _id_of(value: Any) -> str | None:
    if value is None or isinstance(value, str):
        return value
    return getattr(value, "id", None)


def describe_failure(exc: BaseException, client: Any) -> str:
    """One line a learner can act on, instead of a traceback."""
    import openai

    where = str(getattr(client, "base_url", "")) or "the configured server"
    if isinstance(exc, openai.APIConnectionError):
        return (
            f"Cannot reach the assistant server at {where}. Start the local runtime "
            "(tutor_nb.runtime.start()) or pass a client whose base_url points to a running server."
        )
    if isinstance(exc, openai.APIStatusError):
        message = getattr(exc, "message", "") or str(exc)
        return f"The server at {where} refused the request (HTTP {exc.status_code}): {message}"
    return f"{type(exc).__name__}: {exc}"


class Conversation:
    """One assistant, one thread, and the turns of this panel; at most one run at a time."""

    def __init__(
        self,
        client: Any = None,
        assistant: Any = None,
        thread: Any = None,
        model: str = "gpt-4o",
        on_change: Callable[[], None] = lambda: None,
        api: str = "assistants",
    ) -> None:
        if api not in ("assistants", "responses"):
            raise ValueError(f"Unknown api {api!r}: use 'assistants' (the default) or 'responses'.")
        self._client = client
        self._assistant = assistant
        self.api = api
        self.assistant_id = _id_of(assistant) if not isinstance(assistant, dict) else None
        #: Assistants: the thread. Responses: a conversation (conv_...) or the last response of the chain.
        self.thread_id = _id_of(thread)
        self.model = model
        self.turns: list[Turn] = []
        self.files: dict[str, bytes | None] = {}
        #: file name -> id, of files this panel's answers linked (for links given without one)
        self.names: dict[str, str] = {}
        #: what the stream builders learned about the server (see TurnBuilder.server)
        self.server: dict[str, bool] = {}
        self.lock = threading.RLock()
        self._on_change = on_change
        self._worker: threading.Thread | None = None
        self._idle = threading.Event()
        self._idle.set()
        self._stop_requested = False
        self._cancel_sent = False

    # -- ids -----------------------------------------------------------------
    @property
    def client(self) -> Any:
        if self._client is None:
            from ..client import connect

            self._client = connect()
        return self._client

    def _ensure_ids(self) -> tuple[str, str]:
        client = self.client
        if self.assistant_id is None:
            params = self._assistant if isinstance(self._assistant, dict) else default_assistant(self.model)
            self.assistant_id = client.beta.assistants.create(**params).id
        if self.thread_id is None:
            self.thread_id = client.beta.threads.create().id
        return self.assistant_id, self.thread_id

    # -- runs ----------------------------------------------------------------
    @property
    def running(self) -> bool:
        return not self._idle.is_set()

    def wait_idle(self, timeout: float | None) -> bool:
        return self._idle.wait(timeout)

    def start(self, text: str, events: Iterable[Any] | None = None) -> Turn:
        """Add the learner's message and the (queued) reply, and start the run in a thread.

        With ``events`` (stream events recorded earlier), they are shown instead of a live run.
        """
        with self.lock:
            if self.running:
                raise PanelBusyError(
                    "A run is still going in this panel: wait for it (panel.wait()) or stop it "
                    "(panel.stop()) before sending another message."
                )
            self._idle.clear()
            self.turns.append(Turn("user", text=text, status="sent"))
            reply = Turn("assistant")
            self.turns.append(reply)
            self._stop_requested = self._cancel_sent = False
        self._worker = threading.Thread(target=self._run, args=(reply, text, events), name="tutor_nb-run", daemon=True)
        self._worker.start()
        self._on_change()
        return reply

    def stop(self) -> None:
        """Cancel the current run (the server interrupts the code interpreter too)."""
        with self.lock:
            if not self.running:
                return
            self._stop_requested = True
            if self.turns and not self.turns[-1].done and self.turns[-1].status != "cancelling":
                self.turns[-1].status = "cancelling"
                self.turns[-1].version += 1
        self._send_cancel()
        self._on_change()

    def _send_cancel(self) -> None:
        with self.lock:
            turn = self.turns[-1] if self.turns else None
            if turn is None or turn.run_id is None or self._cancel_sent or (self.thread_id is None and self.api == "assistants"):
                return
            self._cancel_sent = True
            run_id, thread_id = turn.run_id, self.thread_id
        try:
            if self.api == "responses":
                self.client.responses.cancel(run_id)
            else:
                self.client.beta.threads.runs.cancel(run_id, thread_id=thread_id)
        except Exception:  # the run may have ended meanwhile; the stream tells us how it ended
            pass

    def _run(self, turn: Turn, text: str, events: Iterable[Any] | None) -> None:
        try:
            if events is not None:
                self._consume(turn, events)
            elif self.api == "responses":
                self._respond(turn, text)
            else:
                _, thread_id = self._ensure_ids()
                client = self.client
                client.beta.threads.messages.create(thread_id, role="user", content=text)
                with client.beta.threads.runs.stream(thread_id=thread_id, assistant_id=self.assistant_id,
                                                     include=[SEARCH_CONTENT]) as stream:
                    self._consume(turn, stream)
        except Exception as exc:  # shown in the transcript; the panel stays usable
            message = describe_failure(exc, self._client)
            with self.lock:
                turn.error = message
                turn.items.append(Notice("notice-exception", message))
                turn.status = "error"
        finally:
            with self.lock:
                if not turn.done:
                    stopped = self._stop_requested
                    turn.status = "cancelled" if stopped else "incomplete"
                    turn.items.append(
                        Notice("notice-end", "Stopped." if stopped else "The stream ended before the run finished.", error=not stopped)
                    )
                turn.ended = turn.ended or time.monotonic()
                turn.version += 1
                self._idle.set()
            self._on_change()

    def _respond(self, turn: Turn, text: str) -> None:
        """One streamed (background) response; the next message continues from it."""
        from . import responses

        params = self._assistant if isinstance(self._assistant, dict) else {}
        conversation = self.thread_id if (self.thread_id or "").startswith("conv") else None
        request = responses.request_params(
            text, params.get("model", self.model), params.get("instructions", TUTOR_INSTRUCTIONS),
            previous=None if conversation else self.thread_id, conversation=conversation)
        with self.client.responses.create(**request) as stream:
            self._consume(turn, stream, responses.ResponseTurnBuilder(turn, self.files))
        if turn.status == "completed" and not conversation:
            self.thread_id = turn.run_id

    def _consume(self, turn: Turn, events: Iterable[Any], builder: Any = None) -> None:
        builder = builder or TurnBuilder(turn, self.server)
        for event in events:
            with self.lock:
                builder.apply(event)
                unresolved, builder.unresolved = builder.unresolved, []
            if unresolved:
                self._resolve(turn, unresolved)
            with self.lock:
                wanted, builder.wanted_files = builder.wanted_files, []
                for item in turn.items:
                    for part in getattr(item, "parts", {}).values():
                        for note in getattr(part, "annotations", []):
                            if note.file_id:
                                self.names.setdefault(note.filename, note.file_id)
            if self._stop_requested:
                self._send_cancel()
            if wanted:
                self._fetch(turn, wanted)
            self._on_change()
        if turn.status == "requires_action":  # nobody here can answer a function call
            self._stop_requested = True
            self._send_cancel()

    def _resolve(self, turn: Turn, unresolved: list) -> None:
        """Give sandbox links without an annotation the file of that name (newest first)."""
        listed: dict[str, str] | None = None
        for part, note in unresolved:
            file_id = self.names.get(note.filename)
            if file_id is None:
                if listed is None:
                    listed = self._output_files()
                file_id = listed.get(note.filename)
            if file_id is None:
                continue
            note.file_id = file_id
            with self.lock:
                part.annotations.append(note)
                turn.version += 1
            self._fetch(turn, [file_id])

    def _output_files(self) -> dict[str, str]:
        """Files code wrote in the sandbox (the newest of each name), as the server lists them."""
        found: dict[str, str] = {}
        try:
            page = self.client.files.list(purpose="assistants_output")
            for file in sorted(page.data, key=lambda f: f.created_at):
                found[file.filename] = file.id
        except Exception:  # not listed: the link stays a plain name
            pass
        return found

    def _fetch(self, turn: Turn, wanted: list[Any]) -> None:
        """Download files the views need: by file id, or (Responses) a cited container file."""
        for entry in wanted:
            file_id = getattr(entry, "file_id", entry)
            if file_id in self.files:
                continue
            try:
                if getattr(entry, "container_id", None):
                    data: bytes | None = self.client.containers.files.content.retrieve(
                        file_id, container_id=entry.container_id).read()
                else:
                    data = self.client.files.content(file_id).read()
            except Exception:
                data = None
            with self.lock:
                self.files[file_id] = data
                for item in turn.items:
                    uses = (
                        file_id in item.image_file_ids
                        if isinstance(item, (Step, Answer))
                        else False
                    ) or (isinstance(item, Answer) and any(
                        note.file_id == file_id for part in item.parts.values() for note in getattr(part, "annotations", [])
                    ))
                    if uses:
                        item.version += 1
                turn.version += 1

    def new_thread(self) -> None:
        """Forget the thread (a new one is created on the next message) and the transcript."""
        with self.lock:
            if self.running:
                raise PanelBusyError("Stop the current run (panel.stop()) before starting a new thread.")
            self.thread_id = None
            self.turns = []
        self._on_change()
