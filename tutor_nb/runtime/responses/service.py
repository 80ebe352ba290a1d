"""The Responses engine: each response is the agent loop recorded as output items and stream events.

A response reads its history from the chain of ``previous_response_id`` (their input and output
items) or from its ``conversation``; code runs in its container (a given one, or an ``auto`` one the
chain or conversation already uses, so variables carry over). Plain requests wait for the end,
streamed ones follow the event log, background ones return at once and can be polled, resumed
(``starting_after``) and cancelled.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

from openai.types.responses import Response

from ...errors import ModelBackendError
from ..agent import AgentLoop, RunFailure, RunIncomplete, cancel_all
from ..containers import ContainerError, Containers
from ..http.answer import public
from ..http.errors import APIError
from ..store import Store
from ..wire import new_id, now
from .conversations import Conversations
from ..search.session import FileSearchSession
from ..search.stores import VectorStoreError, VectorStores
from .items import input_items, search_sources
from .lists import ItemLists
from .recorder import ResponseRecorder, shown
from .stream import EventLog

log = logging.getLogger("tutor_nb.runtime")

LOGS_KEPT = 200  # responses whose stream events are kept in memory for resuming
HISTORIES_KEPT = 500  # settled responses whose items are kept in memory for chains
TOOL_TYPES = ("code_interpreter", "function", "file_search")


@dataclass
class Job:
    """One response being generated, with its request's settings resolved."""

    response: Response
    containers: Containers
    history: list[dict[str, Any]]  # items before this response's output (its own input last)
    inputs: list[dict[str, Any]]
    function_tools: list[dict[str, Any]]
    container_id: str | None
    include: list[str] = field(default_factory=list)
    stored: bool = True
    conversation_id: str | None = None
    search: FileSearchSession | None = None
    recorder: ResponseRecorder | None = None

    def __getattr__(self, name: str) -> Any:  # model, instructions, temperature, ... as the response has them
        return getattr(self.__dict__["response"], name)


