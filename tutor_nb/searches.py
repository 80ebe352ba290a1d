"""``search_calls``: what an assistant searched its files for, and what it found.

Like :func:`tutor_nb.code_calls` for code, it reads run steps (Assistants API: ``file_search``
tool calls), Responses (``file_search_call`` items), the pages and lists they come in, and the
same saved as JSON. Each :class:`SearchCall` shows as its queries and a short list of hits (file,
score, snippet) in a notebook, and as plain text anywhere else.
"""

from __future__ import annotations

import html
import json
from dataclasses import dataclass, field
from typing import Any, Literal

from .calls import _parse
from .errors import TutorNBError

Source = Literal["assistants", "responses"]
SNIPPET = 160  # characters of a hit shown


class NoSearchCallsError(TutorNBError, ValueError):
    """The object holds no file search calls (and is not a kind that could)."""


@dataclass(frozen=True)
class SearchHit:
    """One passage a search returned. ``text`` is empty unless the results' content was asked for."""

    file_id: str
    filename: str
    score: float
    text: str = ""
    attributes: dict = field(default_factory=dict)


@dataclass(repr=False)
class SearchCall:
    """One file_search call: its queries (when the API reports them), its status and its hits."""

    queries: list[str]
    hits: list[SearchHit]
    status: str | None = None
    source: Source = "assistants"
    id: str | None = None
    step_id: str | None = None
    run_id: str | None = None
    response_id: str | None = None

    def _header(self) -> str:
        where = self.step_id or self.response_id or "?"
        return f"file_search call {self.id or '?'} ({self.source} {where}, {self.status or 'unknown'})"

    def _query_line(self) -> str:
        return "queries: " + (" | ".join(self.queries) if self.queries else "(not reported)")

    def _hint(self) -> str | None:
        if self.hits and not any(h.text for h in self.hits):
            return ("(no text: ask for it with include=[\"step_details.tool_calls[*].file_search.results[*].content\"]"
                    if self.source == "assistants" else "(no text: ask for it with include=[\"file_search_call.results\"]")
        return None

    def summary(self, most: int = 3) -> str:
        """One line: what was searched for and the best few hits (for the chat panel)."""
        asked = ", ".join(f"“{q}”" for q in self.queries) or "the files"
        if not self.hits:
            return f"Searched {asked}: nothing found."
        shown = "; ".join(f"{h.filename} ({h.score:.2f})" + (f" “{_snippet(h.text)[:60]}”" if h.text else "")
                          for h in self.hits[:most])
        more = f"; {len(self.hits) - most} more" if len(self.hits) > most else ""
        return f"Searched {asked}: {shown}{more}."

    def __str__(self) -> str:
        lines = [self._header(), self._query_line(), f"{len(self.hits)} hit(s)"]
        for rank, hit in enumerate(self.hits, 1):
            lines.append(f"{rank:>2}. {hit.score:.3f}  {hit.filename}  {_snippet(hit.text)}".rstrip())
        hint = self._hint()
        if hint:
            lines.append(hint + ")")
        return "\n".join(lines)

    def __repr__(self) -> str:
        return (f"SearchCall({self.id!r}, status={self.status!r}, queries={self.queries!r}, "
                f"hits={len(self.hits)})")

    def _repr_html_(self) -> str:
        rows = "".join(
            f"<tr><td>{rank}</td><td>{hit.score:.3f}</td><td>{html.escape(hit.filename)}</td>"
            f"<td>{html.escape(_snippet(hit.text))}</td></tr>" for rank, hit in enumerate(self.hits, 1))
        hint = self._hint()
        return (f"<div><div><small>{html.escape(self._header())}</small></div>"
                f"<div><b>{html.escape(self._query_line())}</b></div>"
                "<table><thead><tr><th>#</th><th>score</th><th>file</th><th>passage</th></tr></thead>"
                f"<tbody>{rows}</tbody></table>"
                + (f"<div><small>{html.escape(hint)})</small></div>" if hint else "") + "</div>")

    def _repr_mimebundle_(self, include: Any = None, exclude: Any = None) -> dict:
        return {"text/plain": str(self), "text/html": self._repr_html_()}


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= SNIPPET else flat[: SNIPPET - 1] + "…"


def _queries(step: dict) -> list[str]:
    raw = (step.get("metadata") or {}).get("file_search_queries")
    try:
        value = json.loads(raw) if raw else []
    except ValueError:
        return []
    return [q for q in value if isinstance(q, str)] if isinstance(value, list) else []


def _assistants_call(tool_call: dict, step: dict) -> SearchCall:
    inner = tool_call.get("file_search") or {}
    hits = [SearchHit(r.get("file_id", ""), r.get("file_name", ""), float(r.get("score") or 0),
                      "".join(c.get("text") or "" for c in r.get("content") or []))
            for r in inner.get("results") or []]
    return SearchCall(_queries(step), hits, step.get("status"), "assistants", tool_call.get("id"), step.get("id"),
                      step.get("run_id"))


def _responses_call(item: dict, response_id: str | None) -> SearchCall:
    hits = [SearchHit(r.get("file_id", ""), r.get("filename", ""), float(r.get("score") or 0), r.get("text") or "",
                      r.get("attributes") or {})
            for r in item.get("results") or []]
    return SearchCall(list(item.get("queries") or []), hits, item.get("status"), "responses", item.get("id"),
                      response_id=response_id)


def _from_data(data: Any, *, in_list: bool = False) -> list[SearchCall]:
    if isinstance(data, list):
        return [call for item in data for call in _from_data(item, in_list=True)]
    if not isinstance(data, dict):
        raise _unknown(data)
    kind, obj = data.get("type"), data.get("object")
    if obj == "list" or (isinstance(data.get("data"), list) and obj is None):
        return _from_data(data["data"])
    if obj == "thread.run.step" or "step_details" in data:
        details = data.get("step_details") or {}
        return [_assistants_call(c, data) for c in details.get("tool_calls") or [] if c.get("type") == "file_search"]
    if obj == "response" or (isinstance(data.get("output"), list) and obj is None):
        return [_responses_call(item, data.get("id")) for item in data["output"]
                if isinstance(item, dict) and item.get("type") == "file_search_call"]
    if kind == "file_search_call":
        return [_responses_call(data, None)]
    if kind == "file_search" and isinstance(data.get("file_search"), dict):
        return [_assistants_call(data, {})]
    if in_list:
        return []  # other items (messages, code calls) next to the searches
    raise _unknown(data)


def _unknown(data: Any) -> NoSearchCallsError:
    shape = f"a {data.get('object')!r} object" if isinstance(data, dict) and data.get("object") else \
        f"a {type(data).__name__}"
    return NoSearchCallsError(
        f"Cannot find file_search calls in {shape}: pass run steps "
        "(client.beta.threads.runs.steps.list(...)), one run step, a Response, its output items, "
        "or the same saved as JSON.")


def search_calls(x: Any) -> list[SearchCall]:
    """Every file_search call in ``x``, in order: run steps, a Response, pages or lists of them, or JSON."""
    if isinstance(x, SearchCall):
        return [x]
    return _from_data(_parse(x))
