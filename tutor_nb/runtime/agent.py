"""The agent loop both APIs run: a model turn, its tool calls, their executions, the next model turn.

The loop knows nothing of runs, steps, messages or responses. It asks a ``Recorder`` for each model
request and tells it what happens (text and code as they stream, executions and their results,
function calls that need outputs); the Assistants run engine records that as runs, steps and
messages, the Responses API as output items. Cancelling the task running ``AgentLoop.run`` stops it
wherever it is; the recorder's owner turns that into a cancelled run or response.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from dataclasses import dataclass, field
from typing import Any, Iterable, Protocol

from .backends.base import CODE_TOOL, ModelBackend, ModelRequest, TextDelta, ToolCallDelta, Usage
from .search.tool import SEARCH_TOOL_NAME
from .toolargs import final_code, partial_code
from .wire import new_id

CODE_TOOL_NAME: str = CODE_TOOL["function"]["name"]


async def cancel_all(tasks: Iterable[asyncio.Task]) -> None:
    """Cancel the tasks driving loops and wait until each has recorded how it ended."""
    tasks = list(tasks)
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


class RunFailure(Exception):
    """Ends a run (or response) as ``failed`` with this message as its error."""

    def __init__(self, message: str, code: str = "server_error") -> None:
        super().__init__(message)
        self.message, self.code = message, code


class RunIncomplete(Exception):
    """Ends a run (or response) as ``incomplete``: a token budget ran out; ``reason`` names which."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason, self.message = reason, message


@dataclass
class ToolCall:
    """One tool call of a model turn, as its arguments stream in."""

    id: str
    kind: str  # "code_interpreter", "function" or "file_search"
    name: str
    arguments: str = ""
    shown: str = ""  # code already reported through Recorder.call_delta
    code: str = ""  # the final code, once the turn has ended

    def finish_code(self) -> str:
        """Settle the final code; returns the part of it not reported yet (empty the second time)."""
        code = final_code(self.arguments)
        rest = code[len(self.shown):] if code.startswith(self.shown) and len(code) > len(self.shown) else ""
        self.shown = self.code = code
        return rest


@dataclass
class Turn:
    """What one model call produced."""

    text: str = ""
    calls: dict[int, ToolCall] = field(default_factory=dict)  # by the model's tool call index
    usage: Usage | None = None

    @property
    def code_calls(self) -> list[ToolCall]:
        return [c for c in self.calls.values() if c.kind == "code_interpreter"]

    @property
    def function_calls(self) -> list[ToolCall]:
        return [c for c in self.calls.values() if c.kind == "function"]

    @property
    def search_calls(self) -> list[ToolCall]:
        return [c for c in self.calls.values() if c.kind == "file_search"]


class Recorder(Protocol):
    """What one API makes of a loop's events. Methods are called in the order the events happen."""

    container: str  # the sandbox key the code runs under (a thread, or a container)
    function_names: set[str]  # tool names that are the client's functions, not the code interpreter
    searches_files: bool  # whether the model was offered file_search (its calls go to file_search())

    def request(self) -> ModelRequest:
        """The next model call (a new turn begins)."""

    def text_delta(self, turn: Turn, text: str) -> None:
        """The model wrote text (already appended to ``turn.text``)."""

    def call_started(self, turn: Turn, call: ToolCall) -> None:
        """The model began a tool call."""

    def call_delta(self, turn: Turn, call: ToolCall, text: str) -> None:
        """More of a call: code for a code call, raw JSON arguments for a function call."""

    def turn_done(self, turn: Turn) -> None:
        """The model call ended; ``call.finish_code()`` gives each code call's final code and last piece."""

    def execution_started(self, turn: Turn, call: ToolCall) -> None:
        """A code call is about to run in the sandbox."""

    def execution_output(self, turn: Turn, call: ToolCall, logs: str) -> None:
        """Optional: the logs so far of a code call still running (a recorder without it gets none)."""

    def execution_done(self, turn: Turn, call: ToolCall, result: Any, seconds: float) -> None:
        """A code call ran; ``result`` is the sandbox's ``Execution``."""

    def executions_done(self, turn: Turn) -> None:
        """Every code call of the turn has run."""

    async def functions_called(self, turn: Turn) -> bool:
        """The turn called the client's functions: True once their outputs are in (go on), False to stop."""

    async def file_search(self, turn: Turn, call: ToolCall) -> None:
        """Run one file_search call of the turn and record it, results included."""


