"""/v1/files: upload, list, retrieve, delete, content."""

from __future__ import annotations

import asyncio
import os
import unicodedata
from pathlib import Path
from urllib.parse import quote

from fastapi import APIRouter, Request, Response
from openai.types import FileObject
from starlette.datastructures import UploadFile

from ..http import APIError, ok, paging
from ..wire import new_id, now
from .common import core

router = APIRouter()


@router.post("/v1/files")
async def upload_file(request: Request) -> Response:
    rt = core(request)
    try:
        form = await request.form(max_part_size=rt.settings.max_body_mb * 1024 * 1024)
    except APIError:
        raise
    except Exception as exc:
        raise APIError(400, f"Could not read the upload ({exc}). Send multipart/form-data with 'file' and "
                       "'purpose' fields, as client.files.create(file=..., purpose='assistants') does.") from None
    upload, purpose = form.get("file"), form.get("purpose")
    if not isinstance(upload, UploadFile):
        raise APIError(400, "Missing the 'file' part of the upload.", param="file", code="missing_required_parameter")
    if not isinstance(purpose, str) or not purpose:
        raise APIError(400, "Missing 'purpose'; use 'assistants' for code interpreter files.", param="purpose",
                       code="missing_required_parameter")
    data = await upload.read()
    meta = FileObject.model_validate({
        "id": new_id("file"), "object": "file", "bytes": len(data), "created_at": now(),
        "filename": safe_name(upload.filename), "purpose": purpose, "status": "processed",
    }) if purpose in FileObject.model_fields["purpose"].annotation.__args__ else None  # type: ignore[union-attr]
    if meta is None:
        raise APIError(400, f"Unknown purpose {purpose!r}; use 'assistants'.", param="purpose", code="invalid_value")
    rt.store.write_blob(meta.id, data)
    rt.store.add(meta)
    return ok(meta)


@router.get("/v1/files")
async def list_files(request: Request) -> Response:
    purpose = request.query_params.get("purpose")
    page = core(request).store.page(FileObject, None, where={"purpose": purpose} if purpose else None, **paging(request))
    return ok(page.to_wire())


@router.get("/v1/files/{file_id}")
async def get_file(file_id: str, request: Request) -> Response:
    return ok(core(request).need(FileObject, file_id))


@router.delete("/v1/files/{file_id}")
async def delete_file(file_id: str, request: Request) -> Response:
    rt = core(request)
    rt.need(FileObject, file_id)
    rt.store.delete(file_id)
    rt.store.delete_blob(file_id)
    return ok({"id": file_id, "object": "file", "deleted": True})


@router.get("/v1/files/{file_id}/content")
async def file_content(file_id: str, request: Request) -> Response:
    rt = core(request)
    meta = rt.need(FileObject, file_id)
    data = await asyncio.to_thread(rt.store.read_blob, meta.id)
    return download(data, meta.filename)


def download(data: bytes, filename: str) -> Response:
    """A file's bytes as an attachment under its own name."""
    media = "image/png" if data[:8] == b"\x89PNG\r\n\x1a\n" else "application/octet-stream"
    disposition = f"attachment; filename*=UTF-8''{quote(filename, safe='')}"
    return Response(data, media_type=media, headers={"content-disposition": disposition})


MAX_NAME_BYTES = 255  # what Linux, macOS and Windows file systems all take


def safe_name(name: str | None) -> str:
    """A name every file system takes and that stays in its folder: no folder part, no NUL or control
    (or bidirectional override) characters, valid UTF-8, at most 255 bytes with the extension kept."""
    text = (name or "").encode("utf-8", "surrogateescape").decode("utf-8", "replace")
    text = "".join(c for c in text if unicodedata.category(c) not in ("Cc", "Cf"))
    base = Path(text.replace("\\", "/")).name.strip()
    if base in ("", ".", ".."):
        return "upload"
    stem, ext = os.path.splitext(base)
    if len(ext.encode()) > 32:  # not an extension: a name with a dot in it
        stem, ext = base, ""
    room = MAX_NAME_BYTES - len(ext.encode())
    stem = stem.encode()[:room].decode("utf-8", "ignore").rstrip() or "upload"
    return stem + ext
