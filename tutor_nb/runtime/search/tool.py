"""The ``file_search`` tool as a chat model sees it, and the citations its answers carry.

A model is offered one function, ``file_search(queries)``. Its results come back numbered, each
with a source marker like ``【3†week2.pdf】``, and the model is told to copy the marker of each
source it uses next to the claim. OpenAI's models wrote such markers (``【4:0†source】``) and the
API kept them in the text, with a ``file_citation`` annotation over each one; this runtime does
the same, so code written for OpenAI's answers (the Cookbook replaces each annotation's text with
a footnote) works unchanged. Both marker forms are read.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from typing import Any, Sequence

SEARCH_TOOL_NAME = "file_search"
DEFAULT_MAX_RESULTS = 20  # OpenAI's default for file_search
MAX_QUERIES = 5

SEARCH_TOOL = {
    "type": "function",
    "function": {
        "name": SEARCH_TOOL_NAME,
        "description": (
            "Search the files the user uploaded (course notes, documents) for passages relevant to the "
            "question. Use several short keyword queries, in the language of the files, to cover "
            "different wordings. Returns numbered passages with their file names."
        ),
        "parameters": {
            "type": "object",
            "properties": {
                "queries": {"type": "array", "items": {"type": "string"},
                            "description": f"1 to {MAX_QUERIES} search queries"},
            },
            "required": ["queries"],
        },
    },
}

#: added to the instructions of a run or response that can search files
INSTRUCTIONS = (
    "\n\nYou can search the user's files with the file_search tool. When you use a passage it returns, "
    "cite it by copying its marker, for example 【0†notes.md】, right after the sentence it supports. "
    "Answer from the passages; say so when they do not contain the answer."
)

_MARKER = re.compile(r"【(\d+)(?::(\d+))?†([^】\n]{0,200})】")
#: a marker with the space before it: what the Responses API takes out of the text
_SPACED_MARKER = re.compile(r"[ \t]?" + _MARKER.pattern)


@dataclass(frozen=True)
class Source:
    """A passage shown to the model: its number in the run or response, and where it came from."""

    number: int
    file_id: str
    filename: str
    score: float
    text: str
    attributes: dict = field(default_factory=dict)


def queries_of(arguments: str, fallback: str = "") -> list[str]:
    """The queries a model's ``file_search`` call asked for (a lone ``query`` string is taken too)."""
    try:
        parsed = json.loads(arguments or "{}")
    except ValueError:
        parsed = {}
    if isinstance(parsed, dict):
        raw = parsed.get("queries", parsed.get("query"))
    else:
        raw = parsed
    if isinstance(raw, str):
        raw = [raw]
    queries = [q.strip() for q in raw or [] if isinstance(q, str) and q.strip()]
    return queries[:MAX_QUERIES] or ([fallback] if fallback.strip() else [])


def model_text(sources: Sequence[Source]) -> str:
    """The tool's answer to the model: each passage under its marker."""
    if not sources:
        return "No passages matched. Try other words, or answer that the files do not say."
    return "\n\n".join(f"【{s.number}†{s.filename}】 (score {s.score:.2f})\n{s.text}" for s in sources)


def _source(match: re.Match[str], sources: dict[int, Source], by_name: dict[str, Source]) -> Source | None:
    number = int(match.group(2) if match.group(2) is not None else match.group(1))
    source = sources.get(number)
    named = by_name.get(match.group(3).strip())
    if named is not None and (source is None or source.filename != named.filename):
        return named
    return source


def _by_name(sources: dict[int, Source]) -> dict[str, Source]:
    return {s.filename: s for s in sorted(sources.values(), key=lambda s: -s.number)}


def without_markers(text: str, sources: dict[int, Source]) -> tuple[str, list[dict[str, Any]]]:
    """The Responses API's form: the markers taken out, a ``file_citation`` at the index each stood.

    Markers that name no source shown are taken out too (they would point nowhere).
    """
    by_name = _by_name(sources)
    out: list[str] = []
    annotations = []
    position = 0
    for match in _SPACED_MARKER.finditer(text):
        out.append(text[position:match.start()])
        position = match.end()
        source = _source(match, sources, by_name)
        if source is not None:
            annotations.append({"type": "file_citation", "file_id": source.file_id, "filename": source.filename,
                                "index": sum(map(len, out))})
    out.append(text[position:])
    return "".join(out), annotations


def settled(text: str) -> str:
    """The part of a streaming answer that no marker still to come can change: up to a trailing space
    or an unclosed ``【``."""
    start = text.rfind("【")
    if start >= 0 and "】" not in text[start:] and len(text) - start <= 210:
        text = text[:start]
    return text.rstrip(" \t")


def citations(text: str, sources: dict[int, Source]) -> list[dict[str, Any]]:
    """``file_citation`` annotations for the markers in an answer that name a source it was shown.

    ``【n†name】`` is source n; OpenAI's ``【m:n†source】`` form is read as source n too. When the name
    is that of another source shown (a model may renumber), the name decides.
    """
    by_name = _by_name(sources)
    annotations = []
    for match in _MARKER.finditer(text):
        source = _source(match, sources, by_name)
        if source is None:
            continue
        annotations.append({"type": "file_citation", "text": match.group(0), "start_index": match.start(),
                            "end_index": match.end(), "file_citation": {"file_id": source.file_id}})
    return annotations