class AgentLoop:
    """Drives model turns and tool executions for one recorder at a time (many may run at once)."""

    def __init__(self, backend: ModelBackend, sandbox: Any, *, max_model_calls: int = 12,
                 exec_timeout: float | None = None) -> None:
        self.backend, self.sandbox = backend, sandbox
        self.max_model_calls = max_model_calls
        self.exec_timeout = exec_timeout

    async def run(self, recorder: Recorder) -> None:
        """Until the model answers without calling a tool (or the recorder stops at function calls)."""
        for _ in range(self.max_model_calls):
            turn = await self._model_turn(recorder)
            for call in turn.search_calls:
                await recorder.file_search(turn, call)
            if turn.code_calls:
                await self._execute(recorder, turn)
            elif turn.function_calls:
                if not await recorder.functions_called(turn):
                    return
            elif not turn.search_calls:
                return
        raise RunFailure(
            f"The model called tools {self.max_model_calls} times without giving an "
            "answer, so the run was stopped. Try a more specific question."
        )

    async def _model_turn(self, recorder: Recorder) -> Turn:
        turn = Turn()
        stream = self.backend.stream(recorder.request())
        async with contextlib.aclosing(stream):  # type: ignore[type-var]
            async for event in stream:
                if isinstance(event, TextDelta) and event.text:
                    turn.text += event.text
                    recorder.text_delta(turn, event.text)
                elif isinstance(event, ToolCallDelta):
                    self._on_tool_delta(recorder, turn, event)
                elif isinstance(event, Usage):
                    turn.usage = event
        recorder.turn_done(turn)
        for call in turn.code_calls:
            call.finish_code()  # in case the recorder did not
        return turn

    @staticmethod
    def _on_tool_delta(recorder: Recorder, turn: Turn, delta: ToolCallDelta) -> None:
        call = turn.calls.get(delta.index)
        if call is None:
            if delta.name is None and not delta.arguments:
                return  # wait for the name
            name = delta.name or CODE_TOOL_NAME
            kind = ("function" if name in recorder.function_names
                    else "file_search" if name == SEARCH_TOOL_NAME and getattr(recorder, "searches_files", False)
                    else "code_interpreter")
            call = turn.calls[delta.index] = ToolCall(id=delta.id or new_id("call"), kind=kind, name=name)
            recorder.call_started(turn, call)
        call.arguments += delta.arguments
        if call.kind == "code_interpreter":
            code = partial_code(call.arguments)
            if code.startswith(call.shown) and len(code) > len(call.shown):
                new, call.shown = code[len(call.shown):], code
                recorder.call_delta(turn, call, new)
        elif delta.arguments:
            recorder.call_delta(turn, call, delta.arguments)

    async def _execute(self, recorder: Recorder, turn: Turn) -> None:
        live = getattr(recorder, "execution_output", None)  # optional: not every recorder streams logs
        for call in turn.code_calls:
            recorder.execution_started(turn, call)
            begin = time.perf_counter()
            options: dict[str, Any] = {"timeout": self.exec_timeout}
            if live is not None:
                options["on_output"] = lambda logs, call=call: live(turn, call, logs)
            result = await self.sandbox.execute(recorder.container, call.code, **options)
            recorder.execution_done(turn, call, result, time.perf_counter() - begin)
        recorder.executions_done(turn)
