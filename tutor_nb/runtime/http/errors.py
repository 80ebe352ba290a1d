"""Errors in OpenAI's envelope, and the handlers that turn every failure into one."""

from __future__ import annotations

import logging

from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from starlette.routing import Match

log = logging.getLogger("tutor_nb.runtime")


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves on this path (each route, or included router, knows only its own)."""
    routes = request.app.router.routes
    return [method for method in ("GET", "POST", "PUT", "PATCH", "DELETE")
            if any(r.matches({**request.scope, "method": method})[0] == Match.FULL for r in routes)]


class APIError(Exception):
    """An error answer in OpenAI's envelope."""

    def __init__(self, status: int, message: str, *, param: str | None = None, code: str | None = None,
                 type: str = "invalid_request_error") -> None:
        super().__init__(message)
        self.status, self.message, self.param, self.code, self.type = status, message, param, code, type

    def response(self, headers: dict[str, str] | None = None) -> JSONResponse:
        body = {"error": {"message": self.message, "type": self.type, "param": self.param, "code": self.code}}
        return JSONResponse(body, status_code=self.status, headers=headers)


def install_handlers(app: FastAPI) -> None:
    """Answer unknown routes, wrong methods and crashes in OpenAI's envelope too."""

    @app.exception_handler(APIError)
    async def _api_error(request: Request, exc: APIError) -> JSONResponse:
        return exc.response()

    @app.exception_handler(404)
    async def _no_route(request: Request, exc: Exception) -> JSONResponse:
        return APIError(404, f"Unknown endpoint {request.method} {request.url.path}. tutor_nb serves OpenAI's "
                        "Assistants endpoints (assistants, threads, messages, runs, run steps, files, vector stores) and "
                        "Responses endpoints (responses, conversations) under /v1.",
                        code="unknown_url").response()

    @app.exception_handler(405)
    async def _bad_method(request: Request, exc: Exception) -> JSONResponse:
        allowed = _allowed_methods(request)
        return APIError(405, f"{request.method} is not allowed on {request.url.path}; use {', '.join(allowed)}.",
                        code="method_not_allowed").response(headers={"Allow": ", ".join(allowed)})

    @app.exception_handler(Exception)
    async def _crash(request: Request, exc: Exception) -> JSONResponse:
        log.exception("error serving %s %s", request.method, request.url.path)
        return APIError(500, f"The tutor_nb runtime failed on this request ({type(exc).__name__}). "
                        "Nothing was changed; please report it if it repeats.", type="server_error").response()
