"""The transcript as a file: Markdown for reading and sharing, JSON for everything."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Callable, Mapping, Optional

from ..errors import ExportFormatError
from . import render
from .transcript import SANDBOX_LINK

FileBytes = Mapping[str, Optional[bytes]]


def _fence(text: str, lang: str = "") -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}"


def _image_writer(files: FileBytes, folder: str | None) -> Callable[[str], str]:
    """file id -> a Markdown image: a data URI, or a PNG written into ``folder``."""

    def image(file_id: str) -> str:
        data = files.get(file_id)
        if not data:
            return f"(image `{file_id}`: not downloaded)"
        if folder is None:
            return f"![chart]({render.image_url(data)})"
        name = f"{file_id}.{render.image_kind(data).replace('jpeg', 'jpg')}"
        target = Path(folder)
        target.mkdir(parents=True, exist_ok=True)
        (target / name).write_bytes(data)
        return f"![chart]({target.name}/{name})"

    return image


def _linked(text: str, files: FileBytes, names: Mapping[str, str]) -> str:
    """Sandbox links (``sandbox:/mnt/data/x.csv``) to files the panel downloaded, as data URLs."""

    def link(match: re.Match) -> str:
        name = match.group(0).rsplit("/", 1)[-1]
        data = files.get(names.get(name, ""))
        if not data or len(data) > render.MAX_EMBED_BYTES:
            return match.group(0)
        return render.FileLink(name, data).url()

    return SANDBOX_LINK.sub(link, text)


def to_markdown(transcript: list[dict[str, Any]], files: FileBytes | None = None, images: str | None = None,
                names: Mapping[str, str] | None = None) -> str:
    """Questions, code, logs, charts and answers in order; a chart shown under its code once;
    files the answers link to embedded as data URLs."""
    files = files or {}
    image = _image_writer(files, images)
    out: list[str] = []
    for turn in transcript:
        if turn["role"] == "user":
            out.append(f"**You:**\n\n{turn['text']}")
            continue
        out.append("**Assistant:**")
        shown: set[str] = set()
        for number, step in enumerate(turn["steps"], 1):
            out.append(f"Code step {number}:\n\n{_fence(step['code'], 'python')}")
            if step["logs"]:
                out.append(f"Output:\n\n{_fence(step['logs'], 'text')}")
            out.extend(image(fid) for fid in step["image_file_ids"] if fid not in shown)
            shown.update(step["image_file_ids"])
        if turn["text"]:
            out.append(_linked(turn["text"], files, names or {}))
        out.extend(image(fid) for fid in turn.get("image_file_ids", []) if fid not in shown)
        if turn.get("error"):
            out.append(f"> Run {turn['status']}: {turn['error']}")
        elif turn["status"] != "completed":
            out.append(f"> Run {turn['status']}.")
    return "\n\n".join(out) + "\n"


def export(transcript: list[dict[str, Any]], fmt: str, files: FileBytes | None = None, images: str | None = None,
           names: Mapping[str, str] | None = None) -> str:
    if fmt == "markdown":
        return to_markdown(transcript, files, images, names)
    if fmt == "json":
        return json.dumps(transcript, ensure_ascii=False, indent=2)
    raise ExportFormatError(f"Unknown export format {fmt!r}: use 'markdown' or 'json'.")
