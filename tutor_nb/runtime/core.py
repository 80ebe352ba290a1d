"""What one server holds: settings, store, sandbox, model backend, the run engine and the Responses engine."""

from __future__ import annotations

import logging
from typing import Any

from openai.types.beta.threads import Run

from .config import Settings
from .containers import Containers
from .events import RunEvents
from .http import APIError
from .responses import Conversations, Responses
from .runs import Engine
from .search import open_index
from .search.stores import VectorStores
from .store import KINDS, Store

log = logging.getLogger("tutor_nb.runtime")


class RuntimeCore:
    """Everything one server holds; the API routers reach it through ``request.app.state.runtime``."""

    def __init__(self, settings: Settings) -> None:
        from .backends import make_backend
        from .sandbox import Sandbox

        self.settings = settings
        self.store = Store(settings.data_dir)
        self.events = RunEvents()
        self.sandbox = Sandbox(
            settings.data_dir / "sandbox", timeout=settings.exec_timeout, idle_timeout=settings.idle_timeout,
            pool_size=settings.pool_size, memory_limit_mb=settings.memory_limit_mb, fork=settings.fork_kernels,
            gateway_url=settings.gateway_url, gateway_token=settings.gateway_token, gateway_kernel=settings.gateway_kernel,
            max_kernels=settings.max_kernels,
            kernels_per_learner=settings.kernels_per_learner,
        )
        self.backend = make_backend(
            settings.backend, model_base_url=settings.model_base_url, model_api_key=settings.model_api_key,
            model=settings.model, cassettes=settings.cassettes or None, record=settings.record,
            replay_delay=settings.replay_delay,
        )
        self.vector_stores = VectorStores(self.store, open_index(
            self.store.path, embeddings_base_url=settings.embeddings_base_url,
            embeddings_model=settings.embeddings_model))
        self.engine = Engine(self.store, self.sandbox, self.backend, self.events, exec_timeout=settings.exec_timeout,
                             vector_stores=self.vector_stores)
        self.containers = Containers(self.store, self.sandbox)
        self.conversations = Conversations(self.store)
        self.responses = Responses(self.store, self.engine.loop, self.containers, self.conversations,
                                   self.vector_stores)

    async def start(self) -> None:
        self.responses.recover()
        ended = self.engine.recover()
        if ended:
            log.warning("marked %d run(s) interrupted by the last shutdown as failed", len(ended))
        await self.sandbox.start()
        queued = self.vector_stores.start()
        if queued:
            log.info("indexing %d vector store file(s) left in progress by the last shutdown", queued)

    async def stop(self) -> None:
        await self.engine.close()
        await self.responses.close()
        await self.sandbox.close()
        await self.backend.aclose()
        self.vector_stores.close()
        self.store.close()

    def need(self, cls: type, id: str, param: str | None = None) -> Any:
        """The stored object, or a 404 naming what was not found."""
        obj = self.engine.get_run(id) if cls is Run else self.store.get(cls, id)
        if obj is None:
            noun = KINDS[cls]
            raise APIError(404, f"No {noun} found with id '{id}'. Check the id, or list {noun}s to see what exists.",
                           param=param, code="not_found")
        return obj
