"""The Assistants run engine: drives each run from ``queued`` to a terminal status.

A run is the agent loop (``..agent``) recorded as run steps and messages (``.recorder``): model
turns stream into ``message_creation`` steps (text) and ``tool_calls`` steps (code being written),
code runs in the thread's sandbox kernel, and function tools pause the run in ``requires_action``
until the client submits their outputs. This module owns the runs' tasks and statuses: launch,
cancel, recovery after a crash, and the ``Server-Timing`` figures.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from openai.types import FileObject
from openai.types.beta import Assistant, Thread
from openai.types.beta.threads import Message, Run
from openai.types.beta.threads.message import IncompleteDetails
from openai.types.beta.threads.run import IncompleteDetails as RunIncompleteDetails
from openai.types.beta.threads.run import LastError
from openai.types.beta.threads.runs import RunStep, run_step

from ...errors import ModelBackendError
from ..agent import AgentLoop, RunFailure, RunIncomplete, cancel_all
from ..backends.base import ModelBackend
from ..events import RunEvents
from ..store import Store
from ..wire import new_id, now
from .history import ThreadHistories
from .recorder import RunRecorder

log = logging.getLogger("tutor_nb.runtime")

ACTIVE = ("queued", "in_progress", "requires_action", "cancelling")
TERMINAL = ("completed", "failed", "cancelled", "expired", "incomplete")
#: how many recent runs keep their timings (they live in memory only)
TIMINGS_KEPT = 1000
MAX_STAGED = 1024  # threads whose staged attachments are remembered (others are read again in full)


@dataclass
class RunTiming:
    """Where one run's time went, for ``Server-Timing`` and benchmarks; never part of the API objects."""

    launched: float  # perf_counter() when the run was handed to the engine
    started: float | None = None  # perf_counter() when its task began
    kernel: float = 0.0  # seconds spent in the sandbox (kernel hand-over and executions)
    ended: float | None = None  # perf_counter() at its terminal status
    ended_at: float | None = None  # time.time() at its terminal status: sub-second, unlike completed_at

    def server_timing(self) -> str | None:
        """A ``Server-Timing`` header value once the run has ended, else None."""
        if self.ended is None or self.ended_at is None:
            return None
        started = self.started if self.started is not None else self.launched
        engine = self.ended - started - self.kernel
        return (f"queue;dur={(started - self.launched) * 1e3:.3f}, engine;dur={engine * 1e3:.3f}, "
                f"kernel;dur={self.kernel * 1e3:.3f}, ended;desc=\"{self.ended_at:.6f}\"")




