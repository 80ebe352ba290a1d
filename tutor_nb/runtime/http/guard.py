"""The ASGI guard in front of every route: the token and the body size limit."""

from __future__ import annotations

import secrets
from typing import Any

from starlette.datastructures import Headers

from ..config import Settings
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
        token = self.settings.token
        if token:
            supplied = headers.get("authorization", "").removeprefix("Bearer ").strip()
            if not secrets.compare_digest(supplied.encode(), token.encode()):
                error = APIError(401, "Missing or wrong token. This runtime is served beyond this machine and needs "
                                 "its token as the client's api_key.", code="invalid_api_key")
                return await error.response()(scope, receive, send)
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

        await self.app(scope, capped, send)

    def _too_large(self) -> APIError:
        # uvicorn reads and discards the rest of the body, so the client is sure to get this answer
        return APIError(413, f"The request body is larger than {self.settings.max_body_mb} MB. Send a smaller "
                        "file, or start the runtime with a larger max_body_mb.", code="request_too_large")
