"""Small constructors for wire objects, all validated by the ``openai`` SDK's own types."""

from __future__ import annotations

import re
import secrets
import string
import time
from typing import Any


_ALPHABET = string.ascii_letters + string.digits

#: OpenAI's id prefixes
PREFIX = {
    "assistant": "asst",
    "thread": "thread",
    "message": "msg",
    "run": "run",
    "step": "step",
    "call": "call",
    "file": "file",
    "vector_store": "vs",
    "file_batch": "vsfb",
    "response": "resp",
    "conversation": "conv",
    "container": "cntr",
    "container file": "cfile",
    "code call": "ci",
    "function call": "fc",
    "file search call": "fs",
    "item": "item",
}


#: a file the code wrote, as answers cite it: ``/mnt/data/name`` or ``sandbox:/mnt/data/name``
FILE_MENTION = re.compile(r"(?:sandbox:)?/mnt/data/([^\s)\]\"'`<>]+)")


def new_id(kind: str) -> str:
    """An id shaped like OpenAI's: prefix, underscore, 24 random letters and digits."""
    sep = "-" if kind == "file" else "_"
    return PREFIX[kind] + sep + "".join(secrets.choice(_ALPHABET) for _ in range(24))


def now() -> int:
    return int(time.time())


def text_block(value: str, annotations: list[dict] | None = None) -> dict[str, Any]:
    return {"type": "text", "text": {"value": value, "annotations": annotations or []}}


def message_content(content: str | list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Turn a create-message ``content`` (a string or content parts) into stored content blocks."""
    if isinstance(content, str):
        return [text_block(content)]
    blocks = []
    for part in content:
        if part.get("type") == "text":
            blocks.append(text_block(part["text"]))
        else:
            blocks.append(dict(part))
    return blocks


def message_text(message: dict[str, Any]) -> str:
    """The plain text of a message (its wire dict); images are named by file id so a model knows they exist."""
    parts = []
    for block in message.get("content") or []:
        if block["type"] == "text":
            parts.append(block["text"]["value"])
        elif block["type"] == "image_file":
            parts.append(f"[image {block['image_file']['file_id']}]")
        elif block["type"] == "image_url":
            parts.append(f"[image {block['image_url']['url']}]")
    return "\n".join(parts)
