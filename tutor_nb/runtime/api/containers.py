"""/v1/containers and their files: create, list, retrieve, delete; add (upload or file id), list, retrieve,
delete, content.

A container is a kernel plus its working folder (``/mnt/data`` to the code); the Responses API's code
interpreter runs in one. The work is done by :class:`~tutor_nb.runtime.containers.Containers`; this module
checks requests and answers as OpenAI did, an expired container included: it can still be retrieved,
listed and deleted (``status: "expired"``), and anything that would use it answers 400
``Container is expired.``
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from typing_extensions import TypedDict

from fastapi import APIRouter, Request, Response
from openai.types import ContainerRetrieveResponse as Container
from openai.types import FileObject, container_create_params
from openai.types.containers import FileRetrieveResponse as ContainerFile
from starlette.datastructures import UploadFile

from ..containers import DEFAULT_MINUTES
from ..http import APIError, body, ok, paging
from .common import core
from .files import download, safe_name

router = APIRouter()


class FileFromId(TypedDict, total=False):
    """The JSON form of ``containers.files.create`` (the SDK's params type also holds the upload's bytes)."""

    file_id: str


#: longest idle expiry accepted, in minutes (a week; OpenAI's default is 20)
MAX_MINUTES = 7 * 24 * 60


# -- containers --------------------------------------------------------------------------------------


@router.post("/v1/containers")
async def create_container(request: Request) -> Response:
    rt = core(request)
    p = await body(request, container_create_params.ContainerCreateParams)
    if p.get("skills"):
        raise APIError(400, "Container skills are not served by tutor_nb; create the container without 'skills'.",
                       param="skills", code="unsupported_parameter")
    policy = p.get("network_policy")
    if policy is not None and policy.get("type") != "disabled":
        raise APIError(400, "tutor_nb cannot limit a kernel's network to some domains; leave 'network_policy' out "
                       "(see docs/sandbox.md for what kernels can reach).", param="network_policy.type",
                       code="unsupported_parameter")
    minutes = (p.get("expires_after") or {}).get("minutes", DEFAULT_MINUTES)
    if not 1 <= minutes <= MAX_MINUTES:
        raise APIError(400, f"'expires_after.minutes' must be between 1 and {MAX_MINUTES}, got {minutes}.",
                       param="expires_after.minutes", code="invalid_value")
    file_ids = list(p.get("file_ids") or [])
    for file_id in file_ids:
        rt.need(FileObject, file_id, param="file_ids")
    container = rt.containers.create(p["name"], file_ids=file_ids, minutes=minutes,
                                     memory_limit=p.get("memory_limit"))
    return ok(container)


@router.get("/v1/containers")
async def list_containers(request: Request) -> Response:
    rt = core(request)
    name = request.query_params.get("name")
    page = rt.store.page(Container, None, where={"name": name} if name is not None else None, **paging(request))
    page.data = [rt.containers.get(c.id) or c for c in page.data]  # idle ones show as expired
    return ok(page.to_wire())


@router.get("/v1/containers/{container_id}")
async def get_container(container_id: str, request: Request) -> Response:
    return ok(_found(request, container_id))


@router.delete("/v1/containers/{container_id}")
async def delete_container(container_id: str, request: Request) -> Response:
    _found(request, container_id)
    await core(request).containers.delete(container_id)
    return ok({"id": container_id, "object": "container.deleted", "deleted": True})


def _found(request: Request, container_id: str) -> Container:
    """The container, expired or not; a 404 if there is none."""
    container = core(request).containers.get(container_id)
    if container is None:
        raise APIError(404, f"No container found with id '{container_id}'. Check the id, or list containers "
                       "with client.containers.list().", param="container_id", code="not_found")
    return container


def _usable(request: Request, container_id: str) -> Container:
    """The container if its files can be used; an expired one answers as OpenAI's did."""
    container = _found(request, container_id)
    if container.status == "expired":
        minutes = container.expires_after.minutes if container.expires_after else DEFAULT_MINUTES
        raise APIError(400, f"Container is expired. It was unused for more than {minutes} minutes (its "
                       "expires_after), so its kernel and files are gone; create a new container.")
    return container


