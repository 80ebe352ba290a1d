"""Reading requests: JSON bodies checked against the SDK's parameter types and OpenAI's bounds, paging."""

from __future__ import annotations

import json
import re
from functools import lru_cache
from typing import Any, Callable, Iterator

from fastapi import Request
from pydantic import TypeAdapter, ValidationError

from .errors import APIError
from .fields import refuse_unknown


@lru_cache(maxsize=None)
def _adapter(params: type) -> TypeAdapter:
    return TypeAdapter(params)


def _materialize(value: Any, path: tuple = ()) -> Any:
    """Force pydantic's lazily validated iterables, so every item is checked now."""
    if isinstance(value, dict):
        return {k: _materialize(v, (*path, k)) for k, v in value.items()}
    if isinstance(value, (str, bytes)) or not hasattr(value, "__iter__"):
        return value
    items = []
    try:
        for v in value:
            items.append(_materialize(v, (*path, len(items))))
    except ValidationError as exc:
        raise _invalid(exc, path) from None
    return items


def _invalid(exc: ValidationError, prefix: tuple = ()) -> APIError:
    """A 400 naming the offending field the way the request spelled it."""
    first = exc.errors()[0]
    loc = [str(p) for p in (*prefix, *first["loc"]) if not _union_member(p)]
    field = ".".join(loc)
    got = first.get("input")
    hint = f" (got {json.dumps(got, default=str)[:80]})" if first["type"] != "missing" and not isinstance(got, dict) else ""
    message = f"Invalid value for '{field}': {first['msg']}{hint}." if field else f"Invalid request body: {first['msg']}."
    return APIError(400, message, param=field or None, code="invalid_value")


def _union_member(part: Any) -> bool:
    """The names pydantic gives union members ("CodeInterpreterToolParam", "str", "literal[...]") are not fields."""
    return isinstance(part, str) and (part[:1].isupper() or part in _TYPE_TAGS or "[" in part)


_TYPE_TAGS = {"str", "int", "float", "bool", "list", "dict", "none", "is-instance"}


def check(raw: Any, params: type) -> dict[str, Any]:
    if not isinstance(raw, dict):
        raise APIError(400, "The request body must be a JSON object.")
    try:
        checked = _materialize(_adapter(params).validate_python(raw))
    except ValidationError as exc:
        raise _invalid(exc) from None
    stream = raw.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise APIError(400, "Invalid value for 'stream': expected true or false.", param="stream", code="invalid_value")
    if stream is not None:
        checked["stream"] = stream
    _bounded(checked)
    return checked


#: OpenAI's documented bounds, which the SDK's parameter types do not carry: lengths of strings, lists
#: and maps, values of numbers. Checked at the top of a body and in the thread and messages it nests.
_BOUNDS: dict[str, tuple[float | None, float | None]] = {
    "name": (None, 256), "description": (None, 512), "instructions": (None, 256_000),
    "temperature": (0, 2), "top_p": (0, 1), "tools": (None, 128),
    "tools.*.file_search.max_num_results": (1, 50),
    "tools.*.file_search.ranking_options.score_threshold": (0, 1),
    "tool_resources.code_interpreter.file_ids": (None, 20),
    "tool_resources.file_search.vector_store_ids": (None, 1),
    "max_prompt_tokens": (256, None), "max_completion_tokens": (256, None),
    "truncation_strategy.last_messages": (1, None),
    "metadata": (None, 16), "metadata.*": (None, 512),
}
_SCOPES = ("", "thread.", "messages.*.", "thread.messages.*.", "additional_messages.*.")
_URL = re.compile(r"https?://(?:[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=]|%[0-9A-Fa-f]{2})+\Z")


