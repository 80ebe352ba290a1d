"""The ``chat`` backend: any OpenAI-compatible Chat Completions endpoint.

OpenAI itself (with a key), Ollama, vLLM, llama.cpp's server and LM Studio all speak the
same streaming wire format, so one backend built on the official SDK serves them all.
"""

from __future__ import annotations

import asyncio
import json
import re
import sys
import weakref
from typing import Any, AsyncIterator

import openai

from ...errors import MissingAPIKeyError, ModelBackendError
from .base import ModelEvent, ModelRequest, TextDelta, ToolCallDelta, Usage, estimate_usage

#: Sent as the API key to servers that need none (Ollama, llama.cpp, LM Studio): the SDK insists on one.
LOCAL_PLACEHOLDER_KEY = "tutor-nb-local"

#: Local models can take minutes on a cold start; connecting should still fail fast.
DEFAULT_TIMEOUT = openai.Timeout(timeout=300.0, connect=5.0)

_KEY_LIKE = re.compile(r"\b(sk|key)-[A-Za-z0-9_*\-]{4,}")


class ChatBackend:
    """Streams a :class:`ModelRequest` through ``chat.completions.create(stream=True)``.

    ``model`` (when given) replaces the assistant's model name in every request, so one
    runtime can point notebooks written for ``gpt-4o`` at a local ``llama3.1``.
    """

    name = "chat"

    def __init__(
        self,
        *,
        base_url: str | None = None,
        api_key: str | None = None,
        model: str | None = None,
        timeout: float | openai.Timeout = DEFAULT_TIMEOUT,
        max_retries: int = 1,
    ) -> None:
        self.model = model
        self._options: dict[str, Any] = {
            "base_url": base_url,
            # Without a base_url the SDK talks to OpenAI and reads OPENAI_API_KEY itself.
            "api_key": api_key or (None if base_url is None else LOCAL_PLACEHOLDER_KEY),
            "timeout": timeout,
            "max_retries": max_retries,
        }
        try:
            first = openai.AsyncOpenAI(**self._options)
        except openai.OpenAIError as exc:
            raise MissingAPIKeyError(
                "The chat backend talks to OpenAI unless given a model_base_url, and no API key "
                "was found. Set OPENAI_API_KEY, pass model_api_key=..., or point model_base_url "
                "at a local server such as Ollama (http://127.0.0.1:11434/v1)."
            ) from exc
        self._api_key: str = first.api_key
        #: Where requests go, as the learner should see it.
        self.base_url: str = str(first.base_url).rstrip("/")
        self._unbound: openai.AsyncOpenAI | None = first
        # The SDK's HTTP pool belongs to one event loop; keep one client per loop that uses us.
        self._clients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, openai.AsyncOpenAI] = (
            weakref.WeakKeyDictionary()
        )
        self._stream_options_ok = True
        self._max_completion_tokens_ok = True  # else the older max_tokens

    def __repr__(self) -> str:
        return f"ChatBackend(base_url={self.base_url!r}, model={self.model!r})"

    def _client(self) -> openai.AsyncOpenAI:
        loop = asyncio.get_running_loop()
        client = self._clients.get(loop)
        if client is None:
            client, self._unbound = self._unbound or openai.AsyncOpenAI(**self._options), None
            self._clients[loop] = client
        return client

    async def aclose(self) -> None:
        clients = list(self._clients.values())
        self._clients.clear()
        for client in clients:
            try:
                await client.close()
            except Exception:  # noqa: BLE001 - a client of another, finished loop has nothing left to release
                pass

    async def stream(self, request: ModelRequest) -> AsyncIterator[ModelEvent]:
        """Yield text and tool-call pieces as they arrive, then one :class:`Usage`.

        When the server sends no usage (some local servers ignore ``stream_options``),
        the counts are estimated at about four characters per token, so runs still
        report a plausible ``usage`` rather than none.
        """
        model = self.model or request.model
        client = self._client()
        seen_tool_indexes: set[int] = set()
        produced: list[str] = []
        usage: Usage | None = None
        chunks = None
        try:
            chunks = await self._create(client, model, request)
            async for chunk in chunks:
                if chunk.usage is not None:
                    usage = Usage(
                        prompt_tokens=chunk.usage.prompt_tokens or 0,
                        completion_tokens=chunk.usage.completion_tokens or 0,
                    )
                for choice in chunk.choices or []:
                    delta = choice.delta
                    if delta is None:
                        continue
                    if delta.content:
                        produced.append(delta.content)
                        yield TextDelta(delta.content)
                    for position, call in enumerate(delta.tool_calls or []):
                        index = call.index if call.index is not None else position
                        first = index not in seen_tool_indexes
                        seen_tool_indexes.add(index)
                        name = call.function.name if call.function else None
                        arguments = (call.function.arguments if call.function else None) or ""
                        produced.append(arguments)
                        yield ToolCallDelta(
                            index=index,
                            id=call.id if first else None,
                            name=name if first else None,
                            arguments=arguments,
                        )
        except Exception as exc:  # noqa: BLE001 - every upstream failure becomes one readable error
            raise ModelBackendError(self._explain(exc, model)) from exc
        finally:
            if chunks is not None:
                await chunks.close()
        yield usage or estimate_usage(request, "".join(produced))

    async def _create(self, client: openai.AsyncOpenAI, model: str, request: ModelRequest) -> Any:
        kwargs: dict[str, Any] = {"model": model, "messages": request.messages, "stream": True, **request.options()}
        if request.tools:
            kwargs["tools"] = request.tools
        if not self._max_completion_tokens_ok and "max_completion_tokens" in kwargs:
            kwargs["max_tokens"] = kwargs.pop("max_completion_tokens")
        if self._stream_options_ok:
            kwargs["stream_options"] = {"include_usage": True}
        while True:
            try:
                return await client.chat.completions.create(**kwargs)
            except openai.BadRequestError as exc:
                # Older servers refuse newer fields outright; each is dropped once and never sent again.
                if "max_completion_tokens" in kwargs and "max_completion_tokens" in str(exc):
                    kwargs["max_tokens"] = kwargs.pop("max_completion_tokens")
                    self._max_completion_tokens_ok = False
                elif "stream_options" in kwargs:
                    del kwargs["stream_options"]
                    result = await client.chat.completions.create(**kwargs)
                    self._stream_options_ok = False
                    return result
                else:
                    raise

    def _explain(self, exc: BaseException, model: str) -> str:
        """A message a learner can act on: where, what went wrong, what to do."""
        return _redact(_describe(exc, self.base_url, model), self._api_key)


