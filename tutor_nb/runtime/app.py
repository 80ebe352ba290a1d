"""The HTTP face of the runtime: OpenAI's Assistants endpoints under ``/v1``, assembled from routers.

Request bodies are checked against the ``openai`` SDK's own parameter types and answers are
the SDK's own response types, so the official client parses everything it gets. Errors use
OpenAI's envelope and the status codes the SDK maps to its exception classes.
"""

from __future__ import annotations

from contextlib import asynccontextmanager
from typing import Any, AsyncIterator

from fastapi import FastAPI, Request

from .api import ROUTERS
from .config import Settings
from .core import RuntimeCore
from .http import Guard, install_handlers


def create_app(settings: Settings) -> FastAPI:
    rt = RuntimeCore(settings)

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        await rt.start()
        try:
            yield
        finally:
            await rt.stop()

    app = FastAPI(title="tutor_nb runtime", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.runtime = rt
    install_handlers(app)
    app.add_middleware(Guard, settings=settings)

    @app.get("/v1")
    async def about(request: Request) -> dict[str, Any]:
        return {"object": "tutor_nb.runtime", "backend": rt.backend.name, "data_dir": str(settings.data_dir)}

    for router in ROUTERS:
        app.include_router(router)
    return app
