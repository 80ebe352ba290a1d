"""What one run makes of the agent loop's events: run steps, messages and the run's stream events.

Every change is saved to the store first, then published to open streams, so a crash never shows
clients something that was not kept.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from openai.types.beta import Assistant, Thread
from openai.types.beta.threads import Message, Run
from openai.types.beta.threads.run import RequiredAction
from openai.types.beta.threads.run import Usage as RunUsage
from openai.types.beta.threads.runs import RunStep, run_step

from .. import limits
from ..agent import RunFailure, RunIncomplete, ToolCall, Turn
from ..backends.base import CODE_TOOL, ModelRequest, Usage
from ..run_options import chat_response_format, chat_tool_choice, completion_budget, tools_off
from ..search.session import FileSearchFailed, FileSearchSession
from ..search.tool import INSTRUCTIONS as SEARCH_INSTRUCTIONS
from ..search.tool import SEARCH_TOOL
from ..truncation import PromptTooLong, truncate
from ..wire import FILE_MENTION, new_id, now, text_block

if TYPE_CHECKING:
    from .engine import Engine

#: the include[] value that asks for the text of file search results in run steps
SEARCH_CONTENT = "step_details.tool_calls[*].file_search.results[*].content"
#: where a file_search step keeps the model's queries (the Assistants step object has no field for them)
QUERIES_KEY = "file_search_queries"


def without_search_content(step: RunStep) -> RunStep:
    """The step as OpenAI answered it unless include[] asked for results' content: the content left out."""
    details = step.step_details
    if details.type != "tool_calls" or not any(c.type == "file_search" for c in details.tool_calls):
        return step
    copy = step.model_copy(deep=True)
    for call in copy.step_details.tool_calls:  # type: ignore[union-attr]
        if call.type == "file_search":
            for result in call.file_search.results or []:
                result.content = None
    return copy


def search_session(engine: "Engine", run: Run) -> FileSearchSession | None:
    """The run's file searches: its file_search tool over the assistant's and the thread's stores."""
    tool = next((t for t in run.tools if t.type == "file_search"), None)
    if tool is None or getattr(engine, "vector_stores", None) is None:
        return None
    ids: list[str] = []
    for owner in (engine.store.get(Assistant, run.assistant_id), engine.store.get(Thread, run.thread_id)):
        resources = getattr(owner, "tool_resources", None)
        search = getattr(resources, "file_search", None) if resources else None
        ids += list(getattr(search, "vector_store_ids", None) or [])
    if not ids:
        return None
    options = tool.file_search
    ranking = options.ranking_options if options else None
    return FileSearchSession(engine.vector_stores, ids, max_num_results=options.max_num_results if options else None,
                             score_threshold=ranking.score_threshold if ranking else None,
                             ranker=ranking.ranker if ranking else None)


@dataclass
class _TurnParts:
    """The objects one model turn has opened."""

    message: Message | None = None
    message_step: RunStep | None = None
    text_index: int = 0
    tool_step: RunStep | None = None


@dataclass
class _RunState:
    """What a run carries from one turn to the next."""

    images: list[str] = field(default_factory=list)  # file ids not yet shown in a message
    files: dict[str, str] = field(default_factory=dict)  # file name -> file id made by code
    live: dict[str, str] = field(default_factory=dict)  # call id -> logs streamed while it runs


