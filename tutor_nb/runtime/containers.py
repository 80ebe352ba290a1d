"""Containers: a kernel plus its working folder, as the Responses API's code interpreter knows them.

A container's id is its key in the sandbox (as a thread id is for the Assistants API), so its kernel
keeps variables from one response to the next and its folder is what code sees as ``/mnt/data``.
Files in it are recorded as container files: those given when it was made (``source: "user"``) and
those its code writes (``source: "assistant"``). A container unused for ``expires_after.minutes``
expires: its kernel and folder are removed and it answers with ``status: "expired"``.
"""

from __future__ import annotations

import asyncio
import shutil
from pathlib import Path
from typing import Any, Iterable

from openai.types import ContainerRetrieveResponse as Container
from openai.types import FileObject
from openai.types.containers import FileRetrieveResponse as ContainerFile

from ..errors import TutorNBError
from .store import Store
from .wire import new_id, now

DEFAULT_MINUTES = 20  # OpenAI's default idle expiry


class ContainerError(TutorNBError):
    """A container that cannot be used: unknown, or expired (``status`` says which)."""

    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message, self.status = message, status


class Containers:
    """Make, find, expire and delete containers; record the files in them."""

    def __init__(self, store: Store, sandbox: Any) -> None:
        self.store, self.sandbox = store, sandbox

    def create(self, name: str, *, file_ids: Iterable[str] = (), minutes: int = DEFAULT_MINUTES,
               memory_limit: str | None = None) -> Container:
        """A new running container holding copies of the given uploaded files."""
        stamp = now()
        container = Container.model_validate({
            "id": new_id("container"), "object": "container", "created_at": stamp, "name": name,
            "status": "running", "last_active_at": stamp, "memory_limit": memory_limit or "1g",
            "expires_after": {"anchor": "last_active_at", "minutes": minutes},
        })
        self.store.add(container)
        self.add_uploads(container.id, file_ids)
        return container

    def get(self, container_id: str) -> Container | None:
        """The container as it is now (an idle one past its expiry is expired from here on)."""
        container = self.store.get(Container, container_id)
        if container is None or container.status == "expired":
            return container
        minutes = container.expires_after.minutes if container.expires_after else DEFAULT_MINUTES
        if now() - (container.last_active_at or container.created_at) > minutes * 60:
            container.status = "expired"
            self.store.save(container)
            asyncio.ensure_future(self._remove_kernel_and_folder(container_id))
        return container

    def usable(self, container_id: str) -> Container:
        """The container, running; or a ``ContainerError`` saying why it cannot run code."""
        container = self.get(container_id)
        if container is None:
            raise ContainerError(f"No container found with id '{container_id}'. Use a container id from "
                                 "client.containers.create(), or {\"type\": \"auto\"}.", status=404)
        if container.status == "expired":
            raise ContainerError(f"Container {container_id} has expired (unused for longer than its "
                                 "expires_after). Create a new container, or use {\"type\": \"auto\"}.")
        return container

    def touch(self, container: Container) -> None:
        container.last_active_at = now()
        self.store.save(container)

    def workdir(self, container_id: str) -> Path:
        return Path(self.sandbox.workdir(container_id))

    async def delete(self, container_id: str) -> None:
        """Remove the container, its kernel, its folder and its file records."""
        self.store.delete(container_id)
        await self._remove_kernel_and_folder(container_id)

    async def _remove_kernel_and_folder(self, container_id: str) -> None:
        await self.sandbox.discard(container_id)
        shutil.rmtree(self.workdir(container_id), ignore_errors=True)

    # -- files -------------------------------------------------------------------------------

    def add_uploads(self, container_id: str, file_ids: Iterable[str]) -> list[ContainerFile]:
        """Copy uploaded files (``client.files.create``) into the container's folder."""
        added = []
        for file_id in dict.fromkeys(file_ids):
            meta = self.store.get(FileObject, file_id)
            if meta is None:
                raise ContainerError(f"No file found with id '{file_id}'. Upload it with client.files.create() "
                                     "first.", status=404)
            added.append(self.add_file(container_id, Path(meta.filename).name, self.store.read_blob(file_id)))
        return added

    def add_file(self, container_id: str, name: str, data: bytes, source: str = "user") -> ContainerFile:
        """Write a file into the container's folder and record it."""
        target = self.workdir(container_id) / name
        target.write_bytes(data)
        return self.record(container_id, [target], source)[0]

    def record(self, container_id: str, paths: Iterable[Path], source: str = "assistant") -> list[ContainerFile]:
        """Record files now in the container's folder (new, or changed: their record is updated)."""
        known = {f.path: f for f in self.files(container_id)}
        recorded = []
        for path in paths:
            path = Path(path)
            if not path.is_file():
                continue
            wire_path = "/mnt/data/" + path.name
            entry = known.get(wire_path)
            if entry is None:
                entry = ContainerFile(id=new_id("container file"), object="container.file", container_id=container_id,
                                      created_at=now(), bytes=path.stat().st_size, path=wire_path, source=source)
                self.store.add(entry, parent=container_id)
            else:
                entry.bytes = path.stat().st_size
                self.store.save(entry)
            recorded.append(entry)
        return recorded

    def files(self, container_id: str) -> list[ContainerFile]:
        return self.store.children(ContainerFile, container_id)

    def file_path(self, entry: ContainerFile) -> Path:
        """Where a recorded file's bytes are (its name in the container's folder)."""
        return self.workdir(entry.container_id) / Path(entry.path).name