class Responses:
    """Owns the tasks of responses being generated. Lives in the server's event loop."""

    def __init__(self, store: Store, loop: AgentLoop, containers: Containers, conversations: Conversations,
                 vector_stores: VectorStores | None = None) -> None:
        self.store, self.loop, self.containers, self.conversations = store, loop, containers, conversations
        self.lists = ItemLists(store)  # each response's input items
        self.vector_stores = vector_stores
        self._jobs: dict[str, Job] = {}
        self._tasks: dict[str, asyncio.Task] = {}
        self._logs: OrderedDict[str, EventLog] = OrderedDict()
        #: settled responses a chain continues from: id -> (its previous_response_id, its input and output items)
        self._settled: OrderedDict[str, tuple[str | None, list[dict[str, Any]]]] = OrderedDict()
        self._closing = False

    # -- lifecycle ---------------------------------------------------------------------------

    def recover(self) -> None:
        """Fail the responses that were being generated when the server last stopped."""
        error = {"code": "server_error", "message": "The tutor_nb runtime stopped while this response was in "
                 "progress, so it was ended. Send the request again."}
        for response in self.store.with_status(Response, ("queued", "in_progress")):
            self.store.save(Response.model_validate({**response.model_dump(by_alias=True), "status": "failed",
                                                     "error": error}))

    async def close(self) -> None:
        self._closing = True
        await cancel_all(self._tasks.values())

    # -- reading -----------------------------------------------------------------------------

    def get(self, response_id: str) -> Response | None:
        """The response as it is now: while it is generated, with the output items so far."""
        job = self._jobs.get(response_id)
        if job is None:
            return self.store.get(Response, response_id)
        if job.recorder is None or not job.recorder.output or job.response.status not in ("queued", "in_progress"):
            return job.response
        return Response.model_validate({**job.response.model_dump(by_alias=True), "output": job.recorder.items()})

    def events(self, response_id: str) -> EventLog | None:
        return self._logs.get(response_id)

    def input_items(self, response_id: str, **paging: Any) -> dict[str, Any]:
        return self.lists.page(response_id, **paging)

    @staticmethod
    def wire(response: Response, include: list[str] | tuple = ()) -> dict[str, Any]:
        """The response as a client sees it (code outputs only when ``include`` asks for them)."""
        data = response.model_dump(mode="json", by_alias=True)
        data["output"] = [shown(item, include) for item in data["output"]]
        return public(data)

    # -- writing -----------------------------------------------------------------------------

    def start(self, p: dict[str, Any]) -> Job:
        """Check the request, store the response and its input, and start generating it."""
        if not p.get("model"):
            raise APIError(400, "Missing required parameter: 'model'.", param="model", code="missing_required_parameter")
        if p.get("background") and p.get("store") is False:
            raise APIError(400, "A background response must be stored: drop store=false.", param="background")
        history, conversation_id = self._history(p)
        if p.get("input") in (None, "", []) and not history:
            raise APIError(400, "Missing required parameter: 'input'.", param="input", code="missing_required_parameter")
        inputs = [self._resolved(item, history) for item in input_items(p.get("input") or [])]
        self.lists.check("the request's input", inputs)
        if conversation_id:
            self.conversations.lists.check(conversation_id, inputs)
        tools = p.get("tools") or []
        for tool in tools:
            if tool.get("type") not in TOOL_TYPES:
                raise APIError(400, f"The tool type {tool.get('type')!r} is not served by tutor_nb; use "
                               "code_interpreter, file_search or function tools.", param="tools", code="invalid_value")
        functions = [t for t in tools if t["type"] == "function"]
        code_tool = next((t for t in tools if t["type"] == "code_interpreter"), None)
        self._check_tool_choice(p.get("tool_choice"), functions, code_tool)
        container_id = self._container(code_tool, history) if code_tool is not None else None
        response = Response.model_validate({
            "id": new_id("response"), "object": "response", "created_at": now(), "model": p["model"],
            "status": "queued" if p.get("background") else "in_progress", "output": [],
            "instructions": p.get("instructions"), "metadata": p.get("metadata") or {},
            "tools": tools, "tool_choice": p.get("tool_choice") or "auto",
            "parallel_tool_calls": p.get("parallel_tool_calls") is not False,  # null: the default
            "temperature": p.get("temperature", 1.0), "top_p": p.get("top_p", 1.0),
            "max_output_tokens": p.get("max_output_tokens"), "max_tool_calls": p.get("max_tool_calls"),
            "previous_response_id": p.get("previous_response_id"), "background": bool(p.get("background")),
            "text": p.get("text") or {"format": {"type": "text"}}, "truncation": p.get("truncation") or "disabled",
            "conversation": {"id": conversation_id} if conversation_id else None, "error": None,
            "incomplete_details": None, "usage": None,
        })
        search_tool = next((t for t in tools if t["type"] == "file_search"), None)
        job = Job(response=response, containers=self.containers, history=[*history, *inputs], inputs=inputs,
                  function_tools=functions, container_id=container_id, include=list(p.get("include") or []),
                  stored=p.get("store", True) is not False, conversation_id=conversation_id,
                  search=self._search(search_tool, history) if search_tool is not None else None)
        if job.stored:
            self.store.add(response)
            self.lists.add(response.id, inputs)
        if conversation_id:
            self.conversations.add(conversation_id, inputs)
        events = self._logs[response.id] = EventLog()
        while len(self._logs) > LOGS_KEPT:
            self._logs.popitem(last=False)
        self._jobs[response.id] = job
        job.recorder = ResponseRecorder(job, events)
        self._tasks[response.id] = asyncio.create_task(self._drive(job, job.recorder), name=f"response {response.id}")
        return job

    async def wait(self, response_id: str) -> Response:
        """The response once it has ended."""
        job, task = self._jobs.get(response_id), self._tasks.get(response_id)
        if task is not None:
            await asyncio.shield(task)
        response = job.response if job is not None else self.get(response_id)  # store=false: only the job has it
        assert response is not None
        return response

    async def cancel(self, response_id: str) -> Response | None:
        """Stop a background response; it ends as ``cancelled``."""
        task = self._tasks.get(response_id)
        if task is not None:
            task.cancel()
            await asyncio.gather(task, return_exceptions=True)
        return self.get(response_id)

    def delete(self, response_id: str) -> None:
        task = self._tasks.get(response_id)
        if task is not None:
            task.cancel()
        self._logs.pop(response_id, None)
        self._settled.pop(response_id, None)
        self.store.delete(response_id)

    # -- the request's parts -----------------------------------------------------------------

    def _history(self, p: dict[str, Any]) -> tuple[list[dict[str, Any]], str | None]:
        """The items the response continues from, and the conversation it belongs to."""
        previous_id, conversation = p.get("previous_response_id"), p.get("conversation")
        if previous_id and conversation:
            raise APIError(400, "Use either previous_response_id or conversation, not both.", param="conversation")
        if conversation:
            conversation_id = conversation if isinstance(conversation, str) else conversation.get("id", "")
            if self.conversations.get(conversation_id) is None:
                raise APIError(404, f"No conversation found with id '{conversation_id}'.", param="conversation",
                               code="not_found")
            return self.conversations.items(conversation_id), conversation_id
        chain: list[list[dict[str, Any]]] = []
        while previous_id:
            previous_id, items = self._settled_items(previous_id)
            chain.append(items)
        return [item for items in reversed(chain) for item in items], None

    def _settled_items(self, response_id: str) -> tuple[str | None, list[dict[str, Any]]]:
        """A response a new one continues from: its previous_response_id, and its input and output items.

        Kept once read (a chain's turns would otherwise be re-read and re-validated at every turn)."""
        kept = self._settled.get(response_id)
        if kept is not None:
            self._settled.move_to_end(response_id)
            return kept
        previous = self.get(response_id)
        if previous is None:
            raise APIError(404, f"Previous response with id '{response_id}' not found. It may have been deleted, "
                           "or created with store=false.", param="previous_response_id", code="not_found")
        if previous.status in ("queued", "in_progress"):
            raise APIError(400, f"Previous response {response_id} is still {previous.status}; wait for it to "
                           "end before continuing from it.", param="previous_response_id")
        items = list(self.lists.all(response_id))
        items += [item.model_dump(mode="json", by_alias=True) for item in previous.output]
        kept = self._settled[response_id] = (previous.previous_response_id, items)
        while len(self._settled) > HISTORIES_KEPT:
            self._settled.popitem(last=False)
        return kept

    @staticmethod
    def _resolved(item: dict[str, Any], history: list[dict[str, Any]]) -> dict[str, Any]:
        """An item_reference as the item it names, from the chain or conversation the response continues."""
        if item["type"] != "item_reference":
            return item
        found = next((known for known in reversed(history) if known.get("id") == item["id"]), None)
        if found is None:
            raise APIError(404, f"No item found with id '{item['id']}' to reference in this response's history "
                           "(its previous_response_id chain or conversation).", param="input", code="not_found")
        return found

    @staticmethod
    def _check_tool_choice(choice: Any, functions: list[dict[str, Any]], code_tool: Any) -> None:
        if not isinstance(choice, dict):
            return
        if choice.get("type") == "function" and choice.get("name") not in {f["name"] for f in functions}:
            raise APIError(400, f"tool_choice names the function {choice.get('name')!r}, which is not among the "
                           "request's tools.", param="tool_choice", code="invalid_value")
        if choice.get("type") == "code_interpreter" and code_tool is None:
            raise APIError(400, "tool_choice asks for the code interpreter, which is not among the request's tools.",
                           param="tool_choice", code="invalid_value")

    def _search(self, tool: dict[str, Any], history: list[dict[str, Any]]) -> FileSearchSession:
        """The response's file searches, over the tool's stores, numbered on from the history's."""
        ids = list(tool.get("vector_store_ids") or [])
        if not ids or self.vector_stores is None:
            raise APIError(400, "The file_search tool needs 'vector_store_ids': the vector stores to search.",
                           param="tools.vector_store_ids", code="missing_required_parameter")
        for vs_id in ids:
            try:
                self.vector_stores.get(vs_id)
            except VectorStoreError as exc:
                raise APIError(exc.status, exc.message, param="tools.vector_store_ids", code=exc.code) from None
        ranking = tool.get("ranking_options") or {}
        most, threshold = tool.get("max_num_results"), ranking.get("score_threshold")
        if most is not None and not 1 <= most <= 50:
            raise APIError(400, f"Invalid value for 'tools.max_num_results': it must be between 1 and 50 (got {most}).",
                           param="tools.max_num_results", code="invalid_value")
        if threshold is not None and not 0 <= threshold <= 1:
            raise APIError(400, "Invalid value for 'tools.ranking_options.score_threshold': it must be between 0 and 1.",
                           param="tools.ranking_options.score_threshold", code="invalid_value")
        return FileSearchSession(self.vector_stores, ids, max_num_results=tool.get("max_num_results"),
                                 score_threshold=ranking.get("score_threshold"), ranker=ranking.get("ranker"),
                                 filters=tool.get("filters"), shown=search_sources(history))

    def _container(self, tool: dict[str, Any], history: list[dict[str, Any]]) -> str:
        """The container the response's code runs in: the one named, or an auto one (reused along a chain)."""
        given = tool.get("container") or {"type": "auto"}
        try:
            if isinstance(given, str):
                return self.containers.usable(given).id
            file_ids = given.get("file_ids") or []
            for item in reversed(history):
                if item.get("type") == "code_interpreter_call" and item.get("container_id"):
                    container = self.containers.get(item["container_id"])
                    if container is not None and container.status != "expired":
                        self.containers.add_uploads(container.id, file_ids)
                        return container.id
                    break
            return self.containers.create("auto", file_ids=file_ids, memory_limit=given.get("memory_limit")).id
        except ContainerError as exc:
            raise APIError(exc.status, exc.message, param="tools", code="not_found" if exc.status == 404 else
                           "invalid_value") from None

    # -- generating --------------------------------------------------------------------------

    async def _drive(self, job: Job, recorder: ResponseRecorder) -> None:
        response = job.response
        try:
            recorder.emit("response.created", response=self.wire(response, job.include))
            if response.status == "queued":
                recorder.emit("response.queued", response=self.wire(response, job.include))
                await asyncio.sleep(0)
            response.status = "in_progress"
            self._save(job)
            recorder.emit("response.in_progress", response=self.wire(response, job.include))
            await self.loop.run(recorder)
            self._end(job, recorder, "completed")
        except asyncio.CancelledError:
            if self._closing:
                self._end(job, recorder, "failed", "The tutor_nb runtime was stopped while this response was in progress.")
            else:
                self._end(job, recorder, "cancelled")
        except RunIncomplete as exc:
            self._end(job, recorder, "incomplete", incomplete=exc.reason)
        except (ModelBackendError, RunFailure) as exc:
            self._end(job, recorder, "failed", str(exc))
        except Exception as exc:  # a bug here must end the response, not leave it hanging
            log.exception("response %s crashed", response.id)
            self._end(job, recorder, "failed", f"The tutor_nb runtime hit an internal error ({type(exc).__name__}: "
                      f"{exc}). Send the request again; if it keeps happening, please report it.")
        finally:
            self._tasks.pop(response.id, None)
            self._jobs.pop(response.id, None)
            recorder.log.end()

    def _end(self, job: Job, recorder: ResponseRecorder, status: str, error: str | None = None,
             incomplete: str | None = None) -> None:
        if status != "completed":
            recorder.stop(status)
        usage = recorder.usage
        ended = {
            **job.response.model_dump(by_alias=True), "status": status, "output": recorder.items(),
            "completed_at": now() if status == "completed" else None,
            "error": {"code": "server_error", "message": error} if error else None,
            "incomplete_details": {"reason": incomplete} if incomplete else None,
            "usage": {"input_tokens": usage.prompt_tokens, "output_tokens": usage.completion_tokens,
                      "total_tokens": usage.prompt_tokens + usage.completion_tokens,
                      "input_tokens_details": {"cached_tokens": 0, "cache_write_tokens": 0},
                      "output_tokens_details": {"reasoning_tokens": 0}} if usage else None,
        }
        try:
            job.response = Response.model_validate(ended)
        except ValueError as exc:  # never leave a response in progress forever
            log.exception("response %s could not be ended as %s", job.response.id, status)
            job.response = Response.model_validate({**ended, "status": "failed", "output": [], "error": {
                "code": "server_error", "message": f"The tutor_nb runtime could not record this response ({exc})."}})
        self._save(job)
        if job.conversation_id and self.conversations.get(job.conversation_id) is not None:
            self.conversations.add(job.conversation_id, recorder.items())
        terminal = {"completed": "response.completed", "failed": "response.failed",
                    "incomplete": "response.incomplete"}.get(status)
        if terminal:
            recorder.emit(terminal, response=self.wire(job.response, job.include))

    def _save(self, job: Job) -> None:
        if job.stored and self.store.get(Response, job.response.id) is not None:
            self.store.save(job.response)
