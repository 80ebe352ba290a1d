"""Which fields a request may carry: the ones the SDK's parameter types name, at every depth.

OpenAI refused a field it did not know with a 400 naming it; pydantic would silently drop it, so old
code (the v1 ``file_ids``) and misspellings would look fine while doing nothing. The check walks the
body beside the ``TypedDict`` it is read as: nested ``TypedDict``\\s, lists of them, and unions told
apart by their ``type`` literal. Free-form values (JSON Schemas, metadata) are not walked into.
"""

from __future__ import annotations

import collections.abc
from functools import lru_cache
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints

from typing_extensions import Annotated, NotRequired, Required, is_typeddict

from .errors import APIError

#: what replaced a v1 Assistants API field, by the kind of body it was sent in
_V1_FIELDS = {
    ("file_ids", "message"): "attachments: attachments=[{\"file_id\": ..., \"tools\": [{\"type\": \"code_interpreter\"}]}]",
    ("file_ids", "assistant"): "tool_resources: tool_resources={\"code_interpreter\": {\"file_ids\": [...]}}",
}


@lru_cache(maxsize=None)
def _fields(typed: type) -> dict[str, Any]:
    """A TypedDict's fields by the name they have on the wire (an alias where the SDK declares one)."""
    hints = get_type_hints(typed, include_extras=True)
    fields = {}
    for name, hint in hints.items():
        alias = next((getattr(m, "alias", None) for m in getattr(hint, "__metadata__", ()) if getattr(m, "alias", None)), None)
        fields[alias or name] = hint
    return fields


def _bare(hint: Any) -> Any:
    """A type without Required/NotRequired/Annotated around it."""
    while get_origin(hint) in (Required, NotRequired, Annotated) or getattr(hint, "__metadata__", None):
        hint = get_args(hint)[0]
    return hint


def _typed_dict_for(hint: Any, value: dict) -> type | None:
    """The TypedDict a dict value is read as, or None when it is free-form (or its kind is unknown)."""
    hint = _bare(hint)
    if is_typeddict(hint):
        return hint
    if get_origin(hint) is Union:
        members = [m for m in (_bare(a) for a in get_args(hint)) if is_typeddict(m)]
        if len(members) == 1:
            return members[0]
        kind = value.get("type")
        matching = [m for m in members if get_origin(literal := _bare(_fields(m).get("type"))) is Literal
                    and kind in get_args(literal)]
        if kind is None and members and not any(set(value) <= set(_fields(m)) for m in members):
            # no kind given and no member knows every key: read it as the member that knows the most
            return max(members, key=lambda m: len(set(value) & set(_fields(m))))
        # several members can share a type (a "message" is an easy input message or an output message
        # sent back): the one naming every field given
        return next((m for m in matching if set(value) <= set(_fields(m))), matching[0] if matching else None)
    return None


def _item_type(hint: Any) -> Any | None:
    """The item type of a list-like hint (Iterable[X], List[X], Sequence[X]); None otherwise."""
    hint = _bare(hint)
    if get_origin(hint) is Union:
        found = [_item_type(a) for a in get_args(hint)]
        found = [f for f in found if f is not None]
        return found[0] if len(found) == 1 else None
    origin = get_origin(hint)
    if origin in (list, collections.abc.Iterable, collections.abc.Sequence, tuple) and get_args(hint):
        return get_args(hint)[0]
    return None


def unknown_field(value: Any, typed: type, path: tuple[str, ...] = ()) -> str | None:
    """The dotted path of the first field in ``value`` that ``typed`` (a TypedDict) does not name."""
    if not isinstance(value, dict):
        return None
    fields = _fields(typed)
    for key, item in value.items():
        if key not in fields:
            return ".".join((*path, key))
        hint = fields[key]
        if isinstance(item, dict):
            inner = _typed_dict_for(hint, item)
            found = unknown_field(item, inner, (*path, key)) if inner is not None else None
        elif isinstance(item, list) and (item_hint := _item_type(hint)) is not None:
            found = next((f for i, element in enumerate(item) if isinstance(element, dict)
                          and (inner := _typed_dict_for(item_hint, element)) is not None
                          and (f := unknown_field(element, inner, (*path, key, str(i))))), None)
        else:
            found = None
        if found:
            return found
    return None


def refuse_unknown(raw: dict[str, Any], typed: type, *, given: tuple[str, ...] = ()) -> None:
    """A 400 naming the first field ``typed`` does not know (``given``: names taken from the path or query)."""
    _refuse_v1_tools(raw)
    found = unknown_field({k: v for k, v in raw.items() if k not in given and k != "stream"}, typed)
    if found is None:
        return
    name = found.rsplit(".", 1)[-1]
    parent = found.split(".")[:-1]
    in_message = "message" in typed.__name__.lower() if not parent else any("messages" in part for part in parent)
    kind = "message" if in_message else "assistant"
    replaced = _V1_FIELDS.get((name, kind))
    if "." not in found:
        message = f"Unrecognized request argument supplied: {found}."
    else:
        message = f"Unknown parameter: '{found}'."
    if replaced:
        message += f" '{name}' is from the v1 Assistants API; v2 replaced it with {replaced}."
    raise APIError(400, message, param=found, code="unknown_parameter")


def _refuse_v1_tools(raw: dict[str, Any]) -> None:
    for index, tool in enumerate(raw.get("tools") or [] if isinstance(raw.get("tools"), list) else []):
        if isinstance(tool, dict) and tool.get("type") == "retrieval":
            raise APIError(400, f"Invalid value for 'tools.{index}.type': 'retrieval' is the v1 Assistants API's tool; "
                           "v2 calls it file_search: tools=[{\"type\": \"file_search\"}], with the files in a vector "
                           "store (tool_resources={\"file_search\": {\"vector_store_ids\": [...]}}).",
                           param=f"tools.{index}.type", code="invalid_value")
