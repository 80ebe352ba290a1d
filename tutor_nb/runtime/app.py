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
from .learners import Learners, current_owner


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
        info: dict[str, Any] = {"object": "tutor_nb.runtime", "backend": rt.backend.name}
        owner = current_owner.get()
        if owner is not None:  # a learner: who they are here, and nothing of the others
            return {**info, "learner": owner}
        info["data_dir"] = str(settings.data_dir)
        if settings.learners is not None:
            info["learners"] = class_activity(rt, settings.learners)
        return info

    for router in ROUTERS:
        app.include_router(router)
    return app


def class_activity(rt: RuntimeCore, learners: Learners) -> list[dict[str, Any]]:
    """For the teacher: each learner, when last seen, their threads and how many have a kernel now."""
    from openai.types import ContainerRetrieveResponse
    from openai.types.beta import Thread

    running = set(rt.sandbox.pool.assigned)
    rows = []
    for name, learner in learners.by_name.items():
        threads = rt.store.owned_ids(Thread, name)
        containers = rt.store.owned_ids(ContainerRetrieveResponse, name)
        rows.append({"name": name, "last_seen": int(learner.last_seen) if learner.last_seen else None,
                     "requests": learner.requests, "threads": len(threads),
                     "kernels": len(running & {*threads, *containers})})
    return rows
