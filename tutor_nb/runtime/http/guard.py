"""The ASGI guard in front of every route: who may call (Host, Origin, token) and what they may send.

These are the defences Jupyter Server has against web pages: a page the learner opens can send
"simple" cross-site requests (text/plain, form and multipart bodies need no preflight) and can rebind
its own host name to 127.0.0.1. So a Host that is not a loopback name (or one allowed) is refused, a
request from another web origin is refused, and a body that is not JSON is refused (multipart only
where files are uploaded), all before any route runs. No answer carries CORS headers.
"""

from __future__ import annotations

import re
import secrets
from typing import Any
from urllib.parse import urlsplit

from starlette.datastructures import Headers

from ..config import Settings, is_loopback_host
from ..learners import RUN_STARTS, current_owner
from .errors import APIError

#: the endpoints that take multipart/form-data (OpenAI's file uploads); every other body is JSON
UPLOADS = re.compile(r"/v1/(files|uploads/[^/]+/parts|containers/[^/]+/files)/?")
_JSON = "application/json"


class Guard:
    """Refuses what a route must never see: a foreign Host or Origin, a missing token, a body that is
    not JSON, a body over the size limit.

    Plain ASGI rather than ``@app.middleware``: the limit must also hold for chunked bodies that
    declare no length, so it is counted as the body streams in and nothing larger is buffered.
    """

    def __init__(self, app: Any, settings: Settings) -> None:
        self.app, self.settings = app, settings
        self.limit = settings.max_body_mb * 1024 * 1024
        self.hosts = {h.lower() for h in settings.allow_hosts}
        self.origins = {o.rstrip("/").lower() for o in settings.allow_origins}

    async def __call__(self, scope: dict, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        headers = Headers(scope=scope)
        refusal = self._who(headers) or self._what(scope, headers)
        owner: str | None = None  # the teacher, or nobody named: sees everything
        if refusal is None:
            owner, refusal = self._whose(scope, headers)
        if refusal is not None:
            return await refusal.response()(scope, receive, send)
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

    def _who(self, headers: Headers) -> APIError | None:
        host = headers.get("host", "")
        if not self._host_allowed(host):
            return APIError(403, f"Refused: the Host header {host[:100]!r} is not a name of this machine, so the "
                            "request may come from a web page that rebound its own name to it. Use "
                            "http://127.0.0.1:PORT or http://localhost:PORT, or start the runtime with "
                            "--allow-host NAME for a name you trust.", code="host_not_allowed")
        origin = headers.get("origin")
        if origin is not None and not self._origin_allowed(origin, host):
            return APIError(403, f"Refused: a request from the web page at {origin[:100]!r}. Web pages may not "
                            "call this runtime; start it with --allow-origin ORIGIN for a page you trust.",
                            code="origin_not_allowed")
        return None

    def _whose(self, scope: dict, headers: Headers) -> tuple[str | None, APIError | None]:
        """The learner the token belongs to (None: the teacher's token, or no token needed), or a refusal."""
        token, learners = self.settings.token, self.settings.learners
        if not (token or learners):
            return None, None
        supplied = headers.get("authorization", "").removeprefix("Bearer ").strip()
        learner = learners.find(supplied) if learners else None
        if learner is None:
            if token and secrets.compare_digest(supplied.encode(), token.encode()):
                return None, None
            return None, APIError(401, self._token_help(), code="invalid_api_key")
        assert learners is not None
        learners.seen(learner)
        if scope.get("method") == "POST" and RUN_STARTS.match(scope.get("path", "")):
            refused = learners.start_run(learner)
            if refused:
                return learner.name, APIError(429, refused, code="rate_limit_exceeded")
        return learner.name, None

    def _what(self, scope: dict, headers: Headers) -> APIError | None:
        length = headers.get("content-length", "")
        if length.isdigit() and int(length) > self.limit:
            return self._too_large()
        has_body = (length.isdigit() and int(length) > 0) or "transfer-encoding" in headers
        kind = headers.get("content-type", "").split(";")[0].strip().lower()
        if not (has_body or kind):
            return None
        if kind == _JSON or (kind == "multipart/form-data" and UPLOADS.fullmatch(scope["path"])):
            return None
        where = "; multipart/form-data is taken only by the upload endpoints" if kind == "multipart/form-data" else ""
        return APIError(415, f"The request body must be JSON sent as Content-Type: application/json (got "
                        f"{kind[:80] or 'no Content-Type'}{where}).", code="unsupported_media_type")

    def _host_allowed(self, host: str) -> bool:
        if not self.settings.is_loopback:
            return True  # served to a network, where the token is required: any name it is reached by
        name = _host_name(host)
        return bool(name) and (is_loopback_host(name) or name in self.hosts)

    def _origin_allowed(self, origin: str, host: str) -> bool:
        origin = origin.rstrip("/").lower()
        if origin in self.origins:
            return True
        parts = urlsplit(origin)
        return parts.scheme in ("http", "https") and parts.netloc == host.lower()

    def _token_help(self) -> str:
        if self.settings.learners is not None:
            return ("Missing or wrong token: this runtime serves a class; use the token you were given (your "
                    "own) as the client's api_key.")
        if self.settings.is_loopback:
            return ("Missing or wrong token: this runtime needs its token as the client's api_key. "
                    "tutor_nb.connect(base_url=...) finds it on this machine; otherwise use the api_key=... that "
                    "'python -m tutor_nb serve' printed when it started (it is also in server.json in its data "
                    "folder, readable by its user only).")
        return ("Missing or wrong token: this runtime is served beyond its own machine and needs its token as the "
                "client's api_key. Ask whoever started it for the token.")

    def _too_large(self) -> APIError:
        # uvicorn reads and discards the rest of the body, so the client is sure to get this answer
        return APIError(413, f"The request body is larger than {self.settings.max_body_mb} MB. Send a smaller "
                        "file, or start the runtime with a larger max_body_mb.", code="request_too_large")


def _host_name(host: str) -> str:
    """The name in a Host header, without its port: 'localhost:8765' -> 'localhost', '[::1]:80' -> '::1'."""
    host = host.strip().lower()
    if host.startswith("["):
        return host[1:].split("]", 1)[0]
    return host.rsplit(":", 1)[0] if host.count(":") == 1 else host
