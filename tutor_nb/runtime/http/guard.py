"""The ASGI guard in front of every route: the token and the body size limit."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.datastructures import Headers

from ..config import Settings
from ..learners import RUN_STARTS, current_owner
from .errors import APIError


class Guard:
    """Refuses requests without the token, and bodies over the size limit, before any route runs.

    Plain ASGI rather than ``@app.middleware``: the limit must also hold for chunked bodies that
    declare no length, so it is counted as the body streams in and nothing larger is buffered.
    """

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app, self.settings = app, settings
        self.limit = settings.max_body_mb * 1024 * 1024

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        token, learners = self.settings.token, self.settings.learners
        owner: str | None = None  # the teacher, or nobody named: sees everything
        if token or learners:
            supplied = headers.get("authorization", "").removeprefix("Bearer ").strip()
            learner = learners.find(supplied) if learners else None
            if learner is None and not (token and secrets.compare_digest(supplied.encode(), token.encode())):
                error = APIError(401, "Missing or wrong token. This runtime needs its token (or, in a class, your "
                                 "own) as the client's api_key.", code="invalid_api_key")
                return await error.response()(scope, receive, send)
            if learner is not None and learners is not None:
                owner = learner.name
                learners.seen(learner)
                if scope.get("method") == "POST" and RUN_STARTS.match(scope.get("path", "")):
                    refused = learners.start_run(learner)
                    if refused:
                        return await APIError(429, refused, code="rate_limit_exceeded").response()(scope, receive, send)
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            return await self._too_large().response()(scope, receive, send)
        seen = 0

        async def capped() -> dict:
            nonlocal seen
            message = await receive()
            seen += len(message.get("body", b""))
            if seen > self.limit:
                raise self._too_large()  # answered by the APIError handler of the route reading the body
            return message

        mark = current_owner.set(owner)  # the store keeps a learner to their own objects
        try:
            await self.app(scope, capped, send)
        finally:
            current_owner.reset(mark)

    def _too_large(self) -> APIError:
        # uvicorn reads and discards the rest of the body, so the client is sure to get this answer
        return APIError(413, f"The request body is larger than {self.settings.max_body_mb} MB. Send a smaller "
                        "file, or start the runtime with a larger max_body_mb.", code="request_too_large")