# -- container files ---------------------------------------------------------------------------------


@router.post("/v1/containers/{container_id}/files")
async def create_file(container_id: str, request: Request) -> Response:
    rt = core(request)
    container = _usable(request, container_id)
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        entry = await _from_upload(request, container_id)
    else:
        p = await body(request, FileFromId)
        if not p.get("file_id"):
            raise APIError(400, "Send either a 'file' (multipart/form-data upload) or a JSON body with 'file_id' "
                           "(a file from client.files.create).", param="file_id", code="missing_required_parameter")
        rt.need(FileObject, p["file_id"], param="file_id")
        [entry] = await asyncio.to_thread(rt.containers.add_uploads, container_id, [p["file_id"]])
    rt.containers.touch(container)
    return ok(entry)


async def _from_upload(request: Request, container_id: str) -> ContainerFile:
    rt = core(request)
    try:
        form = await request.form(max_part_size=rt.settings.max_body_mb * 1024 * 1024)
    except Exception as exc:  # noqa: BLE001 - any unreadable upload is the client's to fix
        raise APIError(400, f"Could not read the upload ({exc}). Send multipart/form-data with a 'file' part, as "
                       "client.containers.files.create(container_id, file=...) does.") from None
    upload = form.get("file")
    if not isinstance(upload, UploadFile):
        raise APIError(400, "Missing the 'file' part of the upload.", param="file", code="missing_required_parameter")
    data = await upload.read()
    return await asyncio.to_thread(rt.containers.add_file, container_id, safe_name(upload.filename), data, "user")


@router.get("/v1/containers/{container_id}/files")
async def list_files(container_id: str, request: Request) -> Response:
    rt = core(request)
    _usable(request, container_id)
    await asyncio.to_thread(_refresh, rt.containers, container_id)
    return ok(rt.store.page(ContainerFile, container_id, **paging(request)).to_wire())


@router.get("/v1/containers/{container_id}/files/{file_id}")
async def get_file(container_id: str, file_id: str, request: Request) -> Response:
    return ok(_file(request, container_id, file_id))


@router.delete("/v1/containers/{container_id}/files/{file_id}")
async def delete_file(container_id: str, file_id: str, request: Request) -> Response:
    rt = core(request)
    entry = _file(request, container_id, file_id)
    rt.containers.file_path(entry).unlink(missing_ok=True)
    rt.store.delete(entry.id)
    return ok({"id": entry.id, "object": "container.file.deleted", "deleted": True})


@router.get("/v1/containers/{container_id}/files/{file_id}/content")
async def file_content(container_id: str, file_id: str, request: Request) -> Response:
    rt = core(request)
    entry = _file(request, container_id, file_id)
    try:
        data = await asyncio.to_thread(rt.containers.file_path(entry).read_bytes)
    except OSError:
        raise APIError(404, f"The file {entry.path} is no longer in container {container_id} (its code removed "
                       "or renamed it). List the container's files to see what is there.", code="not_found") from None
    return download(data, Path(entry.path).name)


def _file(request: Request, container_id: str, file_id: str) -> ContainerFile:
    _usable(request, container_id)
    entry = core(request).store.get(ContainerFile, file_id)
    if entry is None or entry.container_id != container_id:
        raise APIError(404, f"No file found with id '{file_id}' in container {container_id}. List the container's "
                       "files with client.containers.files.list(container_id).", param="file_id", code="not_found")
    return entry


def _refresh(containers: Any, container_id: str) -> None:
    """Bring the file list up to date with the folder: what code wrote there is added, what it removed goes."""
    folder = containers.workdir(container_id)
    present = {path.name for path in folder.iterdir() if path.is_file()}
    for entry in containers.files(container_id):
        if Path(entry.path).name not in present:
            containers.store.delete(entry.id)
    known = {Path(entry.path).name for entry in containers.files(container_id)}
    containers.record(container_id, [folder / name for name in sorted(present - known)], "assistant")
