"""``code_calls``: the code an assistant ran, and what it printed, from whatever the API returned.

Works on run steps (Assistants API), Responses (Responses API), the pages and lists they
come in, and the same shapes saved as JSON; everything is read as plain JSON data first, so
SDK objects and saved files go through one path.
"""

from __future__ import annotations

import base64
import html
import json
import re
from dataclasses import dataclass, field
from typing import Any, Literal

from .display import to_jsonable
from .errors import NoCodeCallsError, RunNotCompletedError

Source = Literal["assistants", "responses"]

# Objects that hold no code themselves but are easily passed by mistake, and what to pass instead.
_HINTS = {
    "thread.run": "a Run holds no code; pass its steps: "
                  "client.beta.threads.runs.steps.list(thread_id=run.thread_id, run_id=run.id)",
    "thread.message": "messages hold the answer text, not the code; pass the run's steps: "
                      "client.beta.threads.runs.steps.list(thread_id=..., run_id=...)",
    "thread": "a Thread holds no code; pass a run's steps",
    "assistant": "an Assistant holds no code; pass a run's steps",
}


def code_html(code: str) -> str:
    """Code highlighted as HTML with inline styles (no stylesheet needed, so Colab shows colours)."""
    try:
        from pygments import highlight
        from pygments.formatters import HtmlFormatter
        from pygments.lexers import PythonLexer

        return highlight(code, PythonLexer(), HtmlFormatter(noclasses=True, nowrap=False))
    except Exception:
        return f"<pre>{html.escape(code)}</pre>"


@dataclass(repr=False)
class CodeCall:
    """One code-interpreter call: the code, its outputs, where it came from.

    ``outputs`` are dicts: ``{"type": "logs", "logs": str}``, ``{"type": "image",
    "file_id": ...}`` or ``{"type": "image", "url": ...}``; other kinds are kept as given.
    """

    code: str
    outputs: list[dict] = field(default_factory=list)
    status: str | None = None
    source: Source = "assistants"
    id: str | None = None
    step_id: str | None = None
    run_id: str | None = None
    thread_id: str | None = None
    response_id: str | None = None
    container_id: str | None = None
    client: Any = field(default=None, compare=False)

    @property
    def logs(self) -> str:
        """Everything the call printed, as one string."""
        return "".join(out.get("logs") or "" for out in self.outputs if out.get("type") == "logs")

    @property
    def images(self) -> list[dict]:
        return [out for out in self.outputs if out.get("type") == "image"]

    @property
    def ids(self) -> dict[str, str]:
        names = ("id", "step_id", "run_id", "thread_id", "response_id", "container_id")
        return {name: getattr(self, name) for name in names if getattr(self, name)}

    def image_bytes(self, client: Any = None) -> list[bytes]:
        """The images' bytes: decoded from data URLs, or fetched by file id through ``client``
        (or the client this call carries). Images it cannot reach are left out."""
        found = (_image_bytes(image, client or self.client) for image in self.images)
        return [data for data in found if data is not None]

    def _image_html(self, image: dict) -> str:
        url = image.get("url")
        if not url and self.client is not None:
            try:
                data = _image_bytes(image, self.client)
            except Exception:  # unreachable file: show the label instead
                data = None
            if data:
                url = "data:image/png;base64," + base64.b64encode(data).decode()
        if url:
            return f'<img src="{html.escape(url)}" style="max-width:100%">'
        label = image.get("file_id") or "image"
        return f"<div><code>[image {html.escape(label)}]</code></div>"

    def _header(self) -> str:
        where = self.step_id or self.response_id or "?"
        return f"code_interpreter call {self.id or '?'} ({self.source} {where}, {self.status or 'unknown'})"

    def _repr_html_(self) -> str:
        parts = [f"<div><small>{html.escape(self._header())}</small></div>", code_html(self.code)]
        if self.logs:
            parts.append('<div><small>logs</small></div><pre style="margin-top:0">'
                         f"{html.escape(self.logs)}</pre>")
        parts.extend(self._image_html(image) for image in self.images)
        return "<div>" + "\n".join(parts) + "</div>"

    def __str__(self) -> str:
        lines = [self._header(), "--- code ---", self.code]
        if self.logs:
            lines += ["--- logs ---", self.logs]
        for image in self.images:
            lines.append(f"[image {image.get('file_id') or image.get('url', '')[:60]}]")
        return "\n".join(lines)

    def __repr__(self) -> str:
        first = self.code.strip().split("\n", 1)[0] if self.code.strip() else ""
        return (f"CodeCall({self.id!r}, status={self.status!r}, "
                f"{len(self.code.splitlines())} lines: {first[:40]!r}, logs={len(self.logs)} chars, "
                f"images={len(self.images)})")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict:
        return {"text/plain": str(self), "text/html": self._repr_html_()}