def _bounded(body: dict[str, Any]) -> None:
    """A 400 naming the first field outside OpenAI's bounds."""
    for scope in _SCOPES:
        for path, (low, high) in _BOUNDS.items():
            for field, value in _find(body, (scope + path).split(".")):
                size = len(value) if isinstance(value, (str, list, dict)) else value
                if isinstance(size, bool) or not isinstance(size, (int, float)):
                    continue
                if (low is None or size >= low) and (high is None or size <= high):
                    continue
                unit = {str: " characters", list: " items", dict: " keys"}.get(type(value), "")
                limit = (f"between {low:g} and {high:g}" if low is not None and high is not None
                         else f"at most {high:g}{unit}" if high is not None else f"at least {low:g}")
                raise APIError(400, f"Invalid value for '{field}': it must be {limit}.", param=field,
                               code="invalid_value")
        for field, metadata in _find(body, (scope + "metadata").split(".")):
            long = next((k for k in metadata if len(k) > 64), None)
            if long is not None:
                raise APIError(400, f"Invalid key in '{field}': {long[:70]!r}... is longer than 64 characters.",
                               param=field, code="invalid_value")
        for field, url in _find(body, (scope + "content.*.image_url.url").split(".")):
            if not (isinstance(url, str) and _URL.match(url)):
                raise APIError(400, f"Invalid value for '{field}': use an absolute http(s) URL of the image.",
                               param=field, code="invalid_value")


def _find(value: Any, parts: list[str], trail: tuple[str, ...] = ()) -> Iterator[tuple[str, Any]]:
    """(dotted path, value) for each place in a body that a path with ``*`` wildcards names."""
    if not parts:
        yield ".".join(trail), value
        return
    head, rest = parts[0], parts[1:]
    if head == "*":
        items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
        for key, item in items:
            yield from _find(item, rest, (*trail, str(key)))
    elif isinstance(value, dict) and value.get(head) is not None:
        yield from _find(value[head], rest, (*trail, head))


async def body(request: Request, params: type, *, defaults: Callable[[dict], dict] | None = None,
               **path: str) -> dict[str, Any]:
    """The JSON body checked against the SDK's parameter type (path parameters count as given).

    ``defaults`` fills in what OpenAI's server defaulted but the SDK's type marks as required."""
    data = await request.body()
    if not data.strip():
        raw: Any = {}
    else:
        deep = False
        try:
            raw = json.loads(data, parse_constant=_not_json)
        except ValueError as exc:
            raise APIError(400, f"The request body is not valid JSON ({exc}). Send a JSON object.") from None
        except RecursionError:
            deep = True
        if deep or _too_deep(raw):
            raise APIError(400, f"The request body nests more than {MAX_DEPTH} levels deep. "
                           "Send a flatter JSON object.")
        if _SURROGATE_ESCAPE.search(data) and _has_lone_surrogate(raw):
            raise APIError(400, "The request body holds an unpaired UTF-16 surrogate escape (like \\ud800), "
                           "which is not text. Send valid Unicode strings.")
    if isinstance(raw, dict):
        refuse_unknown(raw, params, given=tuple(path))
        raw = {**(defaults(raw) if defaults else raw), **path}
    checked = check(raw, params)
    for name in path:
        checked.pop(name, None)
    return checked


_SURROGATE_ESCAPE = re.compile(rb"\\u[dD][89a-fA-F]")


#: deepest nesting of lists and objects a body may have (function parameter schemas nest a few levels)
MAX_DEPTH = 64


def _too_deep(value: Any) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if isinstance(item, (dict, list)):
            if depth > MAX_DEPTH:
                return True
            stack.extend((child, depth + 1) for child in (item.values() if isinstance(item, dict) else item))
    return False


def _not_json(constant: str) -> None:
    raise ValueError(f"{constant} is not a JSON number")


def _has_lone_surrogate(value: Any) -> bool:
    try:
        json.dumps(value, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


def paging(request: Request) -> dict[str, Any]:
    q = request.query_params
    try:
        limit = int(q.get("limit", 20))
    except ValueError:
        raise APIError(400, "'limit' must be an integer between 1 and 100.", param="limit") from None
    if not 1 <= limit <= 100:
        raise APIError(400, f"'limit' must be between 1 and 100, got {limit}.", param="limit")
    order = q.get("order", "desc")
    if order not in ("asc", "desc"):
        raise APIError(400, f"'order' must be 'asc' or 'desc', got {order!r}.", param="order")
    return {"limit": limit, "order": order, "after": q.get("after"), "before": q.get("before")}
