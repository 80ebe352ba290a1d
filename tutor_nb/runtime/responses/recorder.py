"""What one response makes of the agent loop's events: output items and the Responses stream events.

Events are built as the SDK's own event types (``ResponseStreamEvent``) and numbered in order, in the
order ``client.responses.stream()`` accumulates them: an item is added before its deltas, a message's
content part before its text, and every item is done before ``response.completed``.
"""

from __future__ import annotations

import base64
import copy
import typing
from typing import TYPE_CHECKING, Any

from openai.types.responses import ResponseStreamEvent

from ..agent import RunFailure, RunIncomplete, ToolCall, Turn
from ..backends.base import CODE_TOOL, ModelRequest, Usage
from ..run_options import chat_response_format, chat_tool_choice, completion_budget, tools_off
from ..search.session import FileSearchFailed
from ..search.tool import INSTRUCTIONS as SEARCH_INSTRUCTIONS
from ..search.tool import SEARCH_TOOL, settled
from ..wire import FILE_MENTION, new_id
from .items import chat_messages
from .stream import EventLog

if TYPE_CHECKING:
    from .service import Job

#: each stream event's own SDK class by its type (checking one class costs a thirtieth of the whole union)
_EVENTS: dict[str, type] = {
    member.model_fields["type"].annotation.__args__[0]: member
    for member in typing.get_args(typing.get_args(ResponseStreamEvent)[0])
}
INCLUDE_OUTPUTS = "code_interpreter_call.outputs"
#: tutor_nb's own event: a running code call's new logs (OpenAI has none)
LOGS_DELTA = "response.code_interpreter_call.logs.delta"
INCLUDE_RESULTS = "file_search_call.results"


def shown(item: dict[str, Any], include: list[str] | tuple = ()) -> dict[str, Any]:
    """An output item as a client sees it: a code call's outputs and a search's results only when
    ``include`` asks for them."""
    if item.get("type") == "code_interpreter_call" and INCLUDE_OUTPUTS not in include:
        return {**item, "outputs": None}
    if item.get("type") == "file_search_call" and INCLUDE_RESULTS not in include:
        return {**item, "results": None}
    return item


