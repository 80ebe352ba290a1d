"""Fan-out of a run's server-sent events to the streams that watch it.

A run publishes each event once; every open stream on that run gets it in order. A stream
ends when the run pauses for tool outputs or reaches a terminal state. Runs also signal
each status change, so a polling client can be answered the moment a run finishes.
"""

from __future__ import annotations

import asyncio
import json
from typing import AsyncIterator

from pydantic import BaseModel

_END = object()


class RunEvents:
    """Event channels keyed by run id, living in the server's event loop."""

    def __init__(self) -> None:
        self._subscribers: dict[str, list[asyncio.Queue]] = {}
        self._changed: dict[str, asyncio.Event] = {}

    def subscribe(self, run_id: str) -> AsyncIterator[bytes]:
        """Start listening now; the returned iterator yields SSE-encoded events."""
        queue: asyncio.Queue = asyncio.Queue()
        self._subscribers.setdefault(run_id, []).append(queue)
        return self._drain(run_id, queue)

    async def _drain(self, run_id: str, queue: asyncio.Queue) -> AsyncIterator[bytes]:
        try:
            while True:
                item = await queue.get()
                if item is _END:
                    break
                yield item
            yield b"event: done\ndata: [DONE]\n\n"
        finally:
            subscribers = self._subscribers.get(run_id, [])
            if queue in subscribers:
                subscribers.remove(queue)
            if not subscribers:
                self._subscribers.pop(run_id, None)

    def publish(self, run_id: str, event: str, data: BaseModel | dict) -> None:
        if run_id not in self._subscribers:
            return
        payload = data.model_dump_json(by_alias=True) if isinstance(data, BaseModel) else json.dumps(data)
        chunk = f"event: {event}\ndata: {payload}\n\n".encode()
        for queue in self._subscribers[run_id]:
            queue.put_nowait(chunk)

    def end(self, run_id: str) -> None:
        """Close every stream on this run (it paused or finished)."""
        for queue in self._subscribers.get(run_id, []):
            queue.put_nowait(_END)

    def error(self, run_id: str, message: str) -> None:
        """Tell streams that the server itself failed, the way OpenAI's stream did."""
        data = {"error": {"message": message, "type": "server_error", "param": None, "code": None}}
        chunk = f"event: error\ndata: {json.dumps(data)}\n\n".encode()
        for queue in self._subscribers.get(run_id, []):
            queue.put_nowait(chunk)

    # -- status changes, for long polls ------------------------------------------------------

    def changed(self, run_id: str) -> None:
        event = self._changed.pop(run_id, None)
        if event is not None:
            event.set()

    async def wait_changed(self, run_id: str, timeout: float) -> None:
        event = self._changed.setdefault(run_id, asyncio.Event())
        try:
            await asyncio.wait_for(event.wait(), timeout)
        except asyncio.TimeoutError:
            pass
