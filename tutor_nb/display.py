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
    searches = _search_calls(obj)
    try:
        if current_shell() is not None:
            from IPython.display import display

            display(bundle, raw=True, metadata=metadata)
            for call in searches:  # what was searched and found, readable at a glance
                display(call)
            return
    except Exception:
        pass
    print("\n\n".join([bundle["text/plain"], *map(str, searches)]))


def _search_calls(obj: Any) -> list:
    """The file_search calls in ``obj`` (run steps, a Response), or [] for anything else."""
    try:
        from .searches import search_calls

        return search_calls(obj)
    except Exception:
        return []


# -- show_message ------------------------------------------------------------------------


def _message_parts(obj: Any) -> list[dict]:
    """Assistant messages (or a page of them, a Response, plain text) as text parts.

    Each part: ``{"role", "text", "links": [(start, end, file_id, text)], "images": [file_id]}``.
    """
    if isinstance(obj, str):
        return [{"role": "assistant", "text": obj, "links": [], "images": []}]
    data = to_jsonable(obj)
    if isinstance(data, dict) and isinstance(data.get("data"), list):
        data = data["data"]
    if isinstance(data, dict) and isinstance(data.get("output"), list):  # a Responses API response
        data = [item for item in data["output"] if isinstance(item, dict) and item.get("type") == "message"]
    items = data if isinstance(data, list) else [data]
    parts = []
    for item in items:
        if not isinstance(item, dict):
            continue
        content = item.get("content")
        content = [{"type": "text", "text": {"value": content}}] if isinstance(content, str) else content or []
        part = {"role": item.get("role", "assistant"), "text": "", "links": [], "images": []}
        for block in content:
            kind = block.get("type")
            if kind == "image_file":
                part["images"].append(block["image_file"]["file_id"])
            elif kind in ("text", "output_text"):
                text = block["text"] if kind == "text" else {"value": block.get("text", ""), "annotations": block.get("annotations", [])}
                offset = len(part["text"]) + (2 if part["text"] else 0)
                part["text"] += ("\n\n" if part["text"] else "") + (text.get("value") or "")
                for note in text.get("annotations") or []:
                    file_id = (note.get("file_path") or {}).get("file_id") or note.get("file_id")
                    name = note.get("text") or note.get("filename")
                    if note.get("type") in ("file_path", "container_file_citation") and file_id and name:
                        start = note.get("start_index", 0)
                        part["links"].append((offset + start, offset + note.get("end_index", start), file_id, name,
                                              note.get("container_id")))
        parts.append(part)
    if not parts:
        raise TypeError(f"show_message needs a message, a page or list of messages, a Response or text, not {type(obj).__name__}.")
    return parts


def _fetch(client: Any, file_id: str, container_id: str | None = None) -> bytes | None:
    if client is None:
        return None
    try:
        if container_id:  # a Responses API container file
            return client.containers.files.content.retrieve(file_id, container_id=container_id).read()
        return client.files.content(file_id).read()
    except Exception:  # shown as a link that says it could not be fetched
        return None


def message_bundle(obj: Any, client: Any = None, *, colab: bool | None = None) -> dict[str, str]:
    """``text/html`` (Markdown, math for MathJax, files as download links) and ``text/plain``.

    In Colab, whose HTML outputs typeset no math, ``text/markdown`` (which it typesets) instead
    of HTML, files linked as data URLs.
    """
    import re
    import sys

    from .panel import render

    colab = "google.colab" in sys.modules if colab is None else colab
    htmls, markdowns, texts = [], [], []
    for part in _message_parts(obj):
        links, spans = [], []
        for start, end, file_id, text, container_id in part["links"]:
            data = _fetch(client, file_id, container_id)
            fits = data is not None and len(data) <= render.MAX_EMBED_BYTES
            links.append(render.FileLink(text.rsplit("/", 1)[-1] or file_id, data if fits else None))
            spans.append((start, end))
        source = render.links_markdown(part["text"], spans)
        images = [data for data in (_fetch(client, fid) for fid in part["images"]) if data]
        first = not texts and part["role"] == "assistant"
        who = "" if first else render.role_html(part["role"].title())
        htmls.append(f'<div class="tnb-message">{who}{"".join(map(render.image_html, images))}'
                     f'{render.markdown_html(source, links)}</div>')
        linked = re.sub(r"tutornb-file-(\d+)", lambda m: links[int(m.group(1))].url(), source)
        markdowns.append(("" if first else f"**{part['role'].title()}**\n\n")
                         + "".join(f"![image]({render.image_url(data)})\n\n" for data in images)
                         + render.convert_math_delimiters(linked))
        texts.append(("" if first else f"[{part['role']}]\n") + render.plain_text(part["text"]))
    rich = {"text/markdown": "\n\n".join(markdowns)} if colab else {"text/html": "\n".join(htmls)}
    return {**rich, "text/plain": "\n\n".join(texts)}


def show_message(obj: Any, *, client: Any = None) -> None:
    """Show an answer as the chat panel does: Markdown, typeset math, files as download links.

    ``obj``: a Message, a page or list of them, a Responses API response, or Markdown text.
    With ``client``, files the answer links to (``sandbox:/mnt/data/...``) and its images are
    fetched so they download and show. In a terminal, the text is printed with math as plain
    text (``x = (5 ± 1)/2``).
    """
    bundle = message_bundle(obj, client)
    if current_shell() is not None:
        from IPython.display import display

        display(bundle, raw=True)
        return
    print(bundle["text/plain"])
