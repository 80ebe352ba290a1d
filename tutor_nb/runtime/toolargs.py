"""Reading the code out of a code-interpreter tool call while its JSON arguments still stream.

Chat models send ``{"code": "print(1)\\n..."}`` a few characters at a time. To show code
as it is written, the engine decodes the ``code`` string from an unfinished JSON text.
Some local models send bare code instead of JSON; that is accepted as is.
"""

from __future__ import annotations

import json
import re

_KEY = re.compile(r'^\s*\{\s*"(?:code|input|source)"\s*:\s*"')
_ESCAPES = {'"': '"', "\\": "\\", "/": "/", "b": "\b", "f": "\f", "n": "\n", "r": "\r", "t": "\t"}


def partial_code(arguments: str) -> str:
    """The code decoded so far from possibly unfinished ``arguments``."""
    stripped = arguments.lstrip()
    if not stripped:
        return ""
    if not stripped.startswith("{"):
        return arguments  # bare code
    match = _KEY.match(arguments)
    if match is None:
        return ""
    out: list[str] = []
    i, n = match.end(), len(arguments)
    while i < n:
        ch = arguments[i]
        if ch == '"':
            break
        if ch != "\\":
            out.append(ch)
            i += 1
            continue
        if i + 1 >= n:
            break  # escape not complete yet
        kind = arguments[i + 1]
        if kind == "u":
            decoded, used = _unicode_escape(arguments, i)
            if decoded is None:
                break
            out.append(decoded)
            i += used
            continue
        out.append(_ESCAPES.get(kind, kind))
        i += 2
    return "".join(out)


def _unicode_escape(text: str, i: int) -> tuple[str | None, int]:
    """Decode ``\\uXXXX`` (and a following low surrogate) at ``i``; None if incomplete."""
    if i + 6 > len(text):
        return None, 0
    first = int(text[i + 2 : i + 6], 16)
    if 0xD800 <= first < 0xDC00:
        if i + 12 > len(text):
            return None, 0
        if text[i + 6 : i + 8] == "\\u":
            second = int(text[i + 8 : i + 12], 16)
            return chr(0x10000 + ((first - 0xD800) << 10) + (second - 0xDC00)), 12
    return chr(first), 6


def final_code(arguments: str) -> str:
    """The code of a finished tool call."""
    try:
        value = json.loads(arguments)
    except ValueError:
        return partial_code(arguments)
    if isinstance(value, dict):
        for key in ("code", "input", "source"):
            if isinstance(value.get(key), str):
                return value[key]
        return ""
    return value if isinstance(value, str) else arguments