class Engine:
    """Owns the asyncio tasks of active runs. Lives in the server's event loop."""

    def __init__(
        self,
        store: Store,
        sandbox: Any,
        backend: ModelBackend,
        events: RunEvents,
        *,
        max_model_calls: int = 12,
        exec_timeout: float | None = None,
        vector_stores: Any = None,
    ) -> None:
        self.store, self.sandbox, self.backend, self.events = store, sandbox, backend, events
        self.vector_stores = vector_stores  # what file_search searches (search.stores.VectorStores)
        self.loop = AgentLoop(backend, sandbox, max_model_calls=max_model_calls, exec_timeout=exec_timeout)
        self.histories = ThreadHistories(store)
        self._tasks: dict[str, asyncio.Task] = {}
        self._live: dict[str, Run] = {}  # the one in-memory copy of each active run
        self._tool_outputs: dict[str, asyncio.Future] = {}
        self._timings: OrderedDict[str, RunTiming] = OrderedDict()
        self._staged: OrderedDict[str, int] = OrderedDict()  # thread id -> newest message seq whose files are staged
        self._closing = False
        #: runs created with include[] asking for file search results' text: their stream events carry it
        self.search_content: set[str] = set()

    # -- lifecycle ---------------------------------------------------------------------------

    def recover(self) -> list[str]:
        """Fail the runs that were active when the server last stopped; returns their ids."""
        reason = (
            "The tutor_nb runtime stopped while this run was in progress, so it was ended. "
            "Nothing before it was lost; start a new run to continue."
        )
        ended = []
        for run in self.store.unfinished_runs():
            self._finish_parts(run, "failed", reason)
            self.set_status(run, "expired" if run.status == "requires_action" else "failed", reason)
            ended.append(run.id)
        return ended

    async def close(self) -> None:
        """Stop every run (they end as failed: the runtime is going away)."""
        self._closing = True
        await cancel_all(self._tasks.values())

    def active_run(self, thread_id: str) -> Run | None:
        """The thread's active run, if any. Every active run is live here (those of an earlier process were
        ended by ``recover``), so this reads no stored run at all, however many the thread has had."""
        return next((run for run in self._live.values() if run.thread_id == thread_id and run.status in ACTIVE), None)

    def get_run(self, run_id: str) -> Run | None:
        """The run as it is now: the live copy while active, else the stored one."""
        return self._live.get(run_id) or self.store.get(Run, run_id)

    def timing(self, run_id: str) -> RunTiming | None:
        """Where the run's time went, if it ran in this process recently."""
        return self._timings.get(run_id)

    def launch(self, run: Run) -> None:
        self._timings[run.id] = RunTiming(launched=time.perf_counter())
        while len(self._timings) > TIMINGS_KEPT:
            self._timings.popitem(last=False)
        self._live[run.id] = run
        self._tasks[run.id] = asyncio.create_task(self._drive(run.id), name=f"run {run.id}")

    async def cancel(self, run: Run) -> Run:
        if run.status not in ("queued", "in_progress", "requires_action"):
            return run
        self.set_status(run, "cancelling")
        self.events.publish(run.id, "thread.run.cancelling", run)
        task = self._tasks.get(run.id)
        if task is None:  # nothing drives it (should not happen): end it here
            self._finish_parts(run, "cancelled", None)
            self.set_status(run, "cancelled")
            self.events.end(run.id)
        else:
            task.cancel()
        return run

    def expect_tool_outputs(self, run_id: str) -> asyncio.Future:
        """A future the next submit_tool_outputs for this run resolves."""
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._tool_outputs[run_id] = future
        return future

    def submit_tool_outputs(self, run: Run, outputs: list[dict[str, Any]]) -> Run:
        future = self._tool_outputs.get(run.id)
        if future is None or future.done():
            raise RunFailure("This run is not waiting for tool outputs.")
        future.set_result(outputs)
        run.required_action = None  # answered: the run goes back to the queue
        self.set_status(run, "queued")
        return run

    # -- the run -----------------------------------------------------------------------------

    async def _drive(self, run_id: str) -> None:
        run = self._live[run_id]
        timing = self._timings.get(run_id)
        if timing is not None:
            timing.started = time.perf_counter()
        try:
            self.events.publish(run.id, "thread.run.created", run)
            self.events.publish(run.id, "thread.run.queued", run)
            run.started_at = now()
            self.set_status(run, "in_progress")
            self.events.publish(run.id, "thread.run.in_progress", run)
            self._stage_files(run)
            await self.loop.run(RunRecorder(self, run))
            run.completed_at = now()
            self.set_status(run, "completed")
            self.events.publish(run.id, "thread.run.completed", run)
        except asyncio.CancelledError:
            if self._closing:
                reason = "The tutor_nb runtime was stopped while this run was in progress."
                self._finish_parts(run, "failed", reason)
                self.set_status(run, "failed", reason)
            else:
                self._finish_parts(run, "cancelled", None)
                run.cancelled_at = now()
                self.set_status(run, "cancelled")
                self.events.publish(run.id, "thread.run.cancelled", run)
        except RunIncomplete as exc:
            # a token budget ran out: what the run made is kept, a step it had not finished is cancelled
            self._finish_parts(run, "cancelled", None)
            run.incomplete_details = RunIncompleteDetails(reason=exc.reason)  # type: ignore[arg-type]
            self.set_status(run, "incomplete")
            self.events.publish(run.id, "thread.run.incomplete", run)
        except (ModelBackendError, RunFailure) as exc:
            self._fail(run_id, str(exc), getattr(exc, "code", "server_error"))
        except Exception as exc:  # a bug here must end the run, not leave it hanging
            log.exception("run %s crashed", run_id)
            self._fail(
                run_id,
                f"The tutor_nb runtime hit an internal error ({type(exc).__name__}: {self._without_paths(exc)}). "
                "Start a new run; if it keeps happening, please report it.",
            )
        finally:
            self._tasks.pop(run_id, None)
            self._live.pop(run_id, None)
            self._tool_outputs.pop(run_id, None)
            self.search_content.discard(run_id)
            self.events.end(run_id)

    def _fail(self, run_id: str, message: str, code: str = "server_error") -> None:
        run = self.get_run(run_id)
        if run is None:  # the thread was deleted under it
            return
        self._finish_parts(run, "failed", message)
        self.set_status(run, "failed", message, code)
        self.events.publish(run.id, "thread.run.failed", run)

    def set_status(self, run: Run, status: str, error: str | None = None, code: str = "server_error") -> None:
        run.status = status  # type: ignore[assignment]
        stamp = now()
        if status == "failed":
            run.failed_at = stamp
        if status == "cancelled" and run.cancelled_at is None:
            run.cancelled_at = stamp
        if error is not None:
            run.last_error = LastError(code=code, message=error)  # type: ignore[arg-type]
        if status in TERMINAL:
            run.expires_at = None
            run.required_action = None
        self.store.save(run)
        timing = self._timings.get(run.id)
        if timing is not None and status in TERMINAL:
            timing.ended, timing.ended_at = time.perf_counter(), time.time()
        self.events.changed(run.id)

    def _finish_parts(self, run: Run, status: str, error: str | None) -> None:
        """End the steps and messages a stopped run left in progress."""
        stamp = now()
        for step in self.store.children(RunStep, run.id):
            if step.status != "in_progress":
                continue
            step.status = status  # type: ignore[assignment]
            if status == "failed":
                step.failed_at = stamp
                step.last_error = run_step.LastError(code="server_error", message=error or "")
            else:
                step.cancelled_at = stamp
            self.store.save(step)
            if step.step_details.type == "message_creation":
                message = self.store.get(Message, step.step_details.message_creation.message_id)
                if message is not None and message.status == "in_progress":
                    message.status = "incomplete"
                    message.incomplete_at = stamp
                    message.incomplete_details = IncompleteDetails(reason="run_cancelled" if status == "cancelled" else "run_failed")
                    self.store.save(message)

    # -- files -------------------------------------------------------------------------------

    def _without_paths(self, exc: Exception) -> str:
        """An error's text with the data folder's absolute path taken out (answers never show it)."""
        text = str(exc)
        for folder in {str(self.store.data_dir.resolve()), str(self.store.data_dir)}:
            text = text.replace(folder, "<data folder>")
        return text

    def _stage_files(self, run: Run) -> None:
        """Put the files the thread may use into its working folder, under their own names.

        Messages' attachments are read only for messages newer than the last run's staging (a file already
        in the folder is left as the code may have changed it)."""
        file_ids: list[str] = []
        assistant = self.store.get(Assistant, run.assistant_id)
        thread = self.store.get(Thread, run.thread_id)
        for owner in (assistant, thread):
            resources = getattr(owner, "tool_resources", None)
            ci = getattr(resources, "code_interpreter", None) if resources else None
            file_ids += list(getattr(ci, "file_ids", None) or [])
        newest, attached = self.store.attached_files(run.thread_id, after=self._staged.pop(run.thread_id, 0))
        file_ids += attached
        self._staged[run.thread_id] = newest
        while len(self._staged) > MAX_STAGED:
            self._staged.popitem(last=False)
        workdir = Path(self.sandbox.workdir(run.thread_id))
        for file_id in dict.fromkeys(file_ids):
            meta = self.store.get(FileObject, file_id)
            if meta is None:
                continue
            target = workdir / Path(meta.filename).name
            try:  # never through a link model code left there, never over a file already there
                fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o644)
            except FileExistsError:
                continue
            except (OSError, ValueError) as exc:  # a name stored before names were made safe
                log.warning("could not stage %s for thread %s: %s", file_id, run.thread_id, type(exc).__name__)
                continue
            with os.fdopen(fd, "wb") as f:
                f.write(self.store.read_blob(file_id))

    def new_file(self, data: bytes, filename: str) -> str:
        meta = FileObject(
            id=new_id("file"), object="file", bytes=len(data), created_at=now(),
            filename=filename, purpose="assistants_output", status="processed",
        )
        self.store.write_blob(meta.id, data)
        self.store.add(meta)
        return meta.id
