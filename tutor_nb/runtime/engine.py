"""The run engine: drives one run from ``queued`` to a terminal status.

A run alternates model turns and tool executions. Each model turn streams into a
``message_creation`` step (text) and/or a ``tool_calls`` step (code being written);
code runs in the thread's sandbox kernel and its outputs go back to the model, until the
model answers without calling a tool. User-defined function tools pause the run in
``requires_action`` until the client submits their outputs. Every change is saved to the
store first, then published to open streams, so a crash never shows clients something
that was not kept.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from openai.types import FileObject
from openai.types.beta import Assistant, Thread
from openai.types.beta.threads import Message, Run
from openai.types.beta.threads.message import IncompleteDetails
from openai.types.beta.threads.run import LastError, RequiredAction
from openai.types.beta.threads.run import Usage as RunUsage
from openai.types.beta.threads.runs import RunStep
from openai.types.beta.threads.runs import run_step

from ..errors import ModelBackendError
from .backends.base import CODE_TOOL, ModelBackend, ModelRequest, TextDelta, ToolCallDelta, Usage
from .events import RunEvents
from .store import Store
from .toolargs import final_code, partial_code
from .wire import message_text, new_id, now, text_block

log = logging.getLogger("tutor_nb.runtime")

ACTIVE = ("queued", "in_progress", "requires_action", "cancelling")
TERMINAL = ("completed", "failed", "cancelled", "expired", "incomplete")
#: how much of a tool's logs is sent back to the model (the client always gets all of it)
MODEL_LOG_CHARS = 20_000
_FILE_MENTION = re.compile(r"(?:sandbox:)?/mnt/data/([^\s)\]\"'`<>]+)")
#: how many recent runs keep their timings (they live in memory only)
TIMINGS_KEPT = 1000
MAX_HISTORIES = 256  # threads whose settled history is kept converted


class RunFailure(Exception):
    """Ends a run as ``failed`` with this message as its ``last_error``."""

    def __init__(self, message: str, code: str = "server_error") -> None:
        super().__init__(message)
        self.message, self.code = message, code


@dataclass
class _ToolCall:
    id: str
    kind: str  # "code_interpreter" or "function"
    name: str
    arguments: str = ""
    shown: str = ""  # code already streamed to clients


@dataclass
class _Turn:
    """What one model call produced."""

    message: Message | None = None
    message_step: RunStep | None = None
    text: str = ""
    text_index: int = 0
    tool_step: RunStep | None = None
    calls: dict[int, _ToolCall] = field(default_factory=dict)
    usage: Usage | None = None


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


@dataclass
class _RunState:
    """What a run carries from one turn to the next."""

    images: list[str] = field(default_factory=list)  # file ids not yet shown in a message
    files: dict[str, str] = field(default_factory=dict)  # file name -> file id made by code


@dataclass
class _History:
    """A thread's conversation up to row ``seq`` (``rows`` rows), as Chat Completions messages."""

    seq: int = 0
    rows: int = 0
    messages: list[dict[str, Any]] = field(default_factory=list)


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
    ) -> None:
        self.store, self.sandbox, self.backend, self.events = store, sandbox, backend, events
        self.max_model_calls = max_model_calls
        self.exec_timeout = exec_timeout
        self._tasks: dict[str, asyncio.Task] = {}
        self._live: dict[str, Run] = {}  # the one in-memory copy of each active run
        self._tool_outputs: dict[str, asyncio.Future] = {}
        self._timings: OrderedDict[str, RunTiming] = OrderedDict()
        self._histories: OrderedDict[str, _History] = OrderedDict()  # thread id -> its settled history
        self._closing = False

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
            self._set_status(run, "expired" if run.status == "requires_action" else "failed", reason)
            ended.append(run.id)
        return ended

    async def close(self) -> None:
        """Stop every run (they end as failed: the runtime is going away)."""
        self._closing = True
        tasks = list(self._tasks.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)

    def active_run(self, thread_id: str) -> Run | None:
        for run in self.store.children(Run, thread_id):
            if run.status in ACTIVE:
                return run
        return None

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
        self._set_status(run, "cancelling")
        self.events.publish(run.id, "thread.run.cancelling", run)
        task = self._tasks.get(run.id)
        if task is None:  # nothing drives it (should not happen): end it here
            self._finish_parts(run, "cancelled", None)
            self._set_status(run, "cancelled")
            self.events.end(run.id)
        else:
            task.cancel()
        return run

    def submit_tool_outputs(self, run: Run, outputs: list[dict[str, Any]]) -> Run:
        future = self._tool_outputs.get(run.id)
        if future is None or future.done():
            raise RunFailure("This run is not waiting for tool outputs.")
        future.set_result(outputs)
        self._set_status(run, "queued")
        return run

    # -- the run -----------------------------------------------------------------------------

    async def _drive(self, run_id: str) -> None:
        run = self._live[run_id]
        state = _RunState()
        timing = self._timings.get(run_id)
        if timing is not None:
            timing.started = time.perf_counter()
        try:
            self.events.publish(run.id, "thread.run.created", run)
            self.events.publish(run.id, "thread.run.queued", run)
            run.started_at = now()
            self._set_status(run, "in_progress")
            self.events.publish(run.id, "thread.run.in_progress", run)
            self._stage_files(run)
            for _ in range(self.max_model_calls):
                turn = await self._model_turn(run, state)
                self._add_usage(run, turn.usage)
                self.store.save(run)
                code = [c for c in turn.calls.values() if c.kind == "code_interpreter"]
                functions = [c for c in turn.calls.values() if c.kind == "function"]
                if code:
                    await self._execute(run, turn, state)
                elif functions:
                    await self._wait_for_tool_outputs(run, turn)
                else:
                    break
            else:
                raise RunFailure(
                    f"The model called tools {self.max_model_calls} times without giving an "
                    "answer, so the run was stopped. Try a more specific question."
                )
            run.completed_at = now()
            self._set_status(run, "completed")
            self.events.publish(run.id, "thread.run.completed", run)
        except asyncio.CancelledError:
            if self._closing:
                reason = "The tutor_nb runtime was stopped while this run was in progress."
                self._finish_parts(run, "failed", reason)
                self._set_status(run, "failed", reason)
            else:
                self._finish_parts(run, "cancelled", None)
                run.cancelled_at = now()
                self._set_status(run, "cancelled")
                self.events.publish(run.id, "thread.run.cancelled", run)
        except (ModelBackendError, RunFailure) as exc:
            self._fail(run_id, str(exc), getattr(exc, "code", "server_error"))
        except Exception as exc:  # a bug here must end the run, not leave it hanging
            log.exception("run %s crashed", run_id)
            self._fail(
                run_id,
                f"The tutor_nb runtime hit an internal error ({type(exc).__name__}: {exc}). "
                "Start a new run; if it keeps happening, please report it.",
            )
        finally:
            self._tasks.pop(run_id, None)
            self._live.pop(run_id, None)
            self._tool_outputs.pop(run_id, None)
            self.events.end(run_id)

    def _fail(self, run_id: str, message: str, code: str = "server_error") -> None:
        run = self.get_run(run_id)
        if run is None:  # the thread was deleted under it
            return
        self._finish_parts(run, "failed", message)
        self._set_status(run, "failed", message, code)
        self.events.publish(run.id, "thread.run.failed", run)

    def _set_status(self, run: Run, status: str, error: str | None = None, code: str = "server_error") -> None:
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

    @staticmethod
    def _add_usage(run: Run, usage: Usage | None) -> None:
        if usage is None:
            return
        before = run.usage.model_dump() if run.usage else {"prompt_tokens": 0, "completion_tokens": 0}
        prompt = before["prompt_tokens"] + usage.prompt_tokens
        completion = before["completion_tokens"] + usage.completion_tokens
        run.usage = RunUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)

    # -- files -------------------------------------------------------------------------------

    def _stage_files(self, run: Run) -> None:
        """Put the files the thread may use into its working folder, under their own names."""
        file_ids: list[str] = []
        assistant = self.store.get(Assistant, run.assistant_id)
        thread = self.store.get(Thread, run.thread_id)
        for owner in (assistant, thread):
            resources = getattr(owner, "tool_resources", None)
            ci = getattr(resources, "code_interpreter", None) if resources else None
            file_ids += list(getattr(ci, "file_ids", None) or [])
        for message in self.store.children(Message, run.thread_id):
            file_ids += [a.file_id for a in message.attachments or [] if a.file_id]
        workdir = Path(self.sandbox.workdir(run.thread_id))
        for file_id in dict.fromkeys(file_ids):
            meta = self.store.get(FileObject, file_id)
            if meta is None:
                continue
            target = workdir / Path(meta.filename).name
            if not target.exists():
                target.write_bytes(self.store.read_blob(file_id))

    def _new_file(self, data: bytes, filename: str) -> str:
        meta = FileObject(
            id=new_id("file"), object="file", bytes=len(data), created_at=now(),
            filename=filename, purpose="assistants_output", status="processed",
        )
        self.store.write_blob(meta.id, data)
        self.store.add(meta)
        return meta.id

    def _file_note(self, run: Run) -> str:
        names = sorted(p.name for p in Path(self.sandbox.workdir(run.thread_id)).iterdir() if not p.name.startswith("."))
        if not names:
            return ""
        return "\n\nFiles in /mnt/data: " + ", ".join(names)

    # -- a model turn ------------------------------------------------------------------------

    def _request(self, run: Run) -> ModelRequest:
        messages: list[dict[str, Any]] = []
        system = (run.instructions or "") + self._file_note(run)
        if system.strip():
            messages.append({"role": "system", "content": system.strip()})
        messages += self._conversation(run)
        tools: list[dict[str, Any]] = []
        if run.tool_choice != "none":
            for tool in run.tools:
                if tool.type == "code_interpreter":
                    tools.append(CODE_TOOL)
                elif tool.type == "function":
                    tools.append({"type": "function", "function": tool.function.model_dump(exclude_none=True)})
        return ModelRequest(
            model=run.model, messages=messages, tools=tools, temperature=run.temperature,
            top_p=run.top_p, max_tokens=run.max_completion_tokens,
        )

    def _conversation(self, run: Run) -> list[dict[str, Any]]:
        """The thread's history as Chat Completions messages.

        What came before this run belongs to finished runs and no longer changes, so it is converted
        once and kept; only the run's own rows are read each call. A deleted message shrinks the row
        count, which sends the thread back to a full read.
        """
        boundary = self.store.seq(run.id) or 0
        kept = self._histories.pop(run.thread_id, None)
        if kept is None or kept.seq > boundary or self.store.history_size(run.thread_id, upto=kept.seq) != kept.rows:
            kept = _History()
        rows = self.store.thread_history(run.thread_id, after=kept.seq)
        settled = [row for row in rows if row[0] < boundary]
        if settled:
            kept = _History(settled[-1][0], kept.rows + len(settled), kept.messages + self._chat_messages(settled))
        self._histories[run.thread_id] = kept
        while len(self._histories) > MAX_HISTORIES:
            self._histories.popitem(last=False)
        return kept.messages + self._chat_messages([row for row in rows if row[0] >= boundary])

    @classmethod
    def _chat_messages(cls, rows: list[tuple[int, str, dict[str, Any]]]) -> list[dict[str, Any]]:
        """Messages and steps (whole runs: a message_creation step and its message go together)."""
        out: list[dict[str, Any]] = []
        by_id = {obj["id"]: obj for _, kind, obj in rows if kind == "message"}
        for _, kind, obj in rows:
            if kind == "message" and (obj["role"] == "user" or obj.get("run_id") is None):
                out.append({"role": obj["role"], "content": message_text(obj)})
            elif kind == "run step" and obj["step_details"]["type"] == "message_creation":
                message = by_id.get(obj["step_details"]["message_creation"]["message_id"])
                if message is not None and message_text(message):
                    out.append({"role": "assistant", "content": message_text(message)})
            elif kind == "run step" and obj["step_details"]["type"] == "tool_calls":
                out += cls._tool_messages(obj)
        return out

    @staticmethod
    def _tool_messages(step: dict[str, Any]) -> list[dict[str, Any]]:
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
                calls.append({"id": call["id"], "type": "function", "function": {"name": CODE_TOOL["function"]["name"], "arguments": arguments}})
            elif call["type"] == "function":
                function = call["function"]
                calls.append({"id": call["id"], "type": "function", "function": {"name": function["name"], "arguments": function["arguments"]}})
                result = function.get("output") or f"(no output: step {step['status']})"
            else:
                continue
            results.append({"role": "tool", "tool_call_id": call["id"], "content": result})
        return [{"role": "assistant", "content": None, "tool_calls": calls}, *results] if calls else []

    async def _model_turn(self, run: Run, state: _RunState) -> _Turn:
        turn = _Turn()
        function_names = {t.function.name for t in run.tools if t.type == "function"}
        stream = self.backend.stream(self._request(run))
        async with contextlib.aclosing(stream):  # type: ignore[type-var]
            async for event in stream:
                if isinstance(event, TextDelta) and event.text:
                    self._on_text(run, turn, state, event.text)
                elif isinstance(event, ToolCallDelta):
                    self._on_tool_delta(run, turn, event, function_names)
                elif isinstance(event, Usage):
                    turn.usage = event
        if turn.message is None and not turn.calls and state.images:
            self._on_text(run, turn, state, "")  # show images made by the last code, with no text
        if turn.message is not None:
            self._complete_message(run, turn, state)
        if turn.tool_step is not None:
            self._fill_tool_step(run, turn)
        return turn

    def _new_step(self, run: Run, details: dict[str, Any]) -> RunStep:
        step = RunStep.model_validate({
            "id": new_id("step"), "object": "thread.run.step", "created_at": now(),
            "assistant_id": run.assistant_id, "thread_id": run.thread_id, "run_id": run.id,
            "type": details["type"], "status": "in_progress", "step_details": details,
            "expires_at": run.expires_at,
        })
        self.store.add(step, parent=run.id)
        self.events.publish(run.id, "thread.run.step.created", step)
        self.events.publish(run.id, "thread.run.step.in_progress", step)
        return step

    def _on_text(self, run: Run, turn: _Turn, state: _RunState, text: str) -> None:
        if turn.message is None:
            message_id = new_id("message")
            turn.message_step = self._new_step(
                run, {"type": "message_creation", "message_creation": {"message_id": message_id}}
            )
            turn.message = Message.model_validate({
                "id": message_id, "object": "thread.message", "created_at": now(),
                "thread_id": run.thread_id, "run_id": run.id, "assistant_id": run.assistant_id,
                "role": "assistant", "status": "in_progress", "content": [], "attachments": [], "metadata": {},
            })
            self.store.add(turn.message, parent=run.thread_id)
            self.events.publish(run.id, "thread.message.created", turn.message)
            self.events.publish(run.id, "thread.message.in_progress", turn.message)
            if state.images:
                images = [{"index": i, "type": "image_file", "image_file": {"file_id": f}} for i, f in enumerate(state.images)]
                self._message_delta(run, turn.message, images)
                turn.text_index = len(images)
        if text:
            turn.text += text
            self._message_delta(run, turn.message, [{"index": turn.text_index, "type": "text", "text": {"value": text}}])

    def _message_delta(self, run: Run, message: Message, content: list[dict[str, Any]]) -> None:
        self.events.publish(run.id, "thread.message.delta", {"id": message.id, "object": "thread.message.delta", "delta": {"content": content}})

    def _complete_message(self, run: Run, turn: _Turn, state: _RunState) -> None:
        assert turn.message is not None and turn.message_step is not None
        annotations = self._file_annotations(turn.text, state)
        if annotations:
            self._message_delta(run, turn.message, [{"index": turn.text_index, "type": "text", "text": {
                "annotations": [dict(a, index=i) for i, a in enumerate(annotations)]}}])
        content = [{"type": "image_file", "image_file": {"file_id": f}} for f in state.images]
        if turn.text:
            content.append(text_block(turn.text, annotations))
        state.images = []
        stamp = now()
        turn.message = Message.model_validate({**turn.message.model_dump(), "content": content, "status": "completed", "completed_at": stamp})
        self.store.save(turn.message)
        self.events.publish(run.id, "thread.message.completed", turn.message)
        step = turn.message_step
        step.status, step.completed_at = "completed", stamp
        if not turn.calls:
            self._step_usage(step, turn.usage)
        self.store.save(step)
        self.events.publish(run.id, "thread.run.step.completed", step)

    @staticmethod
    def _file_annotations(text: str, state: _RunState) -> list[dict[str, Any]]:
        annotations = []
        for match in _FILE_MENTION.finditer(text):
            file_id = state.files.get(match.group(1))
            if file_id:
                annotations.append({"type": "file_path", "text": match.group(0), "start_index": match.start(),
                                    "end_index": match.end(), "file_path": {"file_id": file_id}})
        return annotations

    @staticmethod
    def _step_usage(step: RunStep, usage: Usage | None) -> None:
        if usage is not None:
            step.usage = run_step.Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                                        total_tokens=usage.prompt_tokens + usage.completion_tokens)

    def _on_tool_delta(self, run: Run, turn: _Turn, delta: ToolCallDelta, function_names: set[str]) -> None:
        call = turn.calls.get(delta.index)
        if call is None:
            if delta.name is None and not delta.arguments:
                return  # wait for the name
            name = delta.name or CODE_TOOL["function"]["name"]
            kind = "function" if name in function_names else "code_interpreter"
            call = turn.calls[delta.index] = _ToolCall(id=delta.id or new_id("call"), kind=kind, name=name)
            if kind == "code_interpreter":
                if turn.tool_step is None:
                    if turn.message is not None and turn.message.status == "in_progress":
                        pass  # text before code: the message stays open until the turn ends
                    turn.tool_step = self._new_step(run, {"type": "tool_calls", "tool_calls": []})
                position = self._code_position(turn, call)
                self._step_delta(run, turn.tool_step, [{"index": position, "id": call.id, "type": "code_interpreter",
                                                        "code_interpreter": {"input": "", "outputs": []}}])
        call.arguments += delta.arguments
        if call.kind == "code_interpreter" and turn.tool_step is not None:
            code = partial_code(call.arguments)
            if code.startswith(call.shown) and len(code) > len(call.shown):
                self._step_delta(run, turn.tool_step, [{"index": self._code_position(turn, call), "type": "code_interpreter",
                                                        "code_interpreter": {"input": code[len(call.shown):]}}])
                call.shown = code

    @staticmethod
    def _code_position(turn: _Turn, call: _ToolCall) -> int:
        code_calls = [c for c in turn.calls.values() if c.kind == "code_interpreter"]
        return next(i for i, c in enumerate(code_calls) if c is call)

    def _step_delta(self, run: Run, step: RunStep, tool_calls: list[dict[str, Any]]) -> None:
        self.events.publish(run.id, "thread.run.step.delta", {
            "id": step.id, "object": "thread.run.step.delta",
            "delta": {"step_details": {"type": "tool_calls", "tool_calls": tool_calls}},
        })

    def _fill_tool_step(self, run: Run, turn: _Turn) -> None:
        """Write the finished tool calls into the step (outputs come when they run)."""
        assert turn.tool_step is not None
        calls = []
        for call in turn.calls.values():
            if call.kind == "code_interpreter":
                code = final_code(call.arguments)
                if code.startswith(call.shown) and len(code) > len(call.shown):
                    self._step_delta(run, turn.tool_step, [{"index": self._code_position(turn, call), "type": "code_interpreter",
                                                            "code_interpreter": {"input": code[len(call.shown):]}}])
                call.shown = code
                calls.append({"id": call.id, "type": "code_interpreter", "code_interpreter": {"input": code, "outputs": []}})
        turn.tool_step.step_details = RunStep.model_validate(
            {**turn.tool_step.model_dump(), "step_details": {"type": "tool_calls", "tool_calls": calls}}
        ).step_details
        self._step_usage(turn.tool_step, turn.usage)
        self.store.save(turn.tool_step)

    # -- tools -------------------------------------------------------------------------------

    async def _execute(self, run: Run, turn: _Turn, state: _RunState) -> None:
        step = turn.tool_step
        assert step is not None
        for position, call in enumerate(step.step_details.tool_calls):  # type: ignore[union-attr]
            begin = time.perf_counter()
            result = await self.sandbox.execute(run.thread_id, call.code_interpreter.input, timeout=self.exec_timeout)
            timing = self._timings.get(run.id)
            if timing is not None:
                timing.kernel += time.perf_counter() - begin
            outputs: list[dict[str, Any]] = []
            if result.logs:
                outputs.append({"type": "logs", "logs": result.logs})
            for png in result.images:
                file_id = self._new_file(png, f"{call.id}.png")
                state.images.append(file_id)
                outputs.append({"type": "image", "image": {"file_id": file_id}})
            for path in result.files:
                path = Path(path)
                if path.is_file():
                    state.files[path.name] = self._new_file(path.read_bytes(), path.name)
            call.code_interpreter.outputs = [
                type(call.code_interpreter).model_validate({"input": "", "outputs": [o]}).outputs[0] for o in outputs
            ]
            self.store.save(step)
            if outputs:
                self._step_delta(run, step, [{"index": position, "type": "code_interpreter",
                                              "code_interpreter": {"outputs": [dict(o, index=i) for i, o in enumerate(outputs)]}}])
        step.status, step.completed_at = "completed", now()
        self.store.save(step)
        self.events.publish(run.id, "thread.run.step.completed", step)

    async def _wait_for_tool_outputs(self, run: Run, turn: _Turn) -> None:
        calls = [c for c in turn.calls.values() if c.kind == "function"]
        step = self._new_step(run, {"type": "tool_calls", "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments, "output": None}}
            for c in calls]})
        self._step_usage(step, turn.usage)
        self.store.save(step)
        run.required_action = RequiredAction.model_validate({"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls]}})
        future: asyncio.Future = asyncio.get_running_loop().create_future()
        self._tool_outputs[run.id] = future
        self._set_status(run, "requires_action")
        self.events.publish(run.id, "thread.run.requires_action", run)
        self.events.end(run.id)  # a stream ends here; submit_tool_outputs opens the next one
        outputs = {o.get("tool_call_id"): o.get("output", "") for o in await future}
        missing = [c.id for c in calls if c.id not in outputs]
        if missing:
            raise RunFailure(f"Tool outputs were missing for {', '.join(missing)}; submit one output per tool call.")
        for call in step.step_details.tool_calls:  # type: ignore[union-attr]
            call.function.output = outputs[call.id]
        step.status, step.completed_at = "completed", now()
        self.store.save(step)
        run.required_action = None
        self._set_status(run, "in_progress")
        self.events.publish(run.id, "thread.run.queued", run)
        self.events.publish(run.id, "thread.run.in_progress", run)
        self.events.publish(run.id, "thread.run.step.completed", step)
