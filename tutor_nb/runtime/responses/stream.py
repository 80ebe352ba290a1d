"""A response's stream events, kept so a client can resume a stream from any sequence number."""

from __future__ import annotations

import asyncio
import json
from typing import Any, AsyncIterator


class EventLog:
    """Every event of one response, in order; readers follow it from any point until it ends."""

    def __init__(self) -> None:
        self.events: list[bytes] = []
        self.ended = False
        self._grew = asyncio.Event()

    def __len__(self) -> int:
        return len(self.events)

    def append(self, event: dict[str, Any]) -> None:
        """Add an event (its ``sequence_number`` is its place in the log)."""
        self.events.append(f"event: {event['type']}\ndata: {json.dumps(event, ensure_ascii=False)}\n\n".encode())
        self._wake()

    def end(self) -> None:
        self.ended = True
        self._wake()

    def _wake(self) -> None:
        self._grew.set()
        self._grew = asyncio.Event()

    async def follow(self, after: int = -1) -> AsyncIterator[bytes]:
        """SSE-encoded events with a sequence number above ``after``, live until the response ends."""
        index = max(after, -1) + 1  # before the first event is the start
        while True:
            while index < len(self.events):
                yield self.events[index]
                index += 1
            if self.ended:
                return
            await self._grew.wait()