class RunRecorder:
    """The Assistants API's ``Recorder``: one per run being driven."""

    def __init__(self, engine: Engine, run: Run) -> None:
        self.engine, self.run = engine, run
        self.store, self.events = engine.store, engine.events
        self.container = run.thread_id
        self.function_names = {t.function.name for t in run.tools if t.type == "function"}
        self.search = search_session(engine, run)
        self.searches_files = self.search is not None
        self.state = _RunState()
        self.parts = _TurnParts()
        self._question = ""
        self.model_calls = 0

    # -- a model turn ------------------------------------------------------------------------

    def request(self) -> ModelRequest:
        """The next model call, with the run's options applied as OpenAI applied them."""
        self.parts = _TurnParts()
        run = self.run
        first_call, self.model_calls = self.model_calls == 0, self.model_calls + 1
        system: list[dict[str, Any]] = []
        instructions = ((run.instructions or "") + self._file_note() + (SEARCH_INSTRUCTIONS if self.search else "")).strip()
        if instructions:
            system.append({"role": "system", "content": instructions})
        before, own = self.engine.histories.messages(run)
        self._question = next((m["content"] for part in (own, before) for m in reversed(part) if m["role"] == "user"), "") or ""
        tools: list[dict[str, Any]] = []
        if not tools_off(run.tool_choice):
            for tool in run.tools:
                if tool.type == "code_interpreter":
                    tools.append(CODE_TOOL)
                elif tool.type == "function":
                    tools.append({"type": "function", "function": tool.function.model_dump(exclude_none=True)})
                elif tool.type == "file_search" and self.search is not None:
                    tools.append(SEARCH_TOOL)
        strategy = run.truncation_strategy
        try:
            messages = truncate(system + before + own, keep_from=len(system) + len(before), tools=tools,
                                last_messages=strategy.last_messages if strategy and strategy.type == "last_messages" else None,
                                max_tokens=run.max_prompt_tokens)
        except PromptTooLong as exc:
            raise RunIncomplete("max_prompt_tokens", str(exc)) from None
        used = run.usage.completion_tokens if run.usage else 0
        return ModelRequest(
            model=run.model, messages=messages, tools=tools,
            tool_choice=chat_tool_choice(run.tool_choice, first_call=first_call),
            response_format=chat_response_format(run.response_format),
            parallel_tool_calls=None if run.parallel_tool_calls else False,
            temperature=run.temperature, top_p=run.top_p,
            max_completion_tokens=completion_budget(run.max_completion_tokens, used),
        )

    def _file_note(self) -> str:
        workdir = Path(self.engine.sandbox.workdir(self.run.thread_id))
        names = sorted(p.name for p in workdir.iterdir() if not p.name.startswith("."))
        if not names:
            return ""
        return "\n\nFiles in /mnt/data: " + ", ".join(names)

    def text_delta(self, turn: Turn, text: str) -> None:
        parts, run = self.parts, self.run
        if parts.message is None:
            message_id = new_id("message")
            parts.message_step = self._new_step({"type": "message_creation", "message_creation": {"message_id": message_id}})
            parts.message = Message.model_validate({
                "id": message_id, "object": "thread.message", "created_at": now(),
                "thread_id": run.thread_id, "run_id": run.id, "assistant_id": run.assistant_id,
                "role": "assistant", "status": "in_progress", "content": [], "attachments": [], "metadata": {},
            })
            self.store.add(parts.message, parent=run.thread_id)
            self.events.publish(run.id, "thread.message.created", parts.message)
            self.events.publish(run.id, "thread.message.in_progress", parts.message)
            if self.state.images:
                images = [{"index": i, "type": "image_file", "image_file": {"file_id": f}} for i, f in enumerate(self.state.images)]
                self._message_delta(parts.message, images)
                parts.text_index = len(images)
        if text:
            self._message_delta(parts.message, [{"index": parts.text_index, "type": "text", "text": {"value": text}}])

    def call_started(self, turn: Turn, call: ToolCall) -> None:
        if call.kind != "code_interpreter":
            return  # function calls become a step once the turn has ended
        if self.parts.tool_step is None:
            # text before code: the message stays open until the turn ends
            self.parts.tool_step = self._new_step({"type": "tool_calls", "tool_calls": []})
        self._step_delta(self.parts.tool_step, [{"index": self._code_position(turn, call), "id": call.id,
                                                 "type": "code_interpreter", "code_interpreter": {"input": "", "outputs": []}}])

    def call_delta(self, turn: Turn, call: ToolCall, text: str) -> None:
        if call.kind == "code_interpreter" and self.parts.tool_step is not None:
            self._step_delta(self.parts.tool_step, [{"index": self._code_position(turn, call), "type": "code_interpreter",
                                                     "code_interpreter": {"input": text}}])

    def turn_done(self, turn: Turn) -> None:
        self._add_usage(turn.usage)
        limit = self.run.max_completion_tokens
        spent = limit is not None and self.run.usage is not None and self.run.usage.completion_tokens >= limit
        if self.parts.message is None and not turn.calls and self.state.images:
            self.text_delta(turn, "")  # show images made by the last code, with no text
        if self.parts.message is not None:
            self._complete_message(turn, cut=spent)
        if self.parts.tool_step is not None:
            self._fill_tool_step(turn)
        self.store.save(self.run)
        if spent:
            raise RunIncomplete("max_completion_tokens", f"The run used its max_completion_tokens ({limit}).")

    def _new_step(self, details: dict[str, Any]) -> RunStep:
        run = self.run
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

    def _message_delta(self, message: Message, content: list[dict[str, Any]]) -> None:
        self.events.publish(self.run.id, "thread.message.delta",
                            {"id": message.id, "object": "thread.message.delta", "delta": {"content": content}})

    def _complete_message(self, turn: Turn, *, cut: bool = False) -> None:
        """The turn's message as it ended: completed, or incomplete when the token budget cut it off."""
        parts, state = self.parts, self.state
        assert parts.message is not None and parts.message_step is not None
        annotations = self._file_annotations(turn.text)
        if self.search is not None:
            annotations = sorted(annotations + self.search.citations(turn.text), key=lambda a: a["start_index"])
        if annotations:
            self._message_delta(parts.message, [{"index": parts.text_index, "type": "text", "text": {
                "annotations": [dict(a, index=i) for i, a in enumerate(annotations)]}}])
        content = [{"type": "image_file", "image_file": {"file_id": f}} for f in state.images]
        if turn.text:
            content.append(text_block(turn.text, annotations))
        state.images = []
        stamp = now()
        ending = ({"status": "incomplete", "incomplete_at": stamp, "incomplete_details": {"reason": "max_tokens"}} if cut
                  else {"status": "completed", "completed_at": stamp})
        parts.message = Message.model_validate({**parts.message.model_dump(), "content": content, **ending})
        self.store.save(parts.message)
        self.events.publish(self.run.id, f"thread.message.{parts.message.status}", parts.message)
        step = parts.message_step
        step.status, step.completed_at = "completed", stamp
        if not turn.calls:
            self._step_usage(step, turn.usage)
        self.store.save(step)
        self.events.publish(self.run.id, "thread.run.step.completed", step)

    def _file_annotations(self, text: str) -> list[dict[str, Any]]:
        annotations = []
        for match in FILE_MENTION.finditer(text):
            file_id = self.state.files.get(match.group(1))
            if file_id:
                annotations.append({"type": "file_path", "text": match.group(0), "start_index": match.start(),
                                    "end_index": match.end(), "file_path": {"file_id": file_id}})
        return annotations

    @staticmethod
    def _step_usage(step: RunStep, usage: Usage | None) -> None:
        if usage is not None:
            step.usage = run_step.Usage(prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
                                        total_tokens=usage.prompt_tokens + usage.completion_tokens)

    def _add_usage(self, usage: Usage | None) -> None:
        if usage is None:
            return
        run = self.run
        before = run.usage.model_dump() if run.usage else {"prompt_tokens": 0, "completion_tokens": 0}
        prompt = before["prompt_tokens"] + usage.prompt_tokens
        completion = before["completion_tokens"] + usage.completion_tokens
        run.usage = RunUsage(prompt_tokens=prompt, completion_tokens=completion, total_tokens=prompt + completion)

    @staticmethod
    def _code_position(turn: Turn, call: ToolCall) -> int:
        return next(i for i, c in enumerate(turn.code_calls) if c is call)

    def _step_delta(self, step: RunStep, tool_calls: list[dict[str, Any]]) -> None:
        self.events.publish(self.run.id, "thread.run.step.delta", {
            "id": step.id, "object": "thread.run.step.delta",
            "delta": {"step_details": {"type": "tool_calls", "tool_calls": tool_calls}},
        })

    def _fill_tool_step(self, turn: Turn) -> None:
        """Write the finished tool calls into the step (outputs come when they run)."""
        step = self.parts.tool_step
        assert step is not None
        calls = []
        for position, call in enumerate(turn.code_calls):
            rest = call.finish_code()
            if rest:
                self._step_delta(step, [{"index": position, "type": "code_interpreter", "code_interpreter": {"input": rest}}])
            calls.append({"id": call.id, "type": "code_interpreter", "code_interpreter": {"input": call.code, "outputs": []}})
        step.step_details = RunStep.model_validate(
            {**step.model_dump(), "step_details": {"type": "tool_calls", "tool_calls": calls}}
        ).step_details
        self._step_usage(step, turn.usage)
        self.store.save(step)

    # -- tools -------------------------------------------------------------------------------

    # Beyond OpenAI, which sent a code call's outputs only once it had run: the step is announced
    # ``in_progress`` again (with its code) when the code starts, and the logs stream as step
    # deltas while it runs. Each delta carries only new text, so a client that accumulates deltas
    # (the SDKs' stream helpers) ends with exactly the completed step; the final delta then adds
    # what is left of the logs, and the images.

    def execution_started(self, turn: Turn, call: ToolCall) -> None:
        step = self.parts.tool_step
        assert step is not None
        self.events.publish(self.run.id, "thread.run.step.in_progress", step)

    def execution_output(self, turn: Turn, call: ToolCall, logs: str) -> None:
        step = self.parts.tool_step
        assert step is not None
        sent = self.state.live.get(call.id, "")
        if not logs.startswith(sent) or len(logs) == len(sent):
            return
        self.state.live[call.id] = logs
        position = self._code_position(turn, call)
        stored = step.step_details.tool_calls[position].code_interpreter  # type: ignore[union-attr]
        stored.outputs = [type(stored).model_validate({"input": "", "outputs": [{"type": "logs", "logs": logs}]}).outputs[0]]
        self.store.save(step)  # a stopped step keeps what it printed
        self._step_delta(step, [{"index": position, "type": "code_interpreter",
                                 "code_interpreter": {"outputs": [{"index": 0, "type": "logs", "logs": logs[len(sent):]}]}}])

    def execution_done(self, turn: Turn, call: ToolCall, result: Any, seconds: float) -> None:
        step = self.parts.tool_step
        assert step is not None
        timing = self.engine.timing(self.run.id)
        if timing is not None:
            timing.kernel += seconds
        position = self._code_position(turn, call)
        sent = self.state.live.pop(call.id, "")
        outputs: list[dict[str, Any]] = []
        if result.logs:
            outputs.append({"type": "logs", "logs": result.logs})
        for png in result.images:
            file_id = self.engine.new_file(png, f"{call.id}.png")
            self.state.images.append(file_id)
            outputs.append({"type": "image", "image": {"file_id": file_id}})
        for path in result.files:
            data = limits.read_regular(Path(path))
            if data is not None:
                self.state.files[Path(path).name] = self.engine.new_file(data, Path(path).name)
        stored = step.step_details.tool_calls[position].code_interpreter  # type: ignore[union-attr]
        stored.outputs = [type(stored).model_validate({"input": "", "outputs": [o]}).outputs[0] for o in outputs]
        self.store.save(step)
        news = [dict(o, index=i) for i, o in enumerate(outputs)]
        if sent and news and news[0]["type"] == "logs":
            rest = news[0]["logs"][len(sent):] if news[0]["logs"].startswith(sent) else ""
            news = ([dict(news[0], logs=rest)] if rest else []) + news[1:]
        if news:
            self._step_delta(step, [{"index": position, "type": "code_interpreter", "code_interpreter": {"outputs": news}}])

    def executions_done(self, turn: Turn) -> None:
        step = self.parts.tool_step
        assert step is not None
        step.status, step.completed_at = "completed", now()
        self.store.save(step)
        self.events.publish(self.run.id, "thread.run.step.completed", step)

    async def file_search(self, turn: Turn, call: ToolCall) -> None:
        """A ``file_search`` tool_calls step: the search, its ranking options and its results."""
        assert self.search is not None
        step = self._new_step({"type": "tool_calls", "tool_calls": [
            {"id": call.id, "type": "file_search", "file_search": {"ranking_options": self.search.ranking_options,
                                                                    "results": []}}]})
        try:
            queries, sources = await self.search.search(call.arguments, fallback=self._question)
        except FileSearchFailed as exc:
            raise RunFailure(str(exc)) from None
        results = [{"file_id": s.file_id, "file_name": s.filename, "score": s.score,
                    "content": [{"type": "text", "text": s.text}]} for s in sources]
        step = RunStep.model_validate({**step.model_dump(), "status": "completed", "completed_at": now(),
                                       "metadata": {QUERIES_KEY: json.dumps(queries, ensure_ascii=False)[:512]},
                                       "step_details": {"type": "tool_calls", "tool_calls": [
                                           {"id": call.id, "type": "file_search", "file_search": {
                                               "ranking_options": self.search.ranking_options,
                                               "results": results}}]}})
        if not turn.code_calls and call is turn.search_calls[0]:
            self._step_usage(step, turn.usage)
        self.store.save(step)
        shown = step if self.run.id in self.engine.search_content else without_search_content(step)
        self.events.publish(self.run.id, "thread.run.step.completed", shown)

    async def functions_called(self, turn: Turn) -> bool:
        """Pause the run in ``requires_action`` until the client submits the functions' outputs."""
        run, calls = self.run, turn.function_calls
        step = self._new_step({"type": "tool_calls", "tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments, "output": None}}
            for c in calls]})
        self._step_usage(step, turn.usage)
        self.store.save(step)
        run.required_action = RequiredAction.model_validate({"type": "submit_tool_outputs", "submit_tool_outputs": {"tool_calls": [
            {"id": c.id, "type": "function", "function": {"name": c.name, "arguments": c.arguments}} for c in calls]}})
        future: asyncio.Future = self.engine.expect_tool_outputs(run.id)
        self.engine.set_status(run, "requires_action")
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
        self.engine.set_status(run, "in_progress")
        self.events.publish(run.id, "thread.run.queued", run)
        self.events.publish(run.id, "thread.run.in_progress", run)
        self.events.publish(run.id, "thread.run.step.completed", step)
        return True