def _describe(exc: BaseException, url: str, model: str) -> str:
    offline = "Or run offline with tutor_nb.connect(backend=\"replay\")."
    if isinstance(exc, (openai.APITimeoutError, _httpx_timeout_type())):
        return (
            f"The model at {url} did not answer in time. A local model may still be loading or "
            f"the machine is busy; try again, pick a smaller model, or raise the timeout."
        )
    if isinstance(exc, openai.APIConnectionError) or _is_transport_error(exc):
        if _refused(exc):
            return (
                f"Could not reach the model at {url}: connection refused. Is Ollama (or your "
                f"model server) running? Start it (for Ollama: `ollama serve`) and check "
                f"model_base_url. {offline}"
            )
        return (
            f"Could not reach the model at {url}: {_root_cause(exc)}. Check model_base_url and "
            f"your network. {offline}"
        )
    if isinstance(exc, openai.APIStatusError):
        status, detail = exc.status_code, _server_message(exc)
        if status == 401:
            return (
                f"The model server at {url} rejected the API key (401 Unauthorized): {detail} "
                f"Check OPENAI_API_KEY or the model_api_key you passed."
            )
        if status == 403:
            return (
                f"The model server at {url} refused access (403 Forbidden): {detail} "
                f"Your key may lack access to model {model!r}."
            )
        if status == 404:
            return (
                f"The model server at {url} has no model named {model!r} (404 Not Found): "
                f"{detail} Pick an available model with model=... (for Ollama, first run "
                f"`ollama pull {model}`), and check that model_base_url ends in /v1."
            )
        if status == 429:
            return (
                f"The model server at {url} is rate-limiting requests (429): {detail} "
                f"Wait a minute and try again, or check your plan and quota."
            )
        if status >= 500:
            return (
                f"The model server at {url} failed ({status}): {detail} This is on the "
                f"server's side; try again, and check its log if it keeps happening."
            )
        hint = ""
        if "tool" in detail.lower():
            hint = " This model may not support tool calls; pick one that does (e.g. llama3.1 or qwen2.5)."
        return f"The model server at {url} refused the request ({status}): {detail}{hint}"
    if isinstance(exc, openai.APIError):
        return f"The model at {url} reported an error while answering: {exc.message}"
    return f"Talking to the model at {url} failed: {type(exc).__name__}: {exc}"


def _server_message(exc: openai.APIStatusError) -> str:
    body = exc.body
    if isinstance(body, dict):
        message = body.get("message") or body.get("error") or json.dumps(body)
    elif body:
        message = str(body)
    else:
        message = exc.message
    message = str(message).strip()
    return message if message.endswith((".", "!", "?")) else message + "."


def _transport() -> Any:
    """The HTTP library this openai SDK is built on: httpx2 from openai 3, httpx before (Colab has 2.x)."""
    client = next(base for base in openai.DefaultHttpxClient.__mro__ if base.__name__ == "Client")
    return sys.modules[client.__module__.partition(".")[0]]


def _httpx_timeout_type() -> type[BaseException]:
    return _transport().TimeoutException


def _is_transport_error(exc: BaseException) -> bool:
    return isinstance(exc, _transport().TransportError)


def _causes(exc: BaseException) -> list[BaseException]:
    chain: list[BaseException] = []
    current: BaseException | None = exc
    while current is not None and current not in chain:
        chain.append(current)
        current = current.__cause__ or current.__context__
    return chain


def _refused(exc: BaseException) -> bool:
    return any(
        isinstance(e, ConnectionRefusedError) or "refused" in str(e).lower() for e in _causes(exc)
    )


def _root_cause(exc: BaseException) -> str:
    root = _causes(exc)[-1]
    return str(root) or type(root).__name__


def _redact(text: str, api_key: str | None) -> str:
    if api_key and api_key != LOCAL_PLACEHOLDER_KEY:
        text = text.replace(api_key, "***")
    return _KEY_LIKE.sub("***", text)
