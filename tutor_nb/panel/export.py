"""The transcript as a file: Markdown for reading and sharing, JSON for everything."""

from __future__ import annotations

import json
from typing import Any

from ..errors import ExportFormatError


def _fence(text: str, lang: str = "") -> str:
    ticks = "```"
    while ticks in text:
        ticks += "`"
    return f"{ticks}{lang}\n{text.rstrip()}\n{ticks}"


def to_markdown(transcript: list[dict[str, Any]]) -> str:
    out: list[str] = []
    for turn in transcript:
        if turn["role"] == "user":
            out.append(f"**You:**\n\n{turn['text']}")
            continue
        out.append("**Assistant:**")
        for number, step in enumerate(turn["steps"], 1):
            out.append(f"Code step {number}:\n\n{_fence(step['code'], 'python')}")
            if step["logs"]:
                out.append(f"Output:\n\n{_fence(step['logs'], 'text')}")
            out.extend(f"(image: file `{fid}`)" for fid in step["image_file_ids"])
        if turn["text"]:
            out.append(turn["text"])
        out.extend(f"(image: file `{fid}`)" for fid in turn.get("image_file_ids", []))
        if turn.get("error"):
            out.append(f"> Run {turn['status']}: {turn['error']}")
        elif turn["status"] != "completed":
            out.append(f"> Run {turn['status']}.")
    return "\n\n".join(out) + "\n"


def export(transcript: list[dict[str, Any]], fmt: str) -> str:
    if fmt == "markdown":
        return to_markdown(transcript)
    if fmt == "json":
        return json.dumps(transcript, ensure_ascii=False, indent=2)
    raise ExportFormatError(f"Unknown export format {fmt!r}: use 'markdown' or 'json'.")