class ResponseRecorder:
    """The Responses API's ``Recorder``: one per response being generated."""

    def __init__(self, job: Job, log: EventLog) -> None:
        self.job, self.log = job, log
        self.container = job.container_id or ""
        self.function_names = {t["name"] for t in job.function_tools}
        self.search = job.search
        self.searches_files = job.search is not None
        self._sent = ""  # the message's text streamed so far (citation markers taken out)
        self.output: list[dict[str, Any]] = []  # full items (code outputs included), in output order
        self.usage: Usage | None = None
        self.code_calls = 0
        self.model_calls = 0
        self._message: dict[str, Any] | None = None  # the message item being written
        self._text = ""  # its text so far
        self._items: dict[str, tuple[int, dict[str, Any]]] = {}  # tool call id -> (output index, item)
        self._files: dict[str, str] = {}  # file name -> container file id, for citations
        self._live: dict[str, str] = {}  # tool call id -> logs streamed while it runs

    # -- events ------------------------------------------------------------------------------

    def emit(self, kind: str, **fields: Any) -> None:
        event = {"type": kind, "sequence_number": len(self.log), **fields}
        _EVENTS[kind].model_validate(event)  # the SDK's own event types: what is sent is what it parses
        self.log.append(event)

    def _added(self, item: dict[str, Any]) -> int:
        self.output.append(item)
        index = len(self.output) - 1
        self.emit("response.output_item.added", output_index=index, item=shown(item, self.job.include))
        return index

    def _done(self, index: int, item: dict[str, Any]) -> None:
        self.emit("response.output_item.done", output_index=index, item=shown(item, self.job.include))

    # -- a model turn ------------------------------------------------------------------------

    def request(self) -> ModelRequest:
        job = self.job
        system = (job.instructions or "") + self._file_note() + (SEARCH_INSTRUCTIONS if self.search else "")
        messages = [{"role": "system", "content": system.strip()}] if system.strip() else []
        messages += chat_messages([*job.history, *self.output])
        tools: list[dict[str, Any]] = []
        if not tools_off(job.tool_choice):
            if job.container_id and (job.max_tool_calls is None or self.code_calls < job.max_tool_calls):
                tools.append(CODE_TOOL)
            tools += [{"type": "function", "function": {k: t[k] for k in ("name", "description", "parameters", "strict")
                                                        if t.get(k) is not None}} for t in job.function_tools]
            if self.search is not None:
                tools.append(SEARCH_TOOL)
        first_call, self.model_calls = self.model_calls == 0, self.model_calls + 1
        return ModelRequest(model=job.model, messages=messages, tools=tools,
                            tool_choice=chat_tool_choice(job.tool_choice, first_call=first_call),
                            response_format=chat_response_format(job.text.format if job.text else None),
                            parallel_tool_calls=None if job.parallel_tool_calls else False,
                            temperature=job.temperature, top_p=job.top_p,
                            max_completion_tokens=completion_budget(
                                job.max_output_tokens, self.usage.completion_tokens if self.usage else 0))

    def _file_note(self) -> str:
        if not self.job.container_id:
            return ""
        folder = self.job.containers.workdir(self.job.container_id)
        names = sorted(p.name for p in folder.iterdir() if not p.name.startswith(".")) if folder.exists() else []
        return "\n\nFiles in /mnt/data: " + ", ".join(names) if names else ""

    def text_delta(self, turn: Turn, text: str) -> None:
        if self._message is None:
            self._message = {"id": new_id("message"), "type": "message", "role": "assistant", "status": "in_progress",
                             "content": []}
            index = self._added(self._message)
            self.emit("response.content_part.added", item_id=self._message["id"], output_index=index, content_index=0,
                      part={"type": "output_text", "text": "", "annotations": [], "logprobs": []})
            self._text = self._sent = ""
        self._text += text
        self._stream_text(self._visible(settled(self._text)))

    def _visible(self, text: str) -> str:
        """The answer as the client gets it: file search markers out (they become annotations)."""
        return self.search.without_markers(text)[0] if self.search is not None else text

    def _stream_text(self, visible: str) -> None:
        assert self._message is not None
        if len(visible) > len(self._sent) and visible.startswith(self._sent):
            self.emit("response.output_text.delta", item_id=self._message["id"],
                      output_index=self._index(self._message), content_index=0, delta=visible[len(self._sent):],
                      logprobs=[])
            self._sent = visible

    def _index(self, item: dict[str, Any]) -> int:
        return next(i for i, o in enumerate(self.output) if o is item)

    def _finish_message(self, status: str = "completed") -> None:
        message = self._message
        if message is None:
            return
        text = self._visible(self._text)
        self._stream_text(text)  # what was held back (a trailing space, a marker not closed)
        self._message = None
        index = self._index(message)
        annotations = self._citations(text)
        if self.search is not None:
            found = self.search.without_markers(self._text)[1]
            annotations = sorted(annotations + found, key=lambda a: a.get("index", a.get("start_index", 0)))
        self.emit("response.output_text.done", item_id=message["id"], output_index=index, content_index=0, text=text,
                  logprobs=[])
        for number, annotation in enumerate(annotations):
            self.emit("response.output_text.annotation.added", item_id=message["id"], output_index=index,
                      content_index=0, annotation_index=number, annotation=annotation)
        part = {"type": "output_text", "text": text, "annotations": annotations, "logprobs": []}
        self.emit("response.content_part.done", item_id=message["id"], output_index=index, content_index=0, part=part)
        message.update(content=[part], status=status)
        self._done(index, message)

    def _citations(self, text: str) -> list[dict[str, Any]]:
        """A container_file_citation for each file the code wrote that the answer names."""
        out = []
        for match in FILE_MENTION.finditer(text):
            file_id = self._files.get(match.group(1))
            if file_id:
                out.append({"type": "container_file_citation", "container_id": self.container, "file_id": file_id,
                            "filename": match.group(1), "start_index": match.start(), "end_index": match.end()})
        return out

    def call_started(self, turn: Turn, call: ToolCall) -> None:
        self._finish_message()  # text before a tool call ends there
        if call.kind == "code_interpreter":
            item = {"id": new_id("code call"), "type": "code_interpreter_call", "status": "in_progress", "code": "",
                    "container_id": self.container, "outputs": None}
            index = self._added(item)
            self.emit("response.code_interpreter_call.in_progress", item_id=item["id"], output_index=index)
        elif call.kind == "file_search":
            item = {"id": new_id("file search call"), "type": "file_search_call", "status": "in_progress",
                    "queries": [], "results": None}
            index = self._added(item)
            self.emit("response.file_search_call.in_progress", item_id=item["id"], output_index=index)
        else:
            item = {"id": new_id("function call"), "type": "function_call", "call_id": call.id, "name": call.name,
                    "arguments": "", "status": "in_progress"}
            index = self._added(item)
        self._items[call.id] = (index, item)

    def call_delta(self, turn: Turn, call: ToolCall, text: str) -> None:
        index, item = self._items[call.id]
        if call.kind == "file_search":
            return  # its queries are read whole when it runs
        if call.kind == "code_interpreter":
            item["code"] += text
            self.emit("response.code_interpreter_call_code.delta", item_id=item["id"], output_index=index, delta=text)
        else:
            item["arguments"] += text
            self.emit("response.function_call_arguments.delta", item_id=item["id"], output_index=index, delta=text)

    def turn_done(self, turn: Turn) -> None:
        if turn.usage is not None:
            before = self.usage or Usage(0, 0)
            self.usage = Usage(before.prompt_tokens + turn.usage.prompt_tokens,
                               before.completion_tokens + turn.usage.completion_tokens)
        limit = self.job.max_output_tokens
        spent = limit is not None and self.usage is not None and self.usage.completion_tokens >= limit
        self._finish_message("incomplete" if spent else "completed")
        for call in turn.calls.values():
            index, item = self._items[call.id]
            if call.kind == "file_search":
                continue  # it runs, and ends, in file_search()
            if call.kind == "code_interpreter":
                rest = call.finish_code()
                if rest:
                    self.emit("response.code_interpreter_call_code.delta", item_id=item["id"], output_index=index,
                              delta=rest)
                item["code"] = call.code
                self.emit("response.code_interpreter_call_code.done", item_id=item["id"], output_index=index,
                          code=call.code)
            else:
                item.update(arguments=call.arguments or "{}", status="completed")
                self.emit("response.function_call_arguments.done", item_id=item["id"], output_index=index,
                          arguments=item["arguments"], name=call.name)
                self._done(index, item)
        if spent:  # what the model was writing stops here, and no code of this turn runs
            raise RunIncomplete("max_output_tokens", f"The response used its max_output_tokens ({limit}).")

    # -- tools -------------------------------------------------------------------------------

    def execution_started(self, turn: Turn, call: ToolCall) -> None:
        index, item = self._items[call.id]
        item["status"] = "interpreting"
        self.code_calls += 1
        self.emit("response.code_interpreter_call.interpreting", item_id=item["id"], output_index=index)

    def execution_output(self, turn: Turn, call: ToolCall, logs: str) -> None:
        """Beyond OpenAI (which sent code outputs only in the finished item): the new logs of a
        running call as ``response.code_interpreter_call.logs.delta``, when the request included
        the outputs. The SDKs' stream helpers skip event types they do not know."""
        if INCLUDE_OUTPUTS not in self.job.include:
            return
        index, item = self._items[call.id]
        sent = self._live.get(call.id, "")
        if not logs.startswith(sent) or len(logs) == len(sent):
            return
        self._live[call.id] = logs
        self.log.append({"type": LOGS_DELTA, "sequence_number": len(self.log), "item_id": item["id"],
                         "output_index": index, "delta": logs[len(sent):]})

    def execution_done(self, turn: Turn, call: ToolCall, result: Any, seconds: float) -> None:
        self._live.pop(call.id, None)
        index, item = self._items[call.id]
        containers = self.job.containers
        for entry in containers.record(self.container, result.files):
            self._files[entry.path.rsplit("/", 1)[-1]] = entry.id
        container = containers.get(self.container)
        if container is not None:
            containers.touch(container)
        outputs: list[dict[str, Any]] = [{"type": "logs", "logs": result.logs}] if result.logs else []
        outputs += [{"type": "image", "url": "data:image/png;base64," + base64.b64encode(png).decode()}
                    for png in result.images]
        item.update(outputs=outputs, status="completed" if result.status in ("ok", "error") else "incomplete")
        self.emit("response.code_interpreter_call.completed", item_id=item["id"], output_index=index)
        self._done(index, item)

    def executions_done(self, turn: Turn) -> None:
        pass

    async def functions_called(self, turn: Turn) -> bool:
        return False  # the response ends with its function_call items; the next request sends their outputs

    async def file_search(self, turn: Turn, call: ToolCall) -> None:
        """A ``file_search_call`` item: its queries, then its results."""
        assert self.search is not None
        index, item = self._items[call.id]
        item["status"] = "searching"
        self.emit("response.file_search_call.searching", item_id=item["id"], output_index=index)
        try:
            queries, sources = await self.search.search(call.arguments)
        except FileSearchFailed as exc:
            item["status"] = "failed"
            self._done(index, item)
            raise RunFailure(str(exc)) from None
        item.update(queries=queries, status="completed", results=[
            {"file_id": s.file_id, "filename": s.filename, "score": s.score, "text": s.text, "attributes": s.attributes}
            for s in sources])
        self.emit("response.file_search_call.completed", item_id=item["id"], output_index=index)
        self._done(index, item)

    # -- the end -----------------------------------------------------------------------------

    def stop(self, status: str) -> None:
        """End the items still open (the response was cancelled or failed)."""
        if self._message is not None:
            self._message["content"] = [{"type": "output_text", "text": self._visible(self._text), "annotations": []}]
            self._message = None
        for item in self.output:
            if item.get("status") in ("in_progress", "interpreting", "searching"):
                item["status"] = "incomplete"
        for call_id, logs in self._live.items():  # a stopped call keeps what it printed
            self._items[call_id][1]["outputs"] = [{"type": "logs", "logs": logs}]

    def items(self) -> list[dict[str, Any]]:
        """The full output items, for storing; while a message is being written, its text so far."""
        items = copy.deepcopy(self.output)
        if self._message is not None:
            items[self._index(self._message)]["content"] = [{"type": "output_text", "text": self._text, "annotations": []}]
        return items
