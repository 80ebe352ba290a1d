"""/v1/vector_stores: stores, their files and file batches, and search.

The work is done by :class:`~tutor_nb.runtime.search.stores.VectorStores`; this module reads
requests with the SDK's parameter types and answers with its objects. Searching and reading a
file's text run off the event loop, as they can take a while on large stores and files.
"""

from __future__ import annotations

import asyncio
from typing import Any, Callable, TypeVar

from fastapi import APIRouter, Request, Response
from openai.types import vector_store_create_params, vector_store_search_params, vector_store_update_params
from openai.types.vector_stores import file_batch_create_params, file_create_params, file_update_params

from ..http import APIError, body, ok, paging
from ..search.stores import VectorStores
from .common import answer as _answer
from .common import core

router = APIRouter()
T = TypeVar("T")


def _stores(request: Request) -> VectorStores:
    return core(request).vector_stores


async def _answer_later(fn: Callable[..., T], *args: Any) -> T:
    return await asyncio.to_thread(_answer, fn, *args)


def _filter(request: Request) -> str | None:
    return request.query_params.get("filter")


# -- stores ------------------------------------------------------------------------------------


@router.post("/v1/vector_stores")
async def create_vector_store(request: Request) -> Response:
    p = await body(request, vector_store_create_params.VectorStoreCreateParams)
    return ok(_answer(_stores(request).create, p))


@router.get("/v1/vector_stores")
async def list_vector_stores(request: Request) -> Response:
    return ok(_stores(request).page(**paging(request)).to_wire())


@router.get("/v1/vector_stores/{vector_store_id}")
async def get_vector_store(vector_store_id: str, request: Request) -> Response:
    return ok(_answer(_stores(request).get, vector_store_id))


@router.post("/v1/vector_stores/{vector_store_id}")
async def update_vector_store(vector_store_id: str, request: Request) -> Response:
    p = await body(request, vector_store_update_params.VectorStoreUpdateParams)
    return ok(_answer(_stores(request).update, vector_store_id, p))


@router.delete("/v1/vector_stores/{vector_store_id}")
async def delete_vector_store(vector_store_id: str, request: Request) -> Response:
    return ok(await _answer_later(_stores(request).delete, vector_store_id))


@router.post("/v1/vector_stores/{vector_store_id}/search")
async def search_vector_store(vector_store_id: str, request: Request) -> Response:
    p = await body(request, vector_store_search_params.VectorStoreSearchParams)
    return ok(await _answer_later(_stores(request).search_page, vector_store_id, p))


# -- files -------------------------------------------------------------------------------------


@router.post("/v1/vector_stores/{vector_store_id}/files")
async def create_vector_store_file(vector_store_id: str, request: Request) -> Response:
    p = await body(request, file_create_params.FileCreateParams)
    if not p.get("file_id"):
        raise APIError(400, "Missing required parameter: 'file_id'.", param="file_id", code="missing_required_parameter")
    return ok(_answer(_stores(request).attach, vector_store_id, p))


@router.get("/v1/vector_stores/{vector_store_id}/files")
async def list_vector_store_files(vector_store_id: str, request: Request) -> Response:
    page = _answer(lambda: _stores(request).file_page(vector_store_id, status=_filter(request), **paging(request)))
    return ok(page.to_wire())


@router.get("/v1/vector_stores/{vector_store_id}/files/{file_id}")
async def get_vector_store_file(vector_store_id: str, file_id: str, request: Request) -> Response:
    return ok(_answer(_stores(request).file, vector_store_id, file_id))


@router.post("/v1/vector_stores/{vector_store_id}/files/{file_id}")
async def update_vector_store_file(vector_store_id: str, file_id: str, request: Request) -> Response:
    p = await body(request, file_update_params.FileUpdateParams, vector_store_id=vector_store_id)
    if "attributes" not in p:
        raise APIError(400, "Missing required parameter: 'attributes'.", param="attributes",
                       code="missing_required_parameter")
    return ok(_answer(_stores(request).set_attributes, vector_store_id, file_id, p["attributes"]))


@router.delete("/v1/vector_stores/{vector_store_id}/files/{file_id}")
async def delete_vector_store_file(vector_store_id: str, file_id: str, request: Request) -> Response:
    return ok(await _answer_later(_stores(request).detach, vector_store_id, file_id))


@router.get("/v1/vector_stores/{vector_store_id}/files/{file_id}/content")
async def vector_store_file_content(vector_store_id: str, file_id: str, request: Request) -> Response:
    text = await _answer_later(_stores(request).content, vector_store_id, file_id)
    return ok({"object": "vector_store.file_content.page", "data": [{"type": "text", "text": text}],
               "has_more": False, "next_page": None})


# -- file batches ------------------------------------------------------------------------------


@router.post("/v1/vector_stores/{vector_store_id}/file_batches")
async def create_file_batch(vector_store_id: str, request: Request) -> Response:
    p = await body(request, file_batch_create_params.FileBatchCreateParams)
    return ok(_answer(_stores(request).create_batch, vector_store_id, p))


@router.get("/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}")
async def get_file_batch(vector_store_id: str, batch_id: str, request: Request) -> Response:
    return ok(_answer(_stores(request).batch, vector_store_id, batch_id))


@router.post("/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/cancel")
async def cancel_file_batch(vector_store_id: str, batch_id: str, request: Request) -> Response:
    return ok(await _answer_later(_stores(request).cancel_batch, vector_store_id, batch_id))


@router.get("/v1/vector_stores/{vector_store_id}/file_batches/{batch_id}/files")
async def list_file_batch_files(vector_store_id: str, batch_id: str, request: Request) -> Response:
    stores = _stores(request)

    def page() -> Any:
        stores.batch(vector_store_id, batch_id)
        return stores.file_page(vector_store_id, status=_filter(request), batch=batch_id, **paging(request))

    return ok(_answer(page).to_wire())