def _image_bytes(image: dict, client: Any) -> bytes | None:
    url, file_id = image.get("url") or "", image.get("file_id")
    if url.startswith("data:") and "," in url:
        return base64.b64decode(url.split(",", 1)[1])
    if file_id and client is not None:
        return client.files.content(file_id).read()
    return None


def _output(raw: dict) -> dict:
    kind = raw.get("type")
    if kind == "logs":
        return {"type": "logs", "logs": raw.get("logs") or ""}
    if kind == "image":
        image = raw.get("image") or {}
        out = {"type": "image"}
        for key, value in (("file_id", image.get("file_id") or raw.get("file_id")), ("url", raw.get("url"))):
            if value:
                out[key] = value
        return out
    return dict(raw)


def _assistants_call(tool_call: dict, step: dict) -> CodeCall:
    inner = tool_call.get("code_interpreter") or {}
    return CodeCall(
        code=inner.get("input") or "",
        outputs=[_output(out) for out in inner.get("outputs") or []],
        status=step.get("status"),
        source="assistants",
        id=tool_call.get("id"),
        step_id=step.get("id"),
        run_id=step.get("run_id"),
        thread_id=step.get("thread_id"),
    )


def _responses_call(item: dict, response_id: str | None) -> CodeCall:
    return CodeCall(
        code=item.get("code") or "",
        outputs=[_output(out) for out in item.get("outputs") or []],
        status=item.get("status"),
        source="responses",
        id=item.get("id"),
        response_id=response_id,
        container_id=item.get("container_id"),
    )


def _unknown(data: Any) -> NoCodeCallsError:
    hint = _HINTS.get(data.get("object")) if isinstance(data, dict) else None
    if isinstance(data, dict):
        obj = data.get("object")
        shape = f"a {obj!r} object" if isinstance(obj, str) else f"a dict with keys {sorted(data)[:8]}"
    else:
        shape = f"a {type(data).__name__}"
    return NoCodeCallsError(
        f"Cannot find code-interpreter calls in {shape}: "
        + (hint or "pass run steps (client.beta.threads.runs.steps.list(...)), one run step, "
                   "a Response, its output items, or the same saved as JSON."))


def _from_data(data: Any, *, in_list: bool = False) -> list[CodeCall]:
    if isinstance(data, list):
        return [call for item in data for call in _from_data(item, in_list=True)]
    if not isinstance(data, dict):
        raise _unknown(data)
    kind, obj = data.get("type"), data.get("object")
    if obj == "list" or (isinstance(data.get("data"), list) and obj is None):
        return _from_data(data["data"])
    if obj == "thread.run.step" or "step_details" in data:
        details = data.get("step_details") or {}
        return [_assistants_call(tool_call, data) for tool_call in details.get("tool_calls") or []
                if tool_call.get("type") == "code_interpreter"]
    if obj == "response" or (isinstance(data.get("output"), list) and obj is None):
        return [_responses_call(item, data.get("id")) for item in data["output"]
                if isinstance(item, dict) and item.get("type") == "code_interpreter_call"]
    if kind == "tool_calls" and isinstance(data.get("tool_calls"), list):
        return [_assistants_call(tool_call, {}) for tool_call in data["tool_calls"]
                if tool_call.get("type") == "code_interpreter"]
    if kind == "code_interpreter" and isinstance(data.get("code_interpreter"), dict):
        return [_assistants_call(data, {})]
    if kind == "code_interpreter_call":
        return [_responses_call(data, None)]
    if kind == "response.output_item.done" and isinstance(data.get("item"), dict):
        # a stream's events: each finished item once (response.completed repeats them, so in a list it is skipped)
        return _from_data(data["item"], in_list=True)
    if isinstance(kind, str) and kind.startswith("response.") and isinstance(data.get("response"), dict):
        return [] if in_list else _from_data(data["response"])
    if in_list and isinstance(kind, str) and obj not in _HINTS:
        return []  # another kind of item (a message, a function call) next to code calls
    raise _unknown(data)


