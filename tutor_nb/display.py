"""``show_json``: look inside any API object, in any notebook front end or in plain Python.

One display carries both ``application/json`` (the collapsible tree JupyterLab and VS Code
draw) and a readable ``text/plain`` for front ends without a JSON renderer, so nobody sees
``<IPython.core.display.JSON object>``.
"""

from __future__ import annotations

import json
from typing import Any

_PAGE_KEYS = ("data", "object", "first_id", "last_id", "has_more")
_MAX_DEPTH = 64


def current_shell() -> Any | None:
    """The running IPython shell, or None in plain Python."""
    try:
        import IPython

        return IPython.get_ipython()
    except Exception:
        return None


def safe_repr(obj: Any) -> str:
    """``repr`` that cannot raise."""
    try:
        return repr(obj)
    except Exception as error:
        return f"<{type(obj).__name__} object; repr failed: {error}>"


def _dump_model(obj: Any) -> Any:
    try:
        return obj.model_dump(mode="json", warnings=False)
    except TypeError:  # model_dump without these keywords (pydantic v1 shims, other libraries)
        return obj.model_dump()


def _page_keys_first(dumped: dict, page: Any) -> dict:
    """Order a page's keys as the API sends them: data, object, first_id, last_id, has_more."""
    for key in _PAGE_KEYS[1:]:
        if key not in dumped and hasattr(page, key):
            dumped[key] = getattr(page, key)
    ordered = {key: dumped[key] for key in _PAGE_KEYS if key in dumped}
    ordered.update((key, value) for key, value in dumped.items() if key not in ordered)
    return ordered


def to_jsonable(obj: Any, _depth: int = 0) -> Any:
    """Turn SDK objects, pages, and containers of them into plain JSON data.

    Leaves nothing JSON cannot hold: anything unknown becomes its ``repr`` string.
    """
    if _depth > _MAX_DEPTH:
        return safe_repr(obj)
    if obj is None or isinstance(obj, (bool, int, str)):
        return obj
    if isinstance(obj, float):
        return obj if obj == obj and obj not in (float("inf"), float("-inf")) else safe_repr(obj)
    if isinstance(obj, dict):
        return {str(key): to_jsonable(value, _depth + 1) for key, value in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [to_jsonable(item, _depth + 1) for item in obj]
    data = getattr(obj, "data", None)
    if isinstance(data, list) and not isinstance(obj, type):
        dumped = _dump_model(obj) if hasattr(obj, "model_dump") else {}
        dumped = to_jsonable(dumped, _depth + 1) if isinstance(dumped, dict) else {}
        dumped["data"] = to_jsonable(data, _depth + 1)
        return to_jsonable(_page_keys_first(dumped, obj), _depth + 1)
    for convert in (_dump_model, lambda o: o.to_dict()):
        try:
            return to_jsonable(convert(obj), _depth + 1)
        except Exception:
            continue
    return safe_repr(obj)


def _block(text: str, pad: str) -> str:
    """A multi-line string as an indented literal block between triple quotes."""
    lines = "\n".join(pad + "  " + line if line else "" for line in text.split("\n"))
    return f'"""\n{lines}\n{pad}  """'


def readable_json(data: Any, _pad: str = "") -> str:
    """``json.dumps(indent=2, ensure_ascii=False)``, except that strings holding newlines
    (generated code, logs) are written as indented ``\"\"\"`` blocks instead of ``\\n`` escapes."""
    inner = _pad + "  "
    if isinstance(data, dict) and data:
        items = (f"{inner}{json.dumps(key, ensure_ascii=False)}: {readable_json(value, inner)}"
                 for key, value in data.items())
        return "{\n" + ",\n".join(items) + "\n" + _pad + "}"
    if isinstance(data, list) and data:
        return "[\n" + ",\n".join(inner + readable_json(item, inner) for item in data) + "\n" + _pad + "]"
    if isinstance(data, str) and "\n" in data:
        return _block(data, _pad)
    return json.dumps(data, ensure_ascii=False)


def _parse_json_string(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def json_bundle(obj: Any, *, expanded: bool = False) -> tuple[dict, dict]:
    """The mime bundle and metadata ``show_json`` displays."""
    note = None
    data = _parse_json_string(obj) if isinstance(obj, str) else to_jsonable(obj)
    if isinstance(data, str) and not isinstance(obj, str):
        note = f"(show_json: {type(obj).__name__} is not JSON-like, so this is its repr)"
    text = readable_json(data)
    if note:
        return {"text/plain": f"{data}\n{note}"}, {}
    if not isinstance(data, (dict, list)):
        return {"text/plain": text}, {}
    return ({"application/json": data, "text/plain": text},
            {"application/json": {"expanded": expanded}})


def show_json(obj: Any, *, expanded: bool = False) -> None:
    """Show an API object (or page, dict, list, JSON string) as JSON; never raises.

    ``expanded`` opens the whole tree in front ends that draw ``application/json``.
    """
    try:
        bundle, metadata = json_bundle(obj, expanded=expanded)
    except Exception as error:  # never let a display helper break a learner's cell
        bundle, metadata = {"text/plain": f"{safe_repr(obj)}\n(show_json could not convert it: {error})"}, {}
    try:
        if current_shell() is not None:
            from IPython.display import display

            display(bundle, raw=True, metadata=metadata)
            return
    except Exception:
        pass
    print(bundle["text/plain"])