def code_calls(x: Any, *, client: Any = None) -> list[CodeCall]:
    """Every code-interpreter call in ``x``, in order.

    ``x``: a page or list of run steps, one run step, a Response or its output items, a Responses
    stream's events (or its ``response.completed`` event), the same as JSON text or loaded JSON, or CodeCalls. A page of steps without code gives [] when
    its run completed; when the run did not (it failed, was cancelled, waits for tool outputs),
    :class:`RunNotCompletedError` says how it ended and why; steps of a run still going give the calls
    so far (possibly none), so a loop can watch for code. With ``client``, the calls can fetch images by
    file id to show them inline.
    """
    return _code_calls(x, client, while_running=True)


def _code_calls(x: Any, client: Any, *, while_running: bool) -> list[CodeCall]:
    if isinstance(x, CodeCall):
        return [x]
    if isinstance(x, (list, tuple)) and x and all(isinstance(item, CodeCall) for item in x):
        return list(x)
    data = _parse(x)
    if isinstance(data, dict) and data.get("object") == "thread.run" and data.get("status") != "completed":
        raise RunNotCompletedError(_not_completed(data))
    calls = _from_data(data)
    if not calls:
        unfinished = _unfinished(data) or _unfinished_run_of_page(x, while_running=while_running)
        if unfinished:
            raise RunNotCompletedError(unfinished)
    for call in calls:
        call.client = client
    return calls


def _parse(x: Any) -> Any:
    if isinstance(x, (str, bytes)):
        try:
            x = json.loads(x)
        except ValueError:
            raise NoCodeCallsError(
                "This text is not JSON, so it holds no saved run steps or Response. To run code "
                "text directly, use tutor_nb.rerun(code).") from None
    return to_jsonable(x)


_ENDINGS = {
    "failed": "failed", "cancelled": "was cancelled", "cancelling": "is being cancelled", "expired": "expired",
    "incomplete": "ended incomplete", "queued": "has not started yet", "in_progress": "is still running",
    "requires_action": "is waiting for your function outputs",
}
_WHAT_TO_DO = {
    "requires_action": "Submit them with client.beta.threads.runs.submit_tool_outputs_and_poll(...), then read "
                       "the steps again.",
    "queued": "Wait for it with client.beta.threads.runs.poll(...).",
    "in_progress": "Wait for it with client.beta.threads.runs.poll(...).",
}


def _not_completed(run: dict) -> str:
    """How a run that did not complete ended, and why, in the words of its own fields."""
    status = run.get("status") or "unknown"
    error = run.get("last_error") or {}
    incomplete = (run.get("incomplete_details") or {}).get("reason")
    why = error.get("message") or (f"it reached {incomplete}" if incomplete else "")
    head = f"No code to show: the run {run.get('id') or ''} {_ENDINGS.get(status, status)}".replace("  ", " ")
    advice = _WHAT_TO_DO.get(status, "Check run.status and run.last_error after create_and_poll before reading "
                                     "the run's steps.")
    return f"{head}{': ' + why if why else '.'} {advice}"


def _unfinished(data: Any) -> str | None:
    """The reason a step in ``data`` ended without completing, if one did."""
    steps = data.get("data") if isinstance(data, dict) and isinstance(data.get("data"), list) else data
    for step in steps if isinstance(steps, list) else [steps]:
        if isinstance(step, dict) and step.get("object") == "thread.run.step" and step.get("status") in (
                "failed", "cancelled", "expired"):
            return _not_completed({"id": step.get("run_id"), "status": step["status"], "last_error": step.get("last_error")})
    return None


_STEPS_PATH = re.compile(r"/threads/([^/]+)/runs/([^/]+)/steps")


def _unfinished_run_of_page(page: Any, *, while_running: bool) -> str | None:
    """For a page of steps from the SDK, how its run ended if it did not complete (asked through the page's
    own client, as a run that failed before any step leaves an empty page that cannot say why); nothing for
    a run still going when ``while_running``."""
    try:
        match = _STEPS_PATH.search(str(page._options.url))
        if match is None:
            return None
        run = page._client.beta.threads.runs.retrieve(match.group(2), thread_id=match.group(1))
    except Exception:  # not an SDK page, or the server is gone: there is nothing more to say
        return None
    if run.status == "completed" or (while_running and run.status in ("queued", "in_progress")):
        return None
    return _not_completed(to_jsonable(run))


def last_code(x: Any) -> str:
    """The code of the last code-interpreter call in ``x``."""
    calls = _code_calls(x, None, while_running=False)
    if not calls:
        raise NoCodeCallsError(
            "No code-interpreter calls here: the assistant answered without running code. "
            "Ask it to use code (the assistant needs tools=[{'type': 'code_interpreter'}]).")
    return calls[-1].code
